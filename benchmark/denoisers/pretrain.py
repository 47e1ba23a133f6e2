"""Denoising score matching and safe checkpoints.

Training minimises the v-prediction loss (Salimans & Ho 2022), a re-weighting of DSM:
    L(theta) = E_{t, x_0, eps} || v - v_theta(x_t, t) ||^2,  x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,
    v = sqrt(ab_t) eps - sqrt(1 - ab_t) x_0.
Held-out quality is reported as the eps-loss of Ho et al. 2020 (eq. 14), the common currency of
every denoiser (the oracle's eps-loss is the irreducible part).

Checkpoints are the suite's one format (benchmark.checkpoints: safetensors, tensors only, no pickle;
the architecture, its config with the schedule, and the training report in the string metadata). ARCHITECTURES lists the denoiser networks a
checkpoint may hold (ScoreMLP for vector tasks, UNet for image tasks; pretrain_images.py trains the latter).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from pathlib import Path

import torch

from benchmark.checkpoints import (CheckpointError, invalid_checkpoint, load_network,  # noqa: F401 (re-exported)
                                   load_weights, network_metadata, save_network)
from benchmark.denoisers.network import ScoreMLP
from benchmark.denoisers.unet import UNet
from benchmark.diffusion.noise import derive_seed
from benchmark.diffusion.schedules import VPSchedule, make_schedule

log = logging.getLogger(__name__)


#: The denoiser architectures a checkpoint may hold, by the name stored in its metadata.
ARCHITECTURES = {"ScoreMLP": ScoreMLP, "UNet": UNet}


def _noised(x0, schedule, t, eps):
    ab = schedule.ab.to(x0.device, torch.float32)[t].view(-1, *([1] * (x0.dim() - 1)))
    return ab, ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def dsm_loss(model, x0: torch.Tensor, schedule: VPSchedule, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Mean of ||eps - eps_theta(x_t, t)||^2 / dim (any eps-model, the oracle included)."""
    _, x_t = _noised(x0, schedule, t, eps)
    return ((model(x_t, t) - eps) ** 2).mean()


