"""Classifier guidance, CG (Dhariwal & Nichol 2021, Alg. 2 for DDIM), with a noise-conditional classifier.

    e   = eps_theta(x_t, t)                                      (one forward, no graph)
    e'  = e - s sqrt(1 - ab_t) grad_{x_t} log p_psi(c | x_t, t)   (classifier trained on noisy x_t)
    x_{t-1} = DDIM(x0h(x_t, e'), e')

with s the `strength` (their guidance scale). The gradient is taken at x_t itself, through the
classifier only: it never passes through the denoiser, which is what makes this the trained
reference the training-free methods (gradients through x0h of a clean-image classifier) are
measured against. log p_psi comes from the objective's `noisy_log_prob(x_t, t)` (the digits
`label` objective has one; objectives without it cannot be guided this way).

Cost per step: 1U + 0 U_b + 1 objective evaluation + 1 objective gradient (the noise-conditional
classifier's forward and backward are counted as the objective's).

Reference: P. Dhariwal, A. Nichol. Diffusion Models Beat GANs on Image Synthesis. NeurIPS 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from benchmark.methods.base import GuidanceMethod, scaled


@dataclass
class ClassifierGuidance(GuidanceMethod):
    name = "cg"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)
    #: Needs the objective's noise-conditional log-probability (Guide.noisy_log_prob).
    uses_noisy_log_prob: ClassVar[bool] = True

    def guided_eps(self, x_t, step, sampler, guide):
        if guide is None or guide.noisy_log_prob is None:
            raise ValueError("method 'cg' needs an objective with a noise-conditional classifier "
                             "(noisy_log_prob), such as the digits task's 'label'; this objective has none")
        e = sampler.eps(x_t, step)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(guide.noisy_log_prob(x, step.t).sum(), x)   # [B, *shape]
        return e - scaled(self.strength * math.sqrt(step.h), grad)

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1G per step (the noise-conditional log-probability, counted as the objective's; no VJP)."""
        return (steps, 0, steps, steps)
