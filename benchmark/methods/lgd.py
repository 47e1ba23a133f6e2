"""Loss-Guided Diffusion with Monte Carlo, LGD-MC (Song et al. 2023, Alg. 1 with their eq. 9).

The point estimate r(x0h) of DPS is replaced by a Monte-Carlo estimate of E[exp r(x_0) | x_t]
under a Gaussian around x0h with the forward process's standard deviation:

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                               (one forward, graph kept)
    r~(x_t) = log (1/n) sum_{i=1}^n exp r(x0h + sqrt(1 - ab_t) eps_i),   eps_i ~ N(0, I) per sample
    g_t     = grad_{x_t} r~(x_t)                                         (one VJP, n objective gradients)
    x_{t-1} = DDIM(x0h, e) + zeta g_t,      zeta = strength (or Polyak's, with `polyak`)

The step is a constant, as in TFG's LGD-MC baseline (TFG with gamma = 1, N_s = n; see tfg.py).
Their paper writes the Gaussian's standard deviation r_t = sigma_t / sqrt(1 + sigma_t^2) for a VE
process with sigma_t = sqrt((1 - ab_t) / ab_t): that is sqrt(1 - ab_t), the value used here.
The eps_i are drawn from each chain's own stream (per sample); Shen et al.'s options apply.

Cost per step: 1U + 1U_b + n objective evaluations + n objective gradients (x |T| with augment).

Strength conventions (tests/test_conventions.py checks them on one oracle step):
- Song et al.'s own code: we found none published; the rule above is their Alg. 1 as the paper states
  it (not re-checked against the paper's text for this note).
- TFG's LGD-MC baseline (YWolfeee/Training-Free-Guidance methods/lgd.py, read in the copies in
  sony/titan-guide and myjju08/KAIRI_Research; the original is not in our reference store):
      guidance = grad_{x_t} logsumexp_i r(x0h + sqrt(1 - ab_t) eps_i) / n,   x_{t-1} = DDIM(x_t, e) + s guidance
  The gradient of the logsumexp is already the softmax-weighted mean of the n gradients; the / n averages
  a second time, so their guidance_strength s is n times ours: strength = s / n reproduces it (their
  "lgd_10": strength = s / 10). Their `rescale_grad` (clip_scale 100) is not applied. A third copy
  (christianbelardi/adam-guidance) adds s guidance / sqrt(a_t) and steps from a clipped x0h instead;
  which one the original holds we could not verify.
- TFG's unified method at gamma = 1 (their tfg.py: logsumexp - log n, no / n) has no factor n: it is
  this rule with rho_t = strength sqrt(a_t) (tests/methods/test_tfg.py).

Reference: J. Song, Q. Zhang, H. Yin, M. Mardani, M.-Y. Liu, J. Kautz, Y. Chen, A. Vahdat.
Loss-Guided Diffusion Models for Plug-and-Play Controllable Generation. ICML 2023.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.methods.base import LossGuidance, log_mean_exp_reward, per_sample


@dataclass
class LGD(LossGuidance):
    name = "lgd"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    n: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.n < 1:
            raise ValueError(f"method {self.name!r}: n (Monte-Carlo draws) must be >= 1, got {self.n}")

    def guided_step(self, x_t, step, sampler, guide, noise):
        draws = [noise.draw() for _ in range(self.n)]
        std = math.sqrt(1 - step.ab_t)
        smoothed = lambda x0: log_mean_exp_reward(lambda xs: self.reward(xs, guide, noise), x0, std, draws)
        e, x0h, _, g_t = self.grad_through_denoiser(x_t, step, sampler, guide, noise, reward=smoothed)
        zeta = self.step_size(self.strength, e, g_t)
        return sampler.ddim(x0h, e, step, noise) + per_sample(zeta, g_t) * g_t

    def guided_step_costs(self, t):
        """1U + 1U_b + n |T| G."""
        g = self.n * self.n_augment
        return (1, 1, g, g)
