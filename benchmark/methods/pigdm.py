"""Pseudoinverse-guided diffusion, PiGDM (Song, Vahdat, Mardani, Kautz 2023), for a linear measurement
y = A x + sigma_y n (benchmark.objectives.operator.LinearMeasurement).

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                                  (one forward, graph kept)
    v       = A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0h)             (eq. 8, the noisy variant)
    g       = (d x0h / d x_t)^T v                                          (one VJP through the denoiser)
    x_{t-1} = DDIM(x0h, e) + strength r_t^2 sqrt(ab_t) g                   (Alg. 1, weight w_t = r_t^2)

r_t^2 = 1 - ab_t: the paper's r_t^2 = sigma_t^2 / (1 + sigma_t^2) with sigma_t^2 = (1 - ab_t) / ab_t (the
variance of x0 given x_t for data of unit variance, their choice), the same number. v is computed at the
detached x0h (a vector, not differentiated), so the VJP is the method's only backward.

The weight w_t = r_t^2 on g: r_t^2 v = A^T (A A^T + sigma_y^2 / r_t^2 I)^{-1} (y - A x0h), which at sigma_y = 0 is
A^+ (y - A x0h), the noise-free eq. 7 (g = (A^+ y - A^+ A x0h)^T d x0h / d x_t) exactly, as the authors'
noise-free form and InverseBench's PiGDM (xiaoyu0716/InverseBench algo/pigdm.py: grad of <A^+ y - A^+ A x0h, x0h>, added times the VP
scale s(t) = sqrt(ab_t)) use it. Without it (w_t = 1) the step on the range of A is (1 / sigma_y^2) times the
residual at low noise, which overshoots for sigma_y^2 < 1/2 (on gaussian_inverse, sigma_y = 0.25, the samples'
variance grew 100-fold): sqrt(ab_t) r_t^2 keeps each range direction's step within the residual.

strength: the guidance weight on r_t^2 sqrt(ab_t) g; 1 = the published step, 0 = the unguided DDIM chain. Per
chain (batched strengths): every use is an element-wise product.

The coefficient on g (`coefficient`): "alg1" (the default) sqrt(ab_t), Alg. 1's and InverseBench's; "awd"
sqrt(ab_{t-1}) sqrt(ab_t), the authors' own code (NVlabs/RED-diff algos/pgdm.py, same authors, with its default
_configs/algo/pgdm.yaml: awd true, grad_term_weight 1: xs = sqrt(ab_s) x0_pred + c1 z + c2 et + grad_term
sqrt(ab_s) sqrt(ab_t)), weaker at high noise by sqrt(ab_{t-1}). Its g is ours at sigma_y = 0 (grad of
<A^+ y - A^+ A x0h, x0h> with the bracket detached = J^T A^+ (y - A x0h)). Their code is noise-free only: with
sigma_y > 0, "awd" puts their coefficient on our eq. 8 (noisy) g, a combination their code never runs.

Deliberate differences: the update's DDIM part is the shared sampler's DDIM(eta) (the paper's Alg. 1 is DDIM
with its eta, the same form). The authors' code without awd ((sqrt(ab_{t-1}) - c2 sqrt(ab_t) / sqrt(1 - ab_t))
sqrt(ab_t), i.e. the correction sqrt(ab_t) g applied to x0h and pushed through the DDIM step) is not an option;
their code implements the noise-free eq. 7 only (H_pinv) and starts from sqrt(ab_T) A^+ y + noise (ours: the
shared x_T of every method, so that all start from the same noise; the two differ by sqrt(ab_T) A^+ y, 0.006 A^+ y
at T = 1000 on the linear schedule).

Cost per step: 1U + 1U_b + 1 objective evaluation (the read of y, `measurement`) + 0 objective gradients
(A, A^T and the solve are the operator's arithmetic, not counted).

Reference: J. Song, A. Vahdat, M. Mardani, J. Kautz. Pseudoinverse-Guided Diffusion Models for Inverse
Problems. ICLR 2023 (eqs. 7-8, Alg. 1); code: NVlabs/RED-diff algos/pgdm.py. InverseBench (Zheng et al. 2025),
xiaoyu0716/InverseBench algo/pigdm.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.methods.base import GuidanceMethod, scaled

#: The coefficient on the guidance g (module docstring).
COEFFICIENTS = {"alg1": "sqrt(ab_t), Alg. 1 and InverseBench", "awd": "sqrt(ab_{t-1}) sqrt(ab_t), the authors' code"}


@dataclass
class PiGDM(GuidanceMethod):
    name = "pigdm"
    needs_operator = True
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    strength: float = 1.0
    coefficient: str = "alg1"

    def __post_init__(self):
        super().__post_init__()
        if self.coefficient not in COEFFICIENTS:
            raise ValueError(f"method 'pigdm': unknown coefficient {self.coefficient!r}; allowed: "
                             f"{', '.join(repr(c) for c in COEFFICIENTS)} ({'; '.join(COEFFICIENTS.values())})")

    def step(self, x_t, step, sampler, guide, noise):
        objective = guide.objective
        y = objective.measurement(x_t.detach())                              # 1 objective evaluation per sample
        r2, s2 = 1.0 - step.ab_t, float(objective.sigma_y) ** 2
        with torch.enable_grad():
            x, e, x0h = sampler.eps_with_graph(x_t, step)
            v = self.weighted_v(objective, y - objective.A(x0h.detach()), r2, s2)
            (g,) = torch.autograd.grad(x0h, x, grad_outputs=v)               # one VJP: r_t^2 (d x0h / d x_t)^T v
        x_prev = sampler.ddim(x0h.detach(), e.detach(), step, noise)
        c = math.sqrt(step.ab_t) * (math.sqrt(step.ab_prev) if self.coefficient == "awd" else 1.0)
        return x_prev + scaled(self.strength, c * g)

    @staticmethod
    def weighted_v(objective, residual: torch.Tensor, r2: float, s2: float) -> torch.Tensor:
        """r^2 A^T (r^2 A A^T + sigma_y^2 I)^{-1} residual = A^T (A A^T + sigma_y^2 / r^2 I)^{-1} residual (eq. 8 times
        w_t = r^2), A^+ residual for sigma_y = 0 (eq. 7)."""
        if s2 > 0:
            return objective.AT(objective.solve(residual, 1.0, s2 / r2))
        return objective.A_pinv(residual)

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1U_b + 1 objective evaluation per step."""
        return (steps, steps, steps, 0)
