"""The outer loops of Guo et al. (2024): Algorithm 1 (guided rounds) and Algorithm 2 (rounds with
adaptive fine-tuning of the score network).

Algorithm 1. z_0 = an unguided batch. In round k = 1..K every chain i is linearised at its
previous sample, g_{k,i} = grad r(z_{k-1,i}), y_{k,i} = g_{k,i}^T z_{k-1,i} + delta, and a new
guided sample z_{k,i} is drawn with the method's guidance towards (g, y). `linearise =
"batch_mean"` uses one linearisation for the whole batch, at the batch mean z_bar (one gradient
per round): g = grad r(z_bar), y = g^T z_bar + delta.

Algorithm 2. As Algorithm 1, and from round `finetune_start` on, `finetune_steps` Adam steps
(lr `finetune_lr`, betas (0.9, 0.99), as in their code) of the pre-training loss on the
latest batch, so the prior itself moves towards the optimum.

Methods that do not use a linear target (unguided, training-free) draw each round afresh,
guided by r itself; their rounds are independent repeats.

Every round draws its noise from per-chain streams seeded by (task, denoiser, seed, round, chain),
never by method or strength: all methods of a comparison start from the same noise.
"""

from __future__ import annotations

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
    z: torch.Tensor          # [B, *shape] samples of this round
    costs: Costs             # spent in this round (sampling + linearisation)
    wall_seconds: float


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


def run_rounds(*, task, objective, method, sampler: Sampler, costs: Costs, config: RoundsConfig,
               seed: int, denoiser_name: str, device: str = "cpu", trainable=None) -> Iterator[Round]:
    """Yield round 0 (unguided) then rounds 1..K of Algorithm 1 or 2.

    `objective` must be the counted objective; `trainable` the network that Algorithm 2 fine-tunes
    (the cell spec refuses Algorithm 2 on a denoiser that cannot be fine-tuned).
    """
    unguided = make_method("none")
    B = config.samples
    optimizer = None
    if config.algorithm == "alg2":
        optimizer = torch.optim.Adam(trainable.parameters(), lr=config.finetune_lr, betas=(0.9, 0.99))
        ft_gen = torch.Generator().manual_seed(derive_seed("finetune", task.name, denoiser_name, seed))

    z = None
    for k in range(config.rounds + 1):
        before = costs.snapshot()
        start = time.perf_counter()
        noise = PerSampleNoise.for_chains(("chain", task.name, denoiser_name, seed, k), B, task.shape,
                                          device=device)
        x_T = noise.draw()
        if k == 0:
            z = sample(sampler, unguided, x_T, noise)
        else:
            target = (linearise(objective, z, method.strength, config.linearise)
                      if method.uses_linear_target else None)
            z = sample(sampler, method, x_T, noise, Guide(objective, target, augment=task.augment,
                                                            noisy_log_prob=getattr(objective, "noisy_log_prob", None)))
            if optimizer is not None and k >= config.finetune_start and torch.isfinite(z).all():
                trainable.train().requires_grad_(True)
                for _ in range(config.finetune_steps):
                    t = torch.randint(1, sampler.schedule.T + 1, (B,), generator=ft_gen).to(device)
                    eps = torch.randn(z.shape, generator=ft_gen).to(device)
                    loss = v_loss(trainable, z, sampler.schedule, t, eps)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    costs.finetune_samples += B
                trainable.eval().requires_grad_(False)
        if z.is_cuda:
            torch.cuda.synchronize()  # kernels are asynchronous: time the work, not its launch
        yield Round(k, z, costs.snapshot() - before, time.perf_counter() - start)
