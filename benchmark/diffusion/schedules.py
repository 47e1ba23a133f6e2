"""Variance-preserving noise schedules: the cumulative alpha-bar ab_t on t = 0..T.

x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps. In Guo et al.'s notation alpha(t) = sqrt(ab_t)
and h(t) = 1 - ab_t. ab_0 = 1 by convention (t = 0 is the data).

References: Nichol & Dhariwal 2021 (cosine, eq. 17); Ho et al. 2020 (linear).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VPSchedule:
    """ab[t] for t = 0..T (float64, ab[0] = 1, strictly decreasing)."""

    name: str
    ab: torch.Tensor

    @property
    def T(self) -> int:
        return self.ab.numel() - 1

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod, name: str) -> "VPSchedule":
        """A schedule from given alpha-bar values of the noise levels 1..T (e.g. a diffusers scheduler's
        `alphas_cumprod`, whose index i is our t = i + 1): ab = [1, alphas_cumprod] in float64.

        The values must be finite, strictly decreasing and in (0, 1): ab_T = 0 (a zero-terminal-SNR
        schedule) has no Tweedie estimate at t = T."""
        given = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).flatten()
        if given.numel() < 1:
            raise ValueError(f"schedule {name!r}: alphas_cumprod is empty")
        if not torch.isfinite(given).all() or not ((given > 0) & (given < 1)).all():
            raise ValueError(f"schedule {name!r}: alphas_cumprod must lie in (0, 1) (a zero-terminal-SNR "
                             f"schedule, ab_T = 0, is not supported); got min {given.min().item():.3g}, "
                             f"max {given.max().item():.3g}")
        if given.numel() > 1 and not (given[1:] < given[:-1]).all():
            raise ValueError(f"schedule {name!r}: alphas_cumprod must be strictly decreasing")
        return cls(name, torch.cat([torch.ones(1, dtype=torch.float64), given]))


def _from_betas(name: str, betas: torch.Tensor) -> VPSchedule:
    ab = torch.cumprod(1.0 - betas, dim=0)
    return VPSchedule(name, torch.cat([torch.ones(1, dtype=torch.float64), ab]))


def cosine(T: int, s: float = 0.008, max_beta: float = 0.999) -> VPSchedule:
    """ab(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2; betas clipped at max_beta."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return _from_betas("cosine", betas)


def linear(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = 0.999) -> VPSchedule:
    """Linear betas of Ho et al., rescaled by 1000 / T so any T spans the same noise range."""
    scale = 1000.0 / T
    betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64).clamp(max=max_beta)
    return _from_betas("linear", betas)


SCHEDULES = {"cosine": cosine, "linear": linear}


def make_schedule(name: str, T: int) -> VPSchedule:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {sorted(SCHEDULES)}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return SCHEDULES[name](T)


def timestep_grid(T: int, steps: int) -> list[int]:
    """Sampling grid tau_S > ... > tau_1 >= 1, evenly spaced (DDIM's 'uniform' skip), ending at 0."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, T={T}], got {steps}")
    grid = torch.linspace(T, 0, steps + 1).round().long().tolist()
    return grid
