"""Look-ahead-loss gradient guidance G_loss (Guo et al. 2024, Def. 1, eq. 7).

    score' = score - beta_t grad_{x_t} (y - g^T x0h(x_t))^2
           = score + 2 beta_t (y - g^T x0h) grad_{x_t}(g^T x0h)
    beta_t = (alpha^2 / 2) / (alpha^2 sigma^2 + h ||grad_{x_t}(g^T x0h)||^2)

The gradient passes through the denoiser (one VJP), so with the exact score of subspace data
grad_{x_t}(g^T x0h) = alpha A A^T g stays in span(A) (their Theorem 1), and the guided score
equals grad log p_t(x_t | y) for y = g^T x_0 + N(0, sigma^2). Cost per step: 1U + 1U_b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.methods.base import GuidanceMethod, per_sample


@dataclass
class LookAheadLoss(GuidanceMethod):
    name = "gloss"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)
    uses_linear_target = True

    sigma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.sigma <= 0:
            raise ValueError(f"method {self.name!r}: sigma must be > 0 (the observation noise), got {self.sigma}")

    def guided_eps(self, x_t, step, sampler, guide):
        g, y = guide.linear.g, guide.linear.y
        with torch.enable_grad():
            x, e, x0h = sampler.eps_with_graph(x_t, step)
            f = (g * x0h).flatten(1).sum(-1)                                      # g^T x0h: [B]
            (grad_f,) = torch.autograd.grad(f.sum(), x)                           # one VJP
        e, f = e.detach(), f.detach()
        a2 = step.alpha ** 2
        beta = (a2 / 2) / (a2 * self.sigma ** 2 + step.h * (grad_f * grad_f).flatten(1).sum(-1))  # [B]
        G = per_sample(2 * beta * (y - f), grad_f) * grad_f
        return e - math.sqrt(step.h) * G

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1U_b per step (g^T x0h is linear: no objective call)."""
        return (steps, steps, 0, 0)
