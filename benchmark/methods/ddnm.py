"""Denoising diffusion null-space model, DDNM and DDNM+ (Wang, Yu, Zhang 2023), for a linear measurement
y = A x + sigma_y n (benchmark.objectives.operator.LinearMeasurement). No gradient: a range-space projection.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                                  (one forward, no graph)
    x0      = x0h - strength lambda_t A^+ (A x0h - y)                       (Alg. 1; eq. 17 with Sigma_t = lambda_t I)

sigma_y = 0 (DDNM, Alg. 1): lambda_t = 1 (x0 = A^+ y + (I - A^+ A) x0h at strength 1) and
    x_{t-1} = DDIM(x0, e),
e unchanged, as the authors' code does (functions/svd_ddnm.py, ddnm_diffusion: at_next.sqrt() * x0_t_hat +
c1 z + c2 et).

sigma_y > 0 (DDNM+, eqs. 17-19): the correction carries the noise lambda_t A^+ sigma_y n into x0, so the
step's own noise is reduced in A's range to keep x_{t-1}'s variance. With a = sqrt(ab_{t-1}) (the weight of x0
in x_{t-1}), c = sqrt(1 - ab_{t-1}) (the noise budget, the code's sigma_t), s = the DDIM(eta) noise scale and
k = sqrt(c^2 - s^2) (the weight of e), per the authors' code (functions/svd_operators.py, Lambda and
Lambda_noise, with their eta read as s / c):
    c >= a sigma_y:  lambda_t = 1,                  range part of the noise: sqrt(c^2 - (a sigma_y)^2) z
    c <  a sigma_y:  lambda_t = k / (a sigma_y),    range part of the noise: s z
and in A's null space the DDIM noise k e + s z as usual:
    x_{t-1} = a x0 + (I - A^+ A)(k e + s z) + gamma_t A^+ A z.
So in the range, x_{t-1} has the noise variance c^2 whether the measurement noise or z fills it (eq. 19:
gamma_t^2 = c^2 - (a lambda_t sigma_y)^2 on the DDPM form, the same split).

The scalar lambda_t is the paper's eq. 19: it takes the noise of A^+ y to be sigma_y per range direction, exact
for A with unit singular values (inpaint: A A^T = M); the authors' code compares per singular value s_i,
c < a sigma_y / s_i (their SVD operators). With a non-unit spectrum (superres: s_i = 1/2; gaussian_inverse,
deblur) ours is the published scalar rule, not the code's per-direction one: a deliberate difference (the
operator interface exposes A, A^T, A^+ and a solve, not the singular values).

strength: a multiplier of the range-space correction A^+ (A x0h - y); 1 = the published DDNM / DDNM+, 0 with
sigma_y = 0 is the unguided DDIM chain. With sigma_y > 0 strength scales lambda_t only: the noise split above
does not depend on it (strength 0 is then not the unguided chain: e is replaced by z in A's range). Per chain
(batched strengths): an element-wise product.

Deliberate differences: the noise of the step is the shared sampler's DDIM(eta) (their eta = 0.85 mixes z and
e as c eta z + c sqrt(1 - eta^2) e; ours k e + s z, the same form with eta = s / c); no time travel (their
DDNM+ option, RePaint's jumps: an open difference); the scalar lambda_t (above).

Cost per step: 1U + 0U_b + 1 objective evaluation (the read of y, `measurement`) + 0 objective gradients.

Reference: Y. Wang, J. Yu, J. Zhang. Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model.
ICLR 2023 (Alg. 1, eqs. 17-19). Code: github.com/wyhuai/DDNM (functions/svd_ddnm.py, functions/svd_operators.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import GuidanceMethod, scaled


def ddnm_plus_scales(step, sigma_y: float) -> tuple[float, float]:
    """(lambda_t, gamma_t): DDNM+'s correction scale and the std of the fresh noise in A's range (eq. 19, in the
    DDIM form of the module docstring), for sigma_y > 0."""
    a, c2, s = math.sqrt(step.ab_prev), 1.0 - step.ab_prev, step.sigma
    k = math.sqrt(max(c2 - s * s, 0.0))
    nu = a * sigma_y
    if c2 >= nu * nu:
        return 1.0, math.sqrt(c2 - nu * nu)
    return k / nu, s


@dataclass
class DDNM(GuidanceMethod):
    name = "ddnm"
    needs_operator = True
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    strength: float = 1.0

    def step(self, x_t, step, sampler, guide, noise):
        objective = guide.objective
        e = sampler.eps(x_t, step)
        x0h = tweedie(x_t, e, step.ab_t)
        y = objective.measurement(x_t)                                       # 1 objective evaluation per sample
        correction = objective.A_pinv(objective.A(x0h) - y)                  # A^+ (A x0h - y)
        sigma_y = float(objective.sigma_y)
        if sigma_y == 0:                                                     # DDNM, Alg. 1
            return sampler.ddim(x0h - scaled(self.strength, correction), e, step, noise)
        lam, gamma = ddnm_plus_scales(step, sigma_y)                        # DDNM+, eqs. 17-19
        x0, e = sampler.clipped(x0h - scaled(self.strength, lam * correction), e, step)
        s = step.sigma
        k = math.sqrt(max(1.0 - step.ab_prev - s * s, 0.0))
        z = noise.draw()
        ddim_noise = k * e + s * z
        in_range = objective.A_pinv(objective.A(ddim_noise))                 # A^+ A: the projection on A's range
        return math.sqrt(step.ab_prev) * x0 + ddim_noise - in_range + gamma * objective.A_pinv(objective.A(z))

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1 objective evaluation per step (no VJP, no gradient)."""
        return (steps, 0, steps, 0)
