"""The outer loops of Guo et al. (2024): Algorithm 1 (guided rounds) and Algorithm 2 (rounds with
adaptive fine-tuning of the score network).

Algorithm 1. z_0 = an unguided batch. In round k = 1..K every chain i is linearised at its
previous sample, g_{k,i} = grad r(z_{k-1,i}), y_{k,i} = g_{k,i}^T z_{k-1,i} + delta, and a new
guided sample z_{k,i} is drawn with the method's guidance towards (g, y). `linearise =
"batch_mean"` uses one linearisation for the whole batch, at the batch mean z_bar (one gradient
per round): g = grad r(z_bar), y = g^T z_bar + delta.

Algorithm 2 (Guo et al. 2024, Algorithm 2; their code `simulations/main.py`, `optimize`). As Algorithm 1,
and the score network that draws round k+1 is first fine-tuned on round k's batch z_k, for
k = `finetune_start`, ..., K-1: `finetune_steps` Adam steps (lr `finetune_lr`, betas (0.9, 0.99)) of the
pre-training loss, so the prior itself moves towards the optimum. The default `finetune_start` = 0 is the
paper's box and their code's default (`--sm_ft_start_round 0`): fine-tuning starts on the unguided batch
z_0, before round 1. Their README's runs start later (`--sm_ft_start_round` 40 for G, 60 for G_loss): the
setting `finetune_start` = 40 or 60. No step follows round K's batch (nothing samples after it), and the
spec refuses `finetune_start` >= K (fine-tuning no sample would see). The steps that serve round k+1 are
done and counted in round k+1, so the costs through round k are what its samples needed.
Differences from the paper: one step on the latest batch (their code), not the paper's weighted mixture
of all generated batches; with `finetune_steps` > 1 every step uses the whole batch (their code splits it
into `finetune_steps` parts).

Methods that do not use a linear target (unguided, training-free) draw each round afresh,
guided by r itself; their rounds are independent repeats.

Every round draws its noise from per-chain streams seeded by (task, denoiser, seed, round, chain),
never by method or strength: all methods of a comparison start from the same noise. So round 0 (unguided)
of one seed is the same batch for every cell of a task, denoiser, sampling grid and batch size: a job
samples it once and every later pass reuses it (`run_rounds(round0=...)`), each cell still recording what
it cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from benchmark.denoisers.pretrain import v_loss
from benchmark.diffusion import Costs, PerSampleNoise, Sampler, derive_seed, sample
from benchmark.methods import Guide, LinearTarget, make_method
from benchmark.methods.base import chain_scalar
from benchmark.spec import Rounds

#: Algorithm 1/2's settings (rounds, samples, algorithm, linearisation, fine-tuning): the cell spec's part.
RoundsConfig = Rounds


@dataclass
class Round:
    index: int
    z: torch.Tensor          # [n B, *shape] samples of this round, the pass's live cells, cell-major
    costs: Costs             # spent in this round (linearisation, Algorithm 2's fine-tuning, sampling), all chains
    wall_seconds: float
    cells: list[int]         # which of the pass's cells z holds (B rows each, in this order)
    target: LinearTarget | None = None   # the linear target this round was guided towards (Algorithm 1)
    state: dict | None = None            # what resumes the rounds after this one (`run_rounds(resume=...)`)
    computed: int = 0                    # cells' worth of chains (round 0: one per distinct seed, sampled or reused)


def linearise(objective, z: torch.Tensor, delta: float | torch.Tensor, mode: str, cells: int = 1) -> LinearTarget:
    """Guo et al.'s linear model around z: g = grad r(z), y = g^T z + delta (per chain or at z_bar).

    A batched pass (benchmark.batch) holds `cells` cells of B = len(z) / cells chains each, cell-major, and
    delta per chain ([len(z)], float64): "batch_mean" linearises each cell at its own mean."""
    if mode == "batch_mean":
        point = z.view(cells, -1, *z.shape[1:]).mean(1)                     # [cells, *shape]
    else:
        point = z
    with torch.enable_grad():
        p = point.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(p).sum(), p)
    y = (g * point).flatten(1).sum(-1)
    if mode == "batch_mean":
        B = z.shape[0] // cells
        g, y = g.repeat_interleave(B, 0), y.repeat_interleave(B, 0)
    return LinearTarget(g.detach(), (y + chain_scalar(delta, y.dtype)).detach())


def _round_zero(sampler, seeds: list[int], B: int, cache: dict | None, key, task, denoiser_name: str, costs: Costs,
                device) -> tuple[torch.Tensor, float]:
    """Round 0 of the distinct `seeds` ([len(seeds) B, *shape], seed-major): the unguided batch of each seed,
    sampled here (all missing seeds in one batch) or taken from `cache` ({(key, seed): (z, its Costs, its
    seconds)}, filled by earlier passes of the job; none without a `key`). `costs` counts what each seed's
    batch cost when it was sampled, reused or not; also returned: the seconds the reused batches took."""
    cache = {} if cache is None or key is None else cache
    missing = [s for s in seeds if (key, s) not in cache]
    fresh = {}
    if missing:
        before, start = costs.snapshot(), time.perf_counter()
        noise = _round_noise(task, denoiser_name, missing, 0, B, device)
        z = sample(sampler, make_method("none"), noise.draw(), noise)
        if z.is_cuda:
            torch.cuda.synchronize()
        spent = (costs.snapshot() - before).as_dict()
        per_seed = Costs(**{k: v // len(missing) for k, v in spent.items()})   # equal batches: exact
        seconds = (time.perf_counter() - start) / len(missing)
        for i, s in enumerate(missing):
            fresh[s] = z[i * B:(i + 1) * B]
            cache[(key, s)] = (fresh[s].detach(), per_seed, seconds)
    parts, reused = [], 0.0
    for s in seeds:
        if s in fresh:
            parts.append(fresh[s])
        else:
            z, spent, seconds = cache[(key, s)]
            costs.add(spent)
            reused += seconds
            parts.append(z)
    return torch.cat(parts), reused


def _finetune(trainable, optimizer, z: torch.Tensor, schedule, steps: int, gen: torch.Generator, costs: Costs,
              device) -> None:
    """Algorithm 2's update of the score network: `steps` optimiser steps of the pre-training loss on the batch
    z ([B, *shape]), times and noise drawn from `gen`; counted as B fine-tuning samples a step. A non-finite
    batch trains nothing."""
    if not torch.isfinite(z).all():
        return
    B = z.shape[0]
    trainable.train().requires_grad_(True)
    for _ in range(steps):
        t = torch.randint(1, schedule.T + 1, (B,), generator=gen).to(device)
        eps = torch.randn(z.shape, generator=gen).to(device)
        loss = v_loss(trainable, z, schedule, t, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        costs.finetune_samples += B
    trainable.eval().requires_grad_(False)


def chain_seeds(task_name: str, denoiser_name: str, seed: int, k: int, B: int) -> list[int]:
    """The noise streams of a cell's B chains in round k: seeded by (task, denoiser, seed, round, chain),
    never by method or strength."""
    return [derive_seed("chain", task_name, denoiser_name, seed, k, i) for i in range(B)]


def _round_noise(task, denoiser_name: str, seeds: list[int], k: int, B: int, device) -> PerSampleNoise:
    """Round k's noise of a pass: B chains per seed, seed-major, each on its own stream (`chain_seeds`)."""
    return PerSampleNoise([c for seed in seeds for c in chain_seeds(task.name, denoiser_name, seed, k, B)],
                          task.shape, device=device)


