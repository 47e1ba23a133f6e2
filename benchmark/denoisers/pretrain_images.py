"""Pre-training of the U-Net denoiser of an image task, and the quality of its unguided samples.

The loss is pretrain.py's v-prediction loss (Salimans & Ho 2022) on the task's `train` split,
t uniform on 1..T, fresh (t, eps) at every step, AdamW with warm-up and cosine decay of the learning rate; the held-out
number is Ho et al.'s eps-loss on the `validation` split at fixed (t, eps) draws.

Sample quality (when an evaluator is given): `n` unguided samples (DDIM with eta = 1 on a grid of
`steps` steps, as a cell samples) scored by the independent evaluator:
- unguided_fd: the Frechet distance of their evaluator features to the `test` images';
- real_fd_floor: the same distance from the `validation` images to the `test` images, the value
  a perfect sampler would reach at this sample size (the FD estimator is biased upwards with few
  samples; with n = the test-set size the two numbers are comparable);
- unguided_digit_confidence: the evaluator's mean max-probability (is it a digit at all), next to
  real_digit_confidence on the test images; unguided_class_fractions: the evaluator's class
  histogram of the samples (a collapsed or unbalanced sampler shows here).
"""

from __future__ import annotations

import math
import time

import torch

from benchmark.denoisers.pretrain import adamw, fit, heldout_loss, v_loss
from benchmark.denoisers.unet import UNet
from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.diffusion.noise import derive_seed
from benchmark.images.metrics import frechet_distance

#: Defaults sized for 8x8 digits on a 2-core CPU (about two minutes).
DEFAULTS = dict(epochs=150, batch_size=128, lr=2e-3, width=32)


def warmup_cosine(opt: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05):
    """Learning rate: linear warm-up over a `warmup` fraction of the steps (at least one), then cosine
    decay to 0 (the shape of a one-cycle schedule, defined for any number of steps, even 1)."""
    n_warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, total_steps - n_warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.no_grad()
def unguided_quality(model, schedule, task, evaluator, *, n: int | None = None, steps: int = 50, eta: float = 1.0,
                     seed: int = 0, device: str = "cpu") -> dict:
    """Evaluator-based quality of n unguided samples (n: the test-set size by default)."""
    x_test, _ = task.split("test")
    x_val, _ = task.split("validation")
    n = len(x_test) if n is None else n
    sampler = Sampler(CountingDenoiser(model.to(device), Costs()), schedule, steps=steps, eta=eta)
    noise = PerSampleNoise.for_chains(("pretrain-quality", task.name, seed), n, task.shape, device=device)
    from benchmark.methods import make_method
    x = sample(sampler, make_method("none"), noise.draw(), noise).clamp(-1, 1)
    evaluator = evaluator.to(device).eval()
    f, f_test, f_val = (evaluator.features(a.to(device)) for a in (x, x_test, x_val))
    p, p_test = evaluator.head(f).softmax(-1), evaluator.head(f_test).softmax(-1)
    fractions = torch.bincount(p.argmax(-1), minlength=p.shape[1]).double() / n
    return {
        "quality_samples": n, "quality_steps": len(sampler.steps), "quality_eta": eta,
        "unguided_fd": frechet_distance(f, f_test),
        "real_fd_floor": frechet_distance(f_val, f_test),
        "unguided_digit_confidence": float(p.max(-1).values.mean()),
        "real_digit_confidence": float(p_test.max(-1).values.mean()),
        "unguided_class_fractions": [round(float(v), 4) for v in fractions],
    }


def pretrain_unet(task, *, schedule_name: str = "cosine", T: int = 200, epochs: int | None = None,
                  batch_size: int | None = None, lr: float | None = None, width: int | None = None, seed: int = 0,
                  device: str = "cpu", progress: bool = False, evaluator=None, quality_samples: int | None = None,
                  quality_steps: int = 50):
    """Train a UNet on `task.split("train")`; returns (model, schedule, report dict).

    With an `evaluator` the report also holds `unguided_quality`'s numbers."""
    cfg = DEFAULTS | {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, width=width).items()
                      if v is not None}
    if cfg["epochs"] < 1 or cfg["batch_size"] < 1 or cfg["lr"] <= 0 or cfg["width"] < 1:
        raise ValueError(f"pretrain denoiser: epochs, batch size and width must be >= 1 and lr > 0, got {cfg}")
    start = time.perf_counter()
    schedule = make_schedule(schedule_name, T)
    data, _ = task.split("train")
    held, _ = task.split("validation")
    data, held = data.to(device), held.to(device)
    base = derive_seed("pretrain", "denoiser", task.name, task.task_seed, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base % 2 ** 63)
        model = UNet(T, schedule=schedule_name, channels=cfg["width"], in_channels=task.shape[0]).to(device)
    gen = torch.Generator().manual_seed(derive_seed("data", base))
    opt = adamw(model.parameters(), lr=cfg["lr"])
    steps_per_epoch = math.ceil(len(data) / cfg["batch_size"])
    sched = warmup_cosine(opt, cfg["epochs"] * steps_per_epoch, warmup=0.05)

    def batch_loss(idx):
        x0 = data[idx]
        t = torch.randint(1, T + 1, (len(x0),), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        return v_loss(model, x0, schedule, t, eps)

    losses = fit(model, opt, sched, batch_loss, n=len(data), batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                 gen=gen, device=device, desc=f"pretrain {task.name} denoiser", progress=progress)
    model.eval()
    report = {
        "network": "denoiser", "arch": "UNet", "task": task.name, "task_seed": task.task_seed, "seed": seed,
        "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "lr": cfg["lr"], "width": cfg["width"],
        "trained_on": "train", "n_train": len(data), "n_params": sum(p.numel() for p in model.parameters()),
        "train_loss_last_epoch": losses[-1],
        "heldout_loss": heldout_loss(model, held, schedule, seed=derive_seed("heldout", seed)),
        "train_seconds": time.perf_counter() - start,
    }
    if evaluator is not None:
        report |= unguided_quality(model, schedule, task, evaluator, n=quality_samples, steps=quality_steps,
                                   seed=seed, device=device)
    report["wall_seconds"] = time.perf_counter() - start
    return model, schedule, report
