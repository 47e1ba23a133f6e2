"""Diffusion Posterior Sampling, DPS (Chung et al. 2023), for a reward r to maximise.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, graph kept)
    g_t     = grad_{x_t} r(x0h(x_t))                          (one VJP through the denoiser)
    x_{t-1} = DDIM(x0h, e) + zeta_t g_t

with the step chosen by `normalise`, per sample. The default "auto" runs the published rule for
the kind the objective declares (benchmark.objectives.base.KINDS; an objective that declares none
is a general reward):

  "residual"   (auto on kind "inverse": a measurement y = A x* + noise, with residual_norm)
        x_{t-1} = DDIM(x0h, e) - zeta' grad_{x_t} ||y - A x0h||_2,   zeta' = strength:
        Chung et al.'s Alg. 1 with their step zeta_i = zeta' / ||y - A x0h|| on the squared residual,
        written as their code runs it (condition_methods.py, PosteriorSampling: x -= scale *
        grad ||y - A x0h||, the unsquared norm; the paper's form is twice that step). Their
        zeta' = 0.3 (super-resolution, deblurring), 0.5 (inpainting). g_t is taken of
        -residual_norm(x0h) instead of r. Per objective:
          r = -||y - A x||            (inverse.py: inpaint, superres, deblur): the step of "none";
          r = -||y - H x||^2 / (2 s^2) (gaussian_inverse): grad r = -(||v|| / s^2) grad ||v||, so
                                        "residual" = zeta_t = strength s^2 / ||v|| on g_t of r.
  "abs_reward" (auto on kind "log_prob": r = log p(c | x), a classifier's label objective)
        zeta_t = strength / max(|r(x0h)|, EPS): TFG's DPS baseline (their code, methods/dps.py:
        guidance_strength * grad / |log p|). Meant for log-probabilities: |log p| ~ 1 - p and
        ||grad log p|| = O(1 - p) as p -> 1, so the step stays bounded. On a reward that crosses 0
        with a non-zero gradient the step diverges, and it changes when a constant is added to r.
  "none"       (auto on kind "reward": anything else)
        zeta_t = strength: Alg. 1 with a constant step, grad log p(y | x0h) read as grad r; the
        special case DPS = (rho > 0, mu = 0, gamma = 0, N_recur = 1, N_iter = 0) of TFG's unified
        method. A general reward has no residual to normalise by; this rule is invariant to adding
        a constant to r and its displacement strength ||g_t|| never divides by anything. Like any
        constant gradient step it is stable below 2 / (the curvature of r(x0h(x_t)) in x_t): on
        r = 10 - (theta^T x - 3)^2 with the oracle, zeta < 1 / (ab_t ||P theta||^2), i.e. zeta < ~1 on
        quadratic_on (tests/methods/test_dps.py derives the exact law of its samples at zeta = 0.1).

"residual" on an objective that is not of kind "inverse" is refused (ValueError).

Cost per step: 1U + 1U_b + 1 objective evaluation + 1 objective gradient (the residual norm counts
as the objective's: `counted_methods`; the forward that builds the graph is the only forward).
Shen et al.'s options (`augment`, `polyak`, `recurrence`; see LossGuidance) apply: s repeats x
(1U + 1U_b + |T| G).

References: H. Chung, J. Kim, M. T. Mccann, M. L. Klasky, J. C. Ye. Diffusion Posterior Sampling
for General Noisy Inverse Problems. ICLR 2023 (Alg. 1; code: github.com/DPS2022/
diffusion-posterior-sampling). H. Ye et al. TFG: Unified Training-Free Guidance for Diffusion
Models. NeurIPS 2024.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from benchmark.methods.base import LossGuidance, chain_scalar, per_sample
from benchmark.objectives.base import objective_kind

#: Floor of |r(x0h)| in the "abs_reward" normalisation, so a reward at 0 gives a finite step.
EPS = 1e-8

#: The published rule "auto" runs for each objective kind.
AUTO_RULE = {"inverse": "residual", "log_prob": "abs_reward", "reward": "none"}


@dataclass
class DPS(LossGuidance):
    name = "dps"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    normalise: Literal["auto", "residual", "abs_reward", "none"] = "auto"

    def rule(self, objective) -> str:
        """The normalisation run on `objective`: `normalise`, or for "auto" the rule of the objective's kind."""
        kind = objective_kind(objective)
        if self.normalise == "auto":
            return AUTO_RULE[kind]
        if self.normalise == "residual" and kind != "inverse":
            name = getattr(objective, "name", "") or type(objective).__name__
            raise ValueError(f"method 'dps': normalise='residual' needs an inverse-problem objective (kind 'inverse', "
                             f"with residual_norm); objective {name!r} is of kind {kind!r}; use 'auto', "
                             "'abs_reward' or 'none'")
        return self.normalise

    def guided_step(self, x_t, step, sampler, guide, noise):
        rule = self.rule(guide.objective)
        if rule == "residual":                         # g_t = -grad_{x_t} ||y - A x0h||
            objective = guide.objective
            guide = dataclasses.replace(guide, objective=lambda x: -objective.residual_norm(x))
        e, x0h, r, g_t = self.grad_through_denoiser(x_t, step, sampler, guide, noise)
        if rule == "abs_reward":
            zeta_t = r.abs().clamp_min(EPS).reciprocal() * chain_scalar(self.strength, r.dtype)
        else:
            zeta_t = self.strength
        zeta_t = self.step_size(zeta_t, e, g_t)                              # [B], per sample
        return sampler.ddim(x0h, e, step, noise) + per_sample(zeta_t, g_t) * g_t

    def guided_step_costs(self, t):
        """1U + 1U_b + |T| G (x s repeats in the time-travel window: LossGuidance.costs_per_sample)."""
        return (1, 1, self.n_augment, self.n_augment)