def run_rounds(*, task, objective, method, sampler: Sampler, costs: Costs, config: RoundsConfig,
               seed: int | list[int], denoiser_name: str, device: str = "cpu", trainable=None,
               strengths: list[float] | None = None, alive: list[bool] | None = None,
               resume: dict | None = None, round0: dict | None = None, round0_key: str | None = None
               ) -> Iterator[Round]:
    """Yield round 0 (unguided) then rounds 1..K of Algorithm 1 or 2.

    `objective` must be the counted objective; `trainable` the network that Algorithm 2 fine-tunes
    (the cell spec refuses Algorithm 2 on a denoiser that cannot be fine-tuned).

    A batched pass (benchmark.batch): `seed` a list, one cell of `config.samples` chains per seed, run as
    one batch, cell-major; `strengths` one per cell (the method's own when not given; different ones need
    a method that `batches_strengths`). Each chain draws from its own cell's streams, so each cell gets
    what it gets alone; round 0 (unguided) is sampled once per distinct seed. A cell set to False in `alive`
    (it diverged) leaves the pass from the next round. `round0`: a dict that passes share (one job's), where
    the round-0 batch of each seed is kept under `round0_key` (what it depends on: task, denoiser, sampling,
    batch size) and reused by the later passes (`_round_zero`).
    Algorithm 2 fine-tunes one network: one cell per pass.

    Every round's `state` resumes the pass after it (`resume=state`): the samples, the fine-tuned
    weights, the optimiser's and the fine-tuning RNG's states; round noise is derived from the seeds.
    """
    seeds = [seed] if isinstance(seed, int) else list(seed)
    n, B = len(seeds), config.samples
    if strengths is None:
        strengths = [float(method.strength)] * n
    if len(strengths) != n:
        raise ValueError(f"{len(strengths)} strengths for a pass of {n} cells")
    if len(set(strengths)) > 1 and not method.batches_strengths:
        raise ValueError(f"method {method.name!r} does not batch strengths: run its strengths in separate passes")
    if alive is None:
        alive = [True] * n
    optimizer = None
    if config.algorithm == "alg2":
        if n != 1:
            raise ValueError("Algorithm 2 fine-tunes its own network: one cell per pass")
        optimizer = torch.optim.Adam(trainable.parameters(), lr=config.finetune_lr, betas=(0.9, 0.99))
        ft_gen = torch.Generator().manual_seed(derive_seed("finetune", task.name, denoiser_name, seeds[0]))

    cells, z, first = list(range(n)), None, 0
    if resume is not None:
        cells, z, first = list(resume["cells"]), resume["z"].to(device), resume["round"] + 1
        if optimizer is not None:
            trainable.load_state_dict(resume["trainable"])
            optimizer.load_state_dict(resume["optimizer"])
            ft_gen.set_state(resume["ft_gen"])
    for k in range(first, config.rounds + 1):
        if not all(alive[c] for c in cells):                                  # a cell diverged: it leaves
            keep = [j for j, c in enumerate(cells) if alive[c]]
            z = z.view(len(cells), B, *z.shape[1:])[keep].flatten(0, 1) if z is not None else None
            cells = [cells[j] for j in keep]
        if not cells:
            return
        live = [strengths[c] for c in cells]
        if len(set(live)) > 1:
            guided = method.with_strengths(torch.tensor(live, dtype=torch.float64, device=device).repeat_interleave(B))
        else:                                       # one strength: the method at it, a float as a solo run has
            guided = method if live[0] == method.strength else dataclasses.replace(method, strength=live[0])
        before = costs.snapshot()
        start = time.perf_counter()
        # Round 0 is unguided: cells with the same seed draw the same batch, sampled once and shared.
        drawn = list(dict.fromkeys(seeds[c] for c in cells)) if k == 0 else [seeds[c] for c in cells]
        target, reused = None, 0.0
        if k == 0:
            z, reused = _round_zero(sampler, drawn, B, round0, round0_key, task, denoiser_name, costs, device)
            if len(drawn) < len(cells):
                z = z.view(len(drawn), B, *z.shape[1:])[[drawn.index(seeds[c]) for c in cells]].flatten(0, 1)
        else:
            noise = _round_noise(task, denoiser_name, drawn, k, B, device)
            x_T = noise.draw()
            target = (linearise(objective, z, guided.strength, config.linearise, cells=len(cells))
                      if method.uses_linear_target else None)
            if optimizer is not None and k - 1 >= config.finetune_start:   # Algorithm 2: on z_{k-1}, for round k
                _finetune(trainable, optimizer, z, sampler.schedule, config.finetune_steps, ft_gen, costs, device)
            z = sample(sampler, guided, x_T, noise, Guide(objective, target, augment=task.augment,
                                                            noisy_log_prob=getattr(objective, "noisy_log_prob", None)))
        if z.is_cuda:
            torch.cuda.synchronize()  # kernels are asynchronous: time the work, not its launch
        state = {"round": k, "cells": list(cells), "z": z}
        if optimizer is not None:
            state |= {"trainable": trainable.state_dict(), "optimizer": optimizer.state_dict(),
                      "ft_gen": ft_gen.get_state()}
        # a reused round 0 counts the forwards and seconds it took when it was sampled: each cell records its cost
        yield Round(k, z, costs.snapshot() - before, time.perf_counter() - start + reused, list(cells), target, state,
                    computed=len(drawn))
