"""Manifold Preserving Guided Diffusion, MPGD without projection (He et al. 2024, Alg. 2).

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, no graph)
    h_t     = grad_{x0h} r(x0h)                               (x0h detached: clean space only)
    x0h'    = x0h + c_t h_t
    x_{t-1} = DDIM(x0h', e)                                   (the same e, as MPGD does)

The gradient never goes back through the denoiser, so the step is cheap but it is not projected
onto the data manifold: for a reward whose gradient leaves span(A), so do the samples (the
denoiser pulls x_t back at the next step, but the last steps' displacement stays).

Step size c_t, by `schedule`:
    "constant" (default): c_t = strength, a constant step in clean space. The DDIM update scales
        it by sqrt(ab_{t-1}) in x_{t-1}, which is TFG's clean-space term sqrt(ab_{t-1}) Delta_0
        with one iteration (N_iter = 1) and a constant mu.
    "sqrt_ab_prev": c_t = strength * sqrt(ab_{t-1}), smaller steps while the sample is noisy.
MPGD's Alg. 2 leaves c_t a step-size hyper-parameter; the constant is our plain reading of it.

Cost per step: 1U + 0 U_b + 1 objective evaluation + 1 objective gradient.

Reference: Y. He, N. Murata, C.-H. Lai, Y. Takida, T. Uesaka, D. Kim, W.-H. Liao, Y. Mitsufuji,
J. Z. Kolter, R. Salakhutdinov, S. Ermon. Manifold Preserving Guided Diffusion. ICLR 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import GuidanceMethod, scaled



@dataclass
class MPGD(GuidanceMethod):
    name = "mpgd"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    schedule: Literal["constant", "sqrt_ab_prev"] = "constant"

    def step(self, x_t, step, sampler, guide, noise):
        e = sampler.eps(x_t, step)
        x0h = tweedie(x_t, e, step.ab_t)
        with torch.enable_grad():
            x0 = x0h.detach().requires_grad_(True)                           # clean-space leaf
            (h_t,) = torch.autograd.grad(guide.objective(x0).sum(), x0)      # no denoiser VJP
        c_t = self.strength if self.schedule == "constant" else self.strength * math.sqrt(step.ab_prev)
        return sampler.ddim(x0h + scaled(c_t, h_t), e, step, noise)

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1G per step (clean-space gradient: no VJP)."""
        return (steps, 0, steps, steps)
