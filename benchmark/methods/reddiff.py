"""RED-diff (Mardani, Song, Kautz, Vahdat, ICLR 2024): variational posterior sampling by optimisation, Alg. 1.

A point estimate mu, optimised by Adam over the sampler's grid from noisy to clean, one step per grid step t:
    eps     ~ N(0, I)                                                  (drawn from the chain's stream)
    x_t     = sqrt(ab_t) mu + sqrt(1 - ab_t) eps
    e       = eps_theta(x_t, t)                                        (one forward, no graph)
    loss    = -strength L(mu) + lambda_t <sg[e - eps], mu>,  lambda_t = lam sigma_t,  sigma_t = sqrt((1 - ab_t) / ab_t)
    mu     <- Adam(mu, grad_mu loss)                                   (lr, betas (0.9, 0.99), eps 1e-8)
and the output is mu (their x0_pred = mu + sigma_x0 z with sigma_x0 = 0). The regulariser's gradient is
lambda_t (e - eps), the score-matching loss's gradient without the denoiser's Jacobian (stop-gradient, eq. 10):
no VJP. L, as for daps: the Gaussian log-likelihood -||y - A x||^2 / (2 sigma_y^2) on an objective with a
linear measurement and sigma_y > 0, the reward r otherwise; strength = 1 is the paper's data term
||y - A mu||^2 / (2 sigma_v^2).

Defaults from their code (github.com/NVlabs/RED-diff, algos/reddiff.py, _configs/algo/reddiff.yaml): lam =
0.25 (grad_term_weight), lambda_t = lam sqrt(1 - ab_t) / sqrt(ab_t) (denoise_term_weight "linear", 1 / sqrt(SNR)),
Adam lr = 0.1 with betas (0.9, 0.99), init mu = A^+ y (`initialize`: H.H_pinv(y_0)), sigma_x0 = 0.
`init`: "pinv" (default, theirs) needs the linear measurement: on an objective without one the method is refused
(`skip`); "noise" starts from the chain's x_T and runs on any differentiable reward.

Deliberate differences: per-sample sums, not their means over the batch, the m measurement entries and the
D pixels (loss_obs = mean(e_obs^2) / 2, loss_noise = mean((e - eps) mu)): Adam's update is per entry, and a
mean over the batch would couple chains through Adam's eps; their per-entry means weigh the data term by 1 / m
and the regulariser by 1 / D, so their grad_term_weight lam corresponds to our lam x m / (D sigma_y^2) (e.g. x 75 on
digits inpainting, m = 48 observed of D = 64 pixels, sigma_y = 0.05: their obs_weight 1 has no 1 / sigma_y^2); our
default 0.25 is their number, not their weighting. With sigma_y = 0 the data term is the reward itself (the
unsquared -||y - A x|| on inpaint / superres / deblur), theirs squared. Strength 0 is not unguided sampling: the
default init still reads A^+ y. Adam state is per chain (element-wise, step count shared by the grid). The grid is the sampler's.

Limit (tests/methods/test_reddiff.py): a point estimate, so its spread across chains shrinks with the optimisation
(var_ratio -> 0), its mean a regularised least-squares solution near the posterior mean (= the MAP here), not
a posterior sample.

Cost: steps U + 0 U_b + steps objective evaluations + steps objective gradients, plus 1 objective evaluation
(the read of y for A^+ y) with init "pinv".

Reference: M. Mardani, J. Song, J. Kautz, A. Vahdat. A Variational Perspective on Solving Inverse Problems with
Diffusion Models. ICLR 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.methods.base import GuidanceMethod, chain_scalar
from benchmark.methods.daps import log_likelihood_fn
from benchmark.objectives.operator import has_operator

#: Adam's constants in their code (algos/reddiff.py: betas=(0.9, 0.99)) and torch's default eps.
BETAS, ADAM_EPS = (0.9, 0.99), 1e-8


@dataclass
class REDDiff(GuidanceMethod):
    name = "reddiff"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    strength: float = 1.0
    lam: float = 0.25
    lr: float = 0.1
    init: Literal["pinv", "noise"] = "pinv"

    def __post_init__(self):
        super().__post_init__()
        if self.lam < 0:
            raise ValueError(f"method 'reddiff': lam must be >= 0, got {self.lam}")
        if not self.lr > 0:
            raise ValueError(f"method 'reddiff': lr must be > 0, got {self.lr}")

    def skip(self, objective) -> tuple[bool, str]:
        """init "pinv" (A^+ y) needs a linear measurement; init "noise" guides any reward."""
        if self.init == "pinv" and not has_operator(objective):
            return True, (f"{self.name!r} with init='pinv' needs an objective with a linear measurement y = A x + "
                          "sigma_y n (A^+ y starts the optimisation); init='noise' runs on any reward")
        return super().skip(objective)

    def lambda_t(self, ab_t: float) -> float:
        """lam sigma_t = lam sqrt((1 - ab_t) / ab_t) (their "linear" weight, 1 / sqrt(SNR))."""
        return self.lam * math.sqrt((1.0 - ab_t) / ab_t)

    def sample(self, sampler, x_T, noise, guide=None):
        if guide is None:
            raise ValueError("method 'reddiff' optimises the objective: it needs a Guide")
        objective = guide.objective
        if self.init == "pinv":
            mu = objective.A_pinv(objective.measurement(x_T)).reshape(x_T.shape).to(x_T.dtype)  # 1 evaluation
        else:
            mu = x_T.clone()
        L, s = log_likelihood_fn(objective), self.strength
        m, v = torch.zeros_like(mu), torch.zeros_like(mu)
        for k, step in enumerate(sampler.steps, start=1):
            eps = noise.draw()
            e = sampler.eps(math.sqrt(step.ab_t) * mu + math.sqrt(1.0 - step.ab_t) * eps, step)
            with torch.enable_grad():
                x = mu.detach().requires_grad_(True)
                (g,) = torch.autograd.grad((L(x) * chain_scalar(s, x.dtype)).sum(), x)    # grad strength L
            grad = self.lambda_t(step.ab_t) * (e - eps) - g                   # grad of the loss, per chain
            m = BETAS[0] * m + (1 - BETAS[0]) * grad
            v = BETAS[1] * v + (1 - BETAS[1]) * grad * grad
            m_hat, v_hat = m / (1 - BETAS[0] ** k), v / (1 - BETAS[1] ** k)
            mu = mu - self.lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
        return mu.detach()

    def costs_per_sample(self, steps, timesteps=None):
        """1U + 1 objective evaluation and gradient per step; + 1 evaluation (the read of y) with init "pinv"."""
        return (steps, 0, steps + (self.init == "pinv"), steps)
