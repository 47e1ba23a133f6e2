"""Denoising diffusion models for plug-and-play image restoration, DiffPIR (Zhu et al. 2023), for a linear
measurement y = A x + sigma_y n (benchmark.objectives.operator.LinearMeasurement). No gradient: a proximal step.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                                  (one forward, no graph)
    rho_t   = lam sigma^2 / sigmabar_t^2,  sigmabar_t^2 = (1 - ab_t) / ab_t,  sigma = max(sigma_y, SIGMA_FLOOR)
    x0'     = argmin_x ||y - A x||^2 + rho_t ||x - x0h||^2 = x0h + A^T (A A^T + rho_t I)^{-1} (y - A x0h)
    x0      = x0h + strength (x0' - x0h)                                   (eq. 13 / Alg. 1, step 2)
    eps_hat = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)
    x_{t-1} = sqrt(ab_{t-1}) x0 + sqrt(1 - zeta) (k eps_hat + s z1) + sqrt(zeta) sqrt(1 - ab_{t-1}) z2

with s the shared sampler's DDIM(eta) noise scale and k = sqrt(1 - ab_{t-1} - s^2): the authors' update
(main_ddpir_*.py: sqrt(1 - zeta) (sqrt(1 - ab_{t-1} - eta_sigma^2) eps + eta_sigma z) + sqrt(zeta)
sqrt(1 - ab_{t-1}) z'), which at eta = 0 (their default) is Alg. 1's
x_{t-1} = sqrt(ab_{t-1}) x0 + sqrt(1 - ab_{t-1}) (sqrt(1 - zeta) eps_hat + sqrt(zeta) z). The two draws are
one, z ~ N(0, I) times sqrt((1 - zeta) s^2 + zeta (1 - ab_{t-1})), the same law.

Parameters (the authors' configs, configs/sisr.yaml and deblur.yaml: lambda_ = 1, zeta = 0.1; inpaint.yaml:
zeta = 1.0 at 20 steps):
    lam   the paper's lambda (in our units: see Units), > 0: the prior's weight in the proximal step (larger:
          weaker data fit); 0.25 = their lambda_ = 1.
    zeta  in [0, 1]: the share of fresh noise in x_{t-1} (0: deterministic DDIM-like, 1: all fresh).
    strength: the authors' `guidance_scale`, the multiplier of the proximal correction x0' - x0h; 1 = published,
          0 = x0h unchanged (the chain with zeta's noise: the unguided DDIM chain when zeta = 0).
Units: their proximal step runs on images in [0, 1] with rho_t = lambda_ sigma_[0,1]^2 / sigmabar_t^2 (sigmabar_t the
[-1, 1] model's; main_ddpir_*.py: x0_p = x0 / 2 + 0.5, rhos = lambda_ sigma^2 / sigma_ks^2, the noise level given
in [0, 1]); ours runs on x in [-1, 1] with sigma_y in those units (sigma_y = 2 sigma_[0,1]), so our lam = their
lambda_ / 4: the default lam = 0.25 is their lambda_ = 1 (on a task without a [0, 1] image range, e.g.
gaussian_inverse, lam is simply the prior's weight in units of sigma_y^2 / sigmabar_t^2).
SIGMA_FLOOR: the authors' floor max(0.001, sigma_y) for noise-free measurements (rho_t = 0 would be the hard
projection A x0 = y); our x is in [-1, 1] where theirs is [0, 1], so it is a floor, not the same number.

Deliberate differences: the proximal step is made at every step, the last included (their code skips it at the
final step and returns the denoiser's x0 there, then pastes y into the observed pixels for inpainting); the
grid is the shared sampler's (theirs 'quad' by default); no `iter_num_U` repeats.

Cost per step: 1U + 0U_b + 1 objective evaluation (the read of y, `measurement`) + 0 objective gradients.

Reference: Y. Zhu, K. Zhang, J. Liang, J. Cao, B. Wen, R. Timofte, L. Van Gool. Denoising Diffusion Models for
Plug-and-Play Image Restoration. CVPR Workshops (NTIRE) 2023 (eq. 13, Alg. 1). Code: github.com/yuanzhi-zhu/DiffPIR
(main_ddpir_deblur.py, main_ddpir_sisr.py, configs/).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import GuidanceMethod, scaled

#: The floor of sigma in rho_t (the authors' max(0.001, sigma_y)).
SIGMA_FLOOR = 1e-3


@dataclass
class DiffPIR(GuidanceMethod):
    name = "diffpir"
    needs_operator = True
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    strength: float = 1.0
    lam: float = 0.25
    zeta: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not self.lam > 0:
            raise ValueError(f"method {self.name!r}: lam must be > 0, got {self.lam}")
        if not 0 <= self.zeta <= 1:
            raise ValueError(f"method {self.name!r}: zeta must be in [0, 1], got {self.zeta}")

    def rho(self, step, sigma_y: float) -> float:
        """rho_t = lam sigma^2 / sigmabar_t^2 (Alg. 1)."""
        sigma = max(float(sigma_y), SIGMA_FLOOR)
        return self.lam * sigma ** 2 * step.ab_t / (1.0 - step.ab_t)

    def step(self, x_t, step, sampler, guide, noise):
        objective = guide.objective
        e = sampler.eps(x_t, step)
        x0h = tweedie(x_t, e, step.ab_t)
        y = objective.measurement(x_t)                                       # 1 objective evaluation per sample
        prox = objective.AT(objective.solve(y - objective.A(x0h), 1.0, self.rho(step, objective.sigma_y)))
        x0 = x0h + scaled(self.strength, prox)                              # x0h + strength (x0' - x0h)
        eps_hat = (x_t - math.sqrt(step.ab_t) * x0) / math.sqrt(1.0 - step.ab_t)
        x0, eps_hat = sampler.clipped(x0, eps_hat, step)
        s, c2 = step.sigma, 1.0 - step.ab_prev
        k = math.sqrt(max(c2 - s * s, 0.0))
        z = noise.draw()
        return (math.sqrt(step.ab_prev) * x0 + math.sqrt(1.0 - self.zeta) * k * eps_hat
                + math.sqrt((1.0 - self.zeta) * s * s + self.zeta * c2) * z)

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1 objective evaluation per step (no VJP, no gradient)."""
        return (steps, 0, steps, 0)
