"""Diffusion Posterior Sampling, DPS (Chung et al. 2023), for a general reward r to maximise.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, graph kept)
    g_t     = grad_{x_t} r(x0h(x_t))                          (one VJP through the denoiser)
    x_{t-1} = DDIM(x0h, e) + zeta_t g_t

with the step zeta_t chosen by `normalise`, per sample:
    "abs_reward" (default): zeta_t = strength / max(|r(x0h)|, EPS)   TFG's rule for a general reward
    "none":                 zeta_t = strength

Which is which. The original DPS rule for an inverse problem (their Alg. 1; zeta' = 0.3 for
super-resolution and deblurring, 0.5 for inpainting) is x_{t-1} = DDPM(x_t) - zeta' grad_{x_t}
||y - A x0h||, the residual norm unsquared and per sample. That is "none" applied to the reward
r = -||y - A x0h|| (as the digits inverse-problem objectives define it), with strength = zeta'.
On the squared reward r = -||y - A x0h||^2 the original rule is
    -zeta' grad ||v|| = -zeta' grad ||v||^2 / (2 ||v||) = (zeta' / 2) g_t / |r|^{1/2},   v = y - A x0h,
a normalisation by |r|^{1/2}, whereas "abs_reward" divides by |r| = ||v||^2: on that reward
"abs_reward" equals DPS with zeta' = 2 strength / ||v||, a different rule (its step shrinks
with the residual). "abs_reward" is TFG's DPS baseline (Ye et al. 2024), the default here
because our objectives are general rewards, not residual norms.

Cost per step: 1U + 1U_b + 1 objective evaluation + 1 objective gradient (the forward that
builds the graph is the only forward: no extra network calls for the DDIM part). Shen et al.'s
options (`augment`, `polyak`, `recurrence`; see LossGuidance) apply: s repeats x (1U + 1U_b + |T| G).

References: H. Chung, J. Kim, M. T. Mccann, M. L. Klasky, J. C. Ye. Diffusion Posterior Sampling
for General Noisy Inverse Problems. ICLR 2023. H. Ye et al. TFG: Unified Training-Free Guidance
for Diffusion Models. NeurIPS 2024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.methods.base import LossGuidance, chain_scalar, per_sample

#: Floor of |r(x0h)| in the "abs_reward" normalisation, so a reward at 0 gives a finite step.
EPS = 1e-8


@dataclass
class DPS(LossGuidance):
    name = "dps"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    normalise: Literal["abs_reward", "none"] = "abs_reward"

    def guided_step(self, x_t, step, sampler, guide, noise):
        e, x0h, r, g_t = self.grad_through_denoiser(x_t, step, sampler, guide, noise)
        zeta_t = r.abs().clamp_min(EPS).reciprocal() * chain_scalar(self.strength, r.dtype) if self.normalise == "abs_reward" else self.strength
        zeta_t = self.step_size(zeta_t, e, g_t)                              # [B], per sample
        return sampler.ddim(x0h, e, step, noise) + per_sample(zeta_t, g_t) * g_t

    def guided_step_costs(self, t):
        """1U + 1U_b + |T| G (x s repeats in the time-travel window: LossGuidance.costs_per_sample)."""
        return (1, 1, self.n_augment, self.n_augment)
