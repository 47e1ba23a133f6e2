"""Pre-training of an image task's classifiers, and their safe checkpoints.

All three minimise the cross-entropy -log p(c | input) with AdamW, the learning rate warmed up then
cosine-decayed (pretrain_images.warmup_cosine):
- `classifier` (GuideCNN) on the clean `train` images;
- `noisy_classifier` (NoisyClassifier) on x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps of the `train`
  images, t uniform on 1..T of the given schedule, fresh (t, eps) every step (Dhariwal & Nichol 2021);
- `evaluator` (EvaluatorCNN) on `train` + `validation`, each image shifted by up to one pixel at
  random every time it is seen (the evaluator should not depend on exact registration).
Held-out numbers: the guide and the noisy classifier on `validation` (the noisy one at fixed
(t, eps) draws, also per noise level), all three on `test`.

Reproducible from `seed`: initialisation, data order, noise and dropout all draw from generators
seeded by hashing (network, task, task seed, seed), inside a forked global RNG.

Checkpoints are the suite's one format (benchmark.checkpoints: safetensors, no pickle; the network
kind, architecture, configuration and the training report in the string metadata).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmark.classifiers.networks import NETWORKS
from benchmark.checkpoints import load_network, save_network
from benchmark.denoisers.pretrain import fit
from benchmark.denoisers.pretrain_images import warmup_cosine
from benchmark.diffusion.noise import derive_seed
from benchmark.diffusion.schedules import make_schedule
from benchmark.images.ops import translate

#: Per network: (epochs, batch size, learning rate, width), sized so that all three train in well
#: under a minute on two CPU cores.
DEFAULTS = {
    "classifier": dict(epochs=30, batch_size=64, lr=3e-3, width=32),
    "noisy_classifier": dict(epochs=60, batch_size=128, lr=3e-3, width=32),
    "evaluator": dict(epochs=40, batch_size=64, lr=3e-3, width=32),
}
#: Noise levels t / T at which the noisy classifier's held-out accuracy is also reported.
NOISE_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _check_network(network: str) -> None:
    if network not in NETWORKS:
        raise ValueError(f"unknown classifier network {network!r}; allowed: {list(NETWORKS)}")


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image translated by (dy, dx) uniform in {-1, 0, 1}^2, vacated pixels blank (-1)."""
    return translate(x, torch.randint(-1, 2, (x.shape[0], 2), generator=gen))


def _noised(x0: torch.Tensor, ab: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    a = ab[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@torch.no_grad()
def _evaluate(model, network: str, x: torch.Tensor, y: torch.Tensor, ab: torch.Tensor | None, seed: int,
              t_fixed: int | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on (x, y); the noisy classifier at (t, eps) drawn from `seed`."""
    if network == "noisy_classifier":
        gen = torch.Generator().manual_seed(seed)
        T = len(ab) - 1
        t = (torch.full((len(x),), t_fixed, dtype=torch.long) if t_fixed is not None
             else torch.randint(1, T + 1, (len(x),), generator=gen))
        eps = torch.randn(x.shape, generator=gen)
        logits = model(_noised(x, ab, t.to(x.device), eps.to(x.device)), t.to(x.device))
    else:
        logits = model(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(-1) == y).double().mean())


def pretrain_classifier(task, network: str, *, epochs: int | None = None, batch_size: int | None = None,
                        lr: float | None = None, width: int | None = None, schedule_name: str = "cosine",
                        T: int = 200, seed: int = 0, device: str = "cpu", progress: bool = False):
    """Train classifier `network` (classifier | noisy_classifier | evaluator) of an image task.

    Returns (model in eval mode, report dict). `schedule_name` and T matter to the noisy
    classifier only (they must be the denoiser's: classifier guidance checks it)."""
    _check_network(network)
    cfg = DEFAULTS[network] | {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                                        width=width).items() if v is not None}
    if cfg["epochs"] < 1 or cfg["batch_size"] < 1 or cfg["lr"] <= 0 or cfg["width"] < 1:
        raise ValueError(f"pretrain {network}: epochs, batch size and width must be >= 1 and lr > 0, got {cfg}")
    start = time.perf_counter()
    x, y = task.split("train+validation" if network == "evaluator" else "train")
    x_val, y_val = task.split("validation")
    x_test, y_test = task.split("test")
    x, y, x_val, y_val, x_test, y_test = (a.to(device) for a in (x, y, x_val, y_val, x_test, y_test))
    ab = None
    base = derive_seed("pretrain", network, task.name, task.task_seed, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base % 2 ** 63)
        if network == "noisy_classifier":
            schedule = make_schedule(schedule_name, T)
            ab = schedule.ab.to(device, torch.float32)
            model = NETWORKS[network](T, schedule_name, channels=cfg["width"], num_classes=task.num_classes,
                                      in_channels=task.shape[0])
        else:
            model = NETWORKS[network](channels=cfg["width"], num_classes=task.num_classes,
                                      in_channels=task.shape[0], size=task.shape[-1])
        model.to(device)
        gen = torch.Generator().manual_seed(derive_seed("data", base))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=1e-4)
        steps_per_epoch = math.ceil(len(x) / cfg["batch_size"])
        sched = warmup_cosine(opt, cfg["epochs"] * steps_per_epoch, warmup=0.1)

        def batch_loss(idx):
            xb, yb = x[idx], y[idx]
            if network == "evaluator":
                logits = model(_shift(xb, gen))
            elif network == "noisy_classifier":
                t = torch.randint(1, T + 1, (len(idx),), generator=gen).to(device)
                eps = torch.randn(xb.shape, generator=gen).to(device)
                logits = model(_noised(xb, ab, t, eps), t)
            else:
                logits = model(xb)
            return F.cross_entropy(logits, yb)

        model.train()
        losses = fit(model, opt, sched, batch_loss, n=len(x), batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                     gen=gen, device=device, desc=f"pretrain {task.name} {network}", progress=progress)
        model.eval()
    held = derive_seed("heldout", seed)
    report = {
        "network": network, "arch": type(model).__name__, "task": task.name, "task_seed": task.task_seed,
        "seed": seed, "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "lr": cfg["lr"],
        "width": cfg["width"], "trained_on": "train+validation" if network == "evaluator" else "train",
        "n_train": len(x), "n_params": sum(p.numel() for p in model.parameters()),
        "train_loss_last_epoch": losses[-1],
    }
    if network != "evaluator":
        report["validation_loss"], report["validation_accuracy"] = _evaluate(model, network, x_val, y_val, ab, held)
    report["test_loss"], report["test_accuracy"] = _evaluate(model, network, x_test, y_test, ab, held)
    if network == "noisy_classifier":
        report["schedule"], report["T"] = schedule_name, T
        report["validation_accuracy_by_noise"] = {
            f"{level:g}": _evaluate(model, network, x_val, y_val, ab, held, t_fixed=max(1, round(level * T)))[1]
            for level in NOISE_LEVELS}
    report["wall_seconds"] = time.perf_counter() - start
    return model, report


def save_classifier(path: str | Path, model, network: str, report: dict) -> None:
    """Atomic write of a classifier checkpoint (benchmark.checkpoints)."""
    _check_network(network)
    save_network(path, model, network, report, {NETWORKS[network].__name__: NETWORKS[network]})


def load_classifier(path: str | Path, network: str, device: str = "cpu"):
    """(model in eval mode, report) of a classifier checkpoint (benchmark.checkpoints: no unpickling)."""
    _check_network(network)
    model, meta = load_network(path, network, {NETWORKS[network].__name__: NETWORKS[network]}, device)
    return model, meta["report"]
