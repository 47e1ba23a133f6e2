"""Decoupled Annealing Posterior Sampling, DAPS (Zhang et al., CVPR 2025), on the sampler's grid.

Per step t -> t' of the grid (x_T ~ N(0, I) the chain's start):
    x0h     = x0h(x_t)                          Tweedie (ode_steps = 1), or the PF-ODE from x_t to 0 in
                                                `ode_steps` DDIM(eta = 0) steps (their step 1, "reverse diffusion")
    x0      ~ N(x0; x0h, r_t^2 I) exp(l(x0))    by `mcmc_steps` Langevin steps from x0h (their step 2, eq. 9):
              x0 <- x0 + lr_t (grad l(x0) + (x0h - x0) / r_t^2) + sqrt(2 lr_t) z
    x_{t'}  = sqrt(ab_{t'}) x0 + sqrt(1 - ab_{t'}) z                      (their step 3, "forward diffusion")
The last step has ab_0 = 1: x_0 is the last MCMC state, as in their code (sigma_steps[-1] = 0).

Their chain is written in the VE form x_t = x0 + sigma_t z; x_t / sqrt(ab_t) is that form with
sigma_t = sqrt((1 - ab_t) / ab_t), so x_{t'} = sqrt(ab_{t'}) (x0 + sigma_{t'} z) is their forward step.
r_t, by `r_rule`: "sigma" (default, their code: the Gaussian prior term is (x0h - x0) / sigma^2 at the
annealing sigma, cores/mcmc.py `prepare_prior_score`, prior_solver 'gaussian') r_t = sigma_t; "posterior"
r_t^2 = 1 - ab_t, the variance of x0 | x_t for data of unit variance (PiGDM's r_t), never above sigma_t^2.

Log-likelihood l = strength x L, L by objective: `log_likelihood` = -||y - A x||^2 / (2 sigma_y^2) on an
objective with a linear measurement and sigma_y > 0 (benchmark.objectives.operator); the reward r otherwise
(a general differentiable reward, or sigma_y = 0). strength = 1 is DAPS's posterior p(x0 | y); on a reward
the target is p(x0) exp(strength r). Their code weighs ||A x - y||^2 by 1 / tau^2 (tau = 0.01 for measurement
noise 0.05: configs/task/*.yaml), i.e. strength = 2 sigma_y^2 / tau^2 = 50 here; we keep the true likelihood.
Per chain: every use of strength is an element-wise product (batched strengths).

Step size (their cores/mcmc.py `get_lr`, p = 1): lr_t = lr (1 + (i / S) (lr_min_ratio - 1)) at grid step
i of S, a linear decay from lr to lr_min_ratio x lr (theirs: lr_min_ratio 0.01; ratio step / (S + 1) in their
code). Ours, deliberately: lr_t is capped at r_t^2, so the prior term's part of a step, lr_t / r_t^2, never
exceeds 1 (their sigma stops at 0.1; our grid reaches ab_t -> 1, r_t -> 0, where a fixed step diverges). Their
lr (1e-4, 5e-5) is tuned to their 256^2 images and tau; ours, lr = 1e-3, keeps lr x (the likelihood's
curvature) below 1 on the digits inverse problems (sigma_y = 0.05: curvature <= 400) and mixes in 100 steps on
gaussian_inverse (curvature ~30).

Annealing floor `sigma_min` (their annealing scheduler, configs/sampler/edm_daps.yaml: 200 poly-7 sigmas from 100
to sigma_min = 0.1; cores/scheduler.py `Scheduler.discretize` drops the last, sigma_min itself, for 0, so sampler.py
DAPS.sample takes annealing steps only at sigma > 0.1 and returns the last one's MCMC x0 un-noised): a grid step
anneals iff sigma_t > sigma_min; a step with sigma_t <= sigma_min is not taken (x_t returned, no cost), and the
last annealing step (the next grid point at sigma <= sigma_min, or ab_0 = 1) returns its x0. Default 0 (every grid
step anneals, the last returns x0), deliberately not their 0.1: on gaussian_inverse (oracle, 50 steps, 256 samples)
0.1 is worse (w2 1.23 vs 1.08, r_off 0.21 vs 0.10: its last x0 keeps N(x0h, 0.106^2 I) off span(A)), and on digits
inpainting no better (-0.336 vs -0.323); and a cost that depends on ab_t is not declarable from the timesteps alone.
With sigma_min > 0, costs_per_sample needs the grid's timesteps and the schedule. The lr cap at r_t^2 binds only
where r_t^2 < lr_t, i.e. sigma_t < 0.03 at lr 1e-3: never with sigma_min >= 0.1; kept for sigma_min = 0.

Defaults: mcmc_steps = 100 (theirs, configs/task/*.yaml, pixel Langevin); ode_steps = 1, Tweedie, not their 5
(configs/sampler/edm_daps.yaml): one forward per grid step, the cost of the other methods' steps, and the
Gaussian N(x0h, r_t^2 I) is centred on the posterior mean E[x0 | x_t] that the approximation names
(with the oracle Tweedie is exact; the ODE's end point is not E[x0 | x_t]). DDIM(eta = 0) is the Euler
step of the PF-ODE in their sigma (their DiffusionPFODE, solver 'euler'); its `ode_steps` sub-steps run on
the timesteps round(t (1 - k / n)), k = 0..n (repeats allowed: exactly n forwards). x0h is clipped with
the sampler's `clip_x0` as every DDIM update is. Their annealing grid is their own (200 poly-7 sigmas from
100 to 0.1); here it is the sampler's.

What is exact (tests/methods/test_daps.py): with exact draws of p(x0 | x_t, y) the chain is exact (each step
is a p(x0 | y)-invariant kernel); DAPS replaces p(x0 | x_t) by N(x0h, r_t^2 I), which for data on a subspace
is wrong off it (variance r_t^2 where it is 0), so even with exact Tweedie, r_t^2 = 1 - ab_t and exact
inner sampling its law is not the posterior; on gaussian_inverse the tests propagate its exact Gaussian law.

Cost per annealing step: ode_steps U + 0 U_b + mcmc_steps objective evaluations + mcmc_steps objective gradients.

Reference: B. Zhang, W. Chu, J. Berner, C. Meng, A. Anandkumar, Y. Song. Improving Diffusion Inverse Problem
Solving with Decoupled Noise Annealing. CVPR 2025. Code: github.com/zhangbingliang2019/DAPS (sampler.py DAPS,
cores/mcmc.py MCMCSampler, cores/scheduler.py); also devzhk/InverseBench algo/daps.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import Step, ddim_update, tweedie
from benchmark.methods.base import GuidanceMethod, chain_scalar, summed_over_grid
from benchmark.objectives.operator import has_operator


def log_likelihood_fn(objective):
    """L(x) -> [B]: the Gaussian log-likelihood of a linear measurement with sigma_y > 0, else the reward (the
    operator is seen behind the counting wrapper: has_operator; L is called through it, counted)."""
    if has_operator(objective) and float(getattr(objective, "sigma_y", 0.0)) > 0:
        return objective.log_likelihood
    return objective


@dataclass
class DAPS(GuidanceMethod):
    name = "daps"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    strength: float = 1.0
    mcmc_steps: int = 100
    lr: float = 1e-3
    lr_min_ratio: float = 0.01
    ode_steps: int = 1
    r_rule: Literal["sigma", "posterior"] = "sigma"
    sigma_min: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("mcmc_steps", "ode_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"method 'daps': {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"method 'daps': lr must be > 0, got {self.lr}")
        if not 0 < self.lr_min_ratio <= 1:
            raise ValueError(f"method 'daps': lr_min_ratio must be in (0, 1], got {self.lr_min_ratio}")
        if not self.sigma_min >= 0:
            raise ValueError(f"method 'daps': sigma_min must be >= 0, got {self.sigma_min}")

    def anneals(self, ab: float) -> bool:
        """Whether the grid point with ab_t = ab is an annealing step: sigma_t = sqrt((1 - ab) / ab) > sigma_min."""
        return ab < 1.0 and (1.0 - ab) / ab > self.sigma_min ** 2

    def r2(self, step: Step) -> float:
        """r_t^2: sigma_t^2 = (1 - ab_t) / ab_t ("sigma") or 1 - ab_t ("posterior")."""
        return (1.0 - step.ab_t) / step.ab_t if self.r_rule == "sigma" else 1.0 - step.ab_t

    def step_size(self, step: Step) -> float:
        """lr_t = lr (1 + (i / S) (lr_min_ratio - 1)), capped at r_t^2."""
        lr = self.lr * (1.0 + step.index / step.num_steps * (self.lr_min_ratio - 1.0))
        return min(lr, self.r2(step))

    def x0_estimate(self, x_t, step, sampler) -> torch.Tensor:
        """Tweedie's x0h (ode_steps = 1) or the end of ode_steps DDIM(eta = 0) steps from t to 0."""
        n, ab = self.ode_steps, sampler.schedule.ab.tolist()
        ts = [round(step.t * (1 - k / n)) for k in range(n + 1)]
        x = x_t
        for k in range(n):
            sub = Step(step.index, step.num_steps, ts[k], ts[k + 1], ab[ts[k]], ab[ts[k + 1]], 0.0)
            e = sampler.eps(x, sub)
            x0h, e = sampler.clipped(tweedie(x, e, sub.ab_t), e, sub)
            x = x0h if k == n - 1 else ddim_update(x0h, e, sub, torch.zeros_like(x))
        return x

    def step(self, x_t, step, sampler, guide, noise):
        if not self.anneals(step.ab_t):
            return x_t                                        # below sigma_min: x_t is already the output x0
        x0h = self.x0_estimate(x_t, step, sampler)
        L, s = log_likelihood_fn(guide.objective), self.strength
        r2, lr = self.r2(step), self.step_size(step)
        x = x0h
        for _ in range(self.mcmc_steps):
            with torch.enable_grad():
                xl = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad((L(xl) * chain_scalar(s, x.dtype)).sum(), xl)   # grad l, per chain
            x = x + lr * (g + (x0h - x) / r2) + math.sqrt(2 * lr) * noise.draw()
        if not self.anneals(step.ab_prev):
            return x                                          # the last annealing step: its x0 (their sigma = 0)
        return math.sqrt(step.ab_prev) * x + math.sqrt(1.0 - step.ab_prev) * noise.draw()

    def costs_per_sample(self, steps, timesteps=None, schedule=None):
        """ode_steps U + mcmc_steps (objective evaluation + gradient) per annealing step; no VJP. With sigma_min > 0
        which grid steps anneal depends on their ab_t: the grid's `timesteps` and the `schedule` (ab[t]) are needed."""
        per_step = (self.ode_steps, 0, self.mcmc_steps, self.mcmc_steps)
        if self.sigma_min == 0:
            return summed_over_grid(steps, timesteps, lambda t: per_step)
        if timesteps is None or schedule is None:
            raise ValueError(f"method 'daps': with sigma_min = {self.sigma_min} the cost depends on the grid's "
                             "timesteps and noise levels; pass them (costs_per_sample(steps, timesteps, schedule))")
        ab = schedule.ab.tolist()
        return summed_over_grid(steps, timesteps, lambda t: per_step if self.anneals(ab[t]) else (0, 0, 0, 0))


__all__ = ["DAPS", "log_likelihood_fn"]