def v_loss(model, x0: torch.Tensor, schedule: VPSchedule, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Mean of ||v - v_theta(x_t, t)||^2 / dim, the training loss of a ScoreMLP."""
    ab, x_t = _noised(x0, schedule, t, eps)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    return ((model.velocity(x_t, t) - v) ** 2).mean()


def adamw(params, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW, the fused implementation where this torch has it for the parameters' device (CPU: torch
    >= 2.4; several times faster per step than the for-each one, the same update up to rounding)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _draw_t_eps(n: int, shape, T: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.randint(1, T + 1, (n,), generator=gen).to(device)
    eps = torch.randn((n, *shape), generator=gen).to(device)
    return t, eps


@torch.no_grad()
def heldout_loss(model, x0: torch.Tensor, schedule: VPSchedule, seed: int, batch: int = 4096) -> float:
    """DSM loss on a held-out set with fixed (t, eps) drawn from `seed` (comparable across models)."""
    gen = torch.Generator().manual_seed(seed)
    t, eps = _draw_t_eps(len(x0), x0.shape[1:], schedule.T, gen, x0.device)
    total = 0.0
    for i in range(0, len(x0), batch):
        sl = slice(i, i + batch)
        total += float(dsm_loss(model, x0[sl], schedule, t[sl], eps[sl])) * len(x0[sl])
    return total / len(x0)


def fit(model, opt, sched, batch_loss, *, n: int, batch_size: int, epochs: int, gen: torch.Generator,
        device, desc: str = "", progress: bool = False) -> list[float]:
    """The one training loop of every pre-training: each epoch a permutation of the n examples
    (drawn from `gen`), mini-batches of their indices, `batch_loss(idx)` -> loss, one optimiser and
    one scheduler step per batch. Returns the mean loss of each epoch, and logs one INFO record per
    epoch (epoch, mean loss, seconds) to this module's logger, which the rules' log files capture; a
    progress bar (`progress`, the CLI's default: stderr is a terminal) carries the log lines above it.
    The epoch's loss is summed on the device (one host sync per epoch, not per step)."""
    steps_per_epoch = math.ceil(n / batch_size)
    iterator = range(epochs)
    redirect = contextlib.nullcontext()
    if progress:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm
        iterator = tqdm(iterator, desc=desc, unit="epoch")
        # Through tqdm.write, only the loggers that print to the console (setup_logging's, a basicConfig).
        consoles = [lg for lg in (logging.root, logging.getLogger("benchmark"))
                    if any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)
                           for h in lg.handlers)]
        redirect = logging_redirect_tqdm(loggers=consoles) if consoles else redirect
    losses = []
    with redirect:
        for epoch in iterator:
            start = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(device)
            running = torch.zeros((), dtype=torch.float64, device=device)  # no host sync per step
            for i in range(steps_per_epoch):
                loss = batch_loss(perm[i * batch_size:(i + 1) * batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.detach()
            losses.append(float(running) / steps_per_epoch)
            log.info("%s: epoch %d/%d, loss %.5g, %.1f s", desc or "fit", epoch + 1, epochs, losses[-1],
                     time.perf_counter() - start)
    return losses


def pretrain(task, *, schedule_name: str = "cosine", T: int = 200, hidden: int = 256, depth: int = 3,
             n_train: int = 65_536, n_heldout: int = 4_096, epochs: int = 20, batch_size: int = 256,
             lr: float = 1e-3, seed: int = 0, device: str = "cpu", progress: bool = False):
    """Train a ScoreMLP on `task.sample_data`; returns (model, schedule, report dict)."""
    start = time.perf_counter()
    schedule = make_schedule(schedule_name, T)
    gen = torch.Generator().manual_seed(derive_seed("pretrain", task.name, task.task_seed, seed))
    torch.manual_seed(derive_seed("pretrain-init", task.name, seed) % 2**31)
    data = task.sample_data(n_train, gen).to(device)
    held = task.sample_data(n_heldout, gen).to(device)
    model = ScoreMLP(task.dim, T, schedule=schedule_name, hidden=hidden, depth=depth).to(device)
    opt = adamw(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(n_train / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.05)

    def batch_loss(idx):
        t, eps = _draw_t_eps(len(idx), data.shape[1:], T, gen, device)
        return v_loss(model, data[idx], schedule, t, eps)

    losses = fit(model, opt, sched, batch_loss, n=n_train, batch_size=batch_size, epochs=epochs, gen=gen,
                 device=device, desc=f"pretrain {task.name}", progress=progress)
    model.eval()
    report = {
        "task": task.name, "task_seed": task.task_seed, "seed": seed, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "n_train": n_train, "n_params": sum(p.numel() for p in model.parameters()),
        "train_loss_last_epoch": losses[-1],
        "heldout_loss": heldout_loss(model, held, schedule, seed=derive_seed("heldout", seed)),
        "wall_seconds": time.perf_counter() - start,
    }
    oracle = task.oracle(schedule) if task.has_oracle else None
    if oracle is not None:
        # The oracle's DSM loss is the irreducible part; the excess measures the score error.
        report["oracle_heldout_loss"] = heldout_loss(oracle.to(device), held, schedule,
                                                     seed=derive_seed("heldout", seed))
    return model, schedule, report


def save_checkpoint(path: str | Path, model: ScoreMLP | UNet, schedule: VPSchedule, report: dict) -> None:
    """Atomic write of a denoiser checkpoint (benchmark.checkpoints; its config holds the schedule)."""
    save_network(path, model, "denoiser", report, ARCHITECTURES)


def checkpoint_metadata(path: str | Path) -> dict:
    return network_metadata(path, "denoiser")


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[ScoreMLP | UNet, VPSchedule, dict]:
    """(model in eval mode, its schedule, training report) of a denoiser checkpoint (benchmark.checkpoints:
    no code is unpickled). A missing file raises FileNotFoundError, a damaged one CheckpointError; both
    name the file and the command that makes it."""
    model, meta = load_network(path, "denoiser", ARCHITECTURES, device)
    try:
        schedule = make_schedule(meta["config"]["schedule"], meta["config"]["T"])
    except Exception as exc:
        raise invalid_checkpoint(path, exc) from None
    return model, schedule, meta["report"]
