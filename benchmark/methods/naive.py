"""Naive gradient guidance G (Guo et al. 2024, eq. 6 / Sec. 4).

    score' = score + beta_t (y - g^T x0h) g,      beta_t = alpha / (sigma^2 + h ||g||^2)
    e'     = e - sqrt(h) * beta_t (y - g^T x0h) g

with alpha = sqrt(ab_t), h = 1 - ab_t, and (g, y) the linear target of Algorithm 1. The direction
is g itself, not passed through the denoiser, so for g off span(A) it leaves the data's
subspace. Cost per step: 1U (no VJP).

Reference: Y. Guo, H. Yuan, Y. Yang, M. Chen, M. Wang. Gradient Guidance for Diffusion Models:
An Optimization Perspective. NeurIPS 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import GuidanceMethod, per_sample


@dataclass
class NaiveGradient(GuidanceMethod):
    name = "naive"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)
    uses_linear_target = True

    sigma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.sigma <= 0:
            raise ValueError(f"method {self.name!r}: sigma must be > 0 (the observation noise), got {self.sigma}")

    def guided_eps(self, x_t, step, sampler, guide):
        g, y = guide.linear.g, guide.linear.y
        e = sampler.eps(x_t, step)
        x0h = tweedie(x_t, e, step.ab_t)
        beta = step.alpha / (self.sigma ** 2 + step.h * (g * g).flatten(1).sum(-1))   # [B]
        G = per_sample(beta * (y - (g * x0h).flatten(1).sum(-1)), g) * g              # [B, *shape]
        return e - math.sqrt(step.h) * G

    def costs_per_sample(self, steps, timesteps=None):
        """1U per step (the linear target's gradient is the round's, not the sampler's)."""
        return (steps, 0, 0, 0)

