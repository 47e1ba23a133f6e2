"""Manifold Preserving Guided Diffusion, MPGD without projection (He et al. 2024, Alg. 2).

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, no graph)
    h_t     = grad_{x0h} r(x0h)                               (x0h detached: clean space only)
    x0h'    = x0h + c_t h_t
    x_{t-1} = DDIM(x0h', e)                                   (the same e, as MPGD does)

The gradient never goes back through the denoiser, so the step is cheap but it is not projected
onto the data manifold: for a reward whose gradient leaves span(A), so do the samples (the
denoiser pulls x_t back at the next step, but the last steps' displacement stays).

Step size c_t, by `schedule` (per sample, d = the number of entries of one sample):
    "rms" (default, the authors' code):
        c_t = strength / (RMS(h_t) sqrt(ab_{t-1})),   RMS(h_t) = ||h_t|| / sqrt(d),
        and c_t = 0 for a sample whose h_t is exactly 0. The move of x_{t-1}, sqrt(ab_{t-1}) c_t h_t,
        then has RMS `strength` at every step: the clean-space step grows as the noise grows.
        This is `rho = rho_scale / (norm_grad * norm_grad).mean().sqrt() / at_next.sqrt()`,
        `x0_t -= rho * norm_grad` (at_next = ab_{t-1}; loss = -r) of their nonlinear-guidance code,
        KellyYutongHe/mpgd_pytorch, nonlinear/Face-GD/functions/faceid_denoising.py
        (wo_proj_faceid_ddim_diffusion). Differences: their RMS is taken over the whole batch (their
        runs use batch size 1), ours per sample, so that one chain never changes another's step; their
        `stop` (no guidance for t <= 100 of 1000) is not applied (guidance at every step).
    "constant": c_t = strength, a constant step in clean space. The DDIM update scales it by
        sqrt(ab_{t-1}) in x_{t-1}, which is TFG's clean-space term sqrt(ab_{t-1}) Delta_0 with one
        iteration (N_iter = 1) and a constant mu (TFG's MPGD special case, tests/methods/test_tfg.py).
    "sqrt_ab_prev": c_t = strength sqrt(ab_{t-1}), smaller steps while the sample is noisy (the
        opposite dependence on ab_{t-1} from "rms").
The authors' linear-inverse-problem code (linear_inv/guided_diffusion/condition_methods.py,
`mpgd_wo_proj`) steps by scale / sqrt(ab_{t-1}) without the RMS, on the unsquared residual norm
||y - A x0h|| (whose gradient has a bounded norm); "rms" is their rule for a general reward.

Cost per step: 1U + 0 U_b + 1 objective evaluation + 1 objective gradient.

Reference: Y. He, N. Murata, C.-H. Lai, Y. Takida, T. Uesaka, D. Kim, W.-H. Liao, Y. Mitsufuji,
J. Z. Kolter, R. Salakhutdinov, S. Ermon. Manifold Preserving Guided Diffusion. ICLR 2024.
Code: https://github.com/KellyYutongHe/mpgd_pytorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import Step, tweedie
from benchmark.methods.base import GuidanceMethod, chain_scalar, norm, scaled


@dataclass
class MPGD(GuidanceMethod):
    name = "mpgd"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    schedule: Literal["rms", "constant", "sqrt_ab_prev"] = "rms"

    def step(self, x_t, step, sampler, guide, noise):
        e = sampler.eps(x_t, step)
        x0h = tweedie(x_t, e, step.ab_t)
        with torch.enable_grad():
            x0 = x0h.detach().requires_grad_(True)                           # clean-space leaf
            (h_t,) = torch.autograd.grad(guide.objective(x0).sum(), x0)      # no denoiser VJP
        return sampler.ddim(x0h + scaled(self.c_t(h_t, step), h_t), e, step, noise)

    def c_t(self, h_t: torch.Tensor, step: Step) -> float | torch.Tensor:
        """The clean-space step: a float (or per-chain [B] with batched strengths), per sample [B] for "rms"."""
        if self.schedule == "constant":
            return self.strength
        if self.schedule == "sqrt_ab_prev":
            return self.strength * math.sqrt(step.ab_prev)
        rms = norm(h_t) / math.sqrt(h_t[0].numel())                          # [B], per sample
        # a product, not `strength / tensor` (torch's reciprocal-then-multiply), so a per-chain strength
        # tensor rounds exactly as the float does (batched cells)
        c = chain_scalar(self.strength, h_t.dtype) * (rms * math.sqrt(step.ab_prev)).reciprocal()
        return torch.where(rms > 0, c, torch.zeros_like(c))                  # h_t = 0: no step (not 0/0)

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1G per step (clean-space gradient: no VJP)."""
        return (steps, 0, steps, steps)
