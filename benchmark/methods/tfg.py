"""Training-Free Guidance, TFG (Ye et al. 2024, Alg. 1): the unified design space.

Per step, repeated N_recur = `n_recur` times (each repeat re-noises x_{t-1} back to t first):

    rt(x)   = log (1/N_s) sum_i exp r(x + gamma sqrt(1 - ab_t) eps_i)     the smoothed reward
              (eps_i ~ N(0, I) per sample, drawn once per repeat; gamma = 0: rt = r, no draws)
    e, x0h  = eps_theta(x_t, t), x0h(x_t)
    Delta_t = rho_t grad_{x_t} rt(x0h(x_t))                               mean guidance (one VJP)
    Delta_0 = 0;  N_iter times: Delta_0 += mu_t grad_{x0} rt(x0h + Delta_0)   variance guidance
                                                                          (clean space, no VJP)
    x_{t-1} = DDIM(x0h + Delta_0, e) + Delta_t / sqrt(a_t)
            = DDIM(x0h, e) + Delta_t / sqrt(a_t) + sqrt(ab_{t-1}) Delta_0

rho_t = strength * s(t) / mean_grid(s), mu_t = mu * s'(t) / mean_grid(s'): the schedules are
normalised so their mean over the sampling grid is rho (= strength) and mu; "increase" is
s(t) = a_t (TFG's default), "decrease" 1 - a_t, "constant" 1. rho = 0 skips the VJP (1U only),
mu = 0 skips the iterations. TFG's gradient clipping (their `clip_scale`) is not applied.

Special cases (tests/methods/test_tfg.py checks them step for step against the dedicated files, with the
dedicated method's step size substituted for rho_t / mu_t, since each paper schedules its step
differently from TFG's normalised a_t-schedule):
    DPS     = (rho > 0, mu = 0, gamma = 0, N_recur = 1, N_iter = 0)  dps with normalise="none" (its
              default on a general reward); its "abs_reward" (default on log-probabilities) divides
              by |r(x0h)| and "residual" (on inverse problems) differentiates ||y - A x0h||, steps
              that TFG's design space lacks.
    LGD-MC  = (rho > 0, mu = 0, gamma = 1, N_recur = 1, N_iter = 0, N_s = n)
    FreeDoM = (rho > 0, mu = 0, gamma = 0, N_recur >= 1, N_iter = 0)  (recurrence at every step)
    MPGD    = (rho = 0, mu > 0, gamma = 0, N_recur = 1, N_iter = 1)
    UGD     = (rho > 0, mu > 0, gamma = 0, N_recur >= 1, N_iter = m) only for m = 0; see ugd.py
              for why backward guidance (m > 0) is not TFG's variance guidance.

Cost per step: N_recur (1U + [rho > 0] (1U_b + N_s G) + [mu > 0] N_iter N_s G), with N_s read as
1 when gamma = 0 (G = one objective evaluation + gradient).

Mapping to TFG's code (YWolfeee/Training-Free-Guidance methods/tfg.py and utils/configs.py, read in the
copies in yeonwoo378/Training-Free-Guidance and MaydaY-Tsinghua/Training-Free-Guidance; the original is
not in our reference store), by their Arguments' fields: strength = rho, mu = mu, gamma = sigma (with
their sigma_schedule "decrease": std = sigma sqrt(1 - ab_t)), n_s = eps_bsz (4), n_recur = recur_steps,
n_iter = iter_steps, rho_schedule / mu_schedule = theirs (get_rho: rho s[t] len(s) / sum(s) over the
sampling grid, the normalisation above). Their baselines' strengths map to the dedicated methods as freedom.py,
lgd.py (a factor n) and ugd.py state. Not reproduced: rescale_grad (clip_scale, default 100), and x0
clipping as their code does it: clip_x0 (default True, range 1) clamps x0h in `_predict_x0`, which
feeds the reward whose gradient is Delta_t (through the clamp), the start of variance guidance, and the
DDIM step (eps recomputed, `_predict_x_prev_from_zero`), Delta_0 added after the clamp. The sampling
option clip_x0 (benchmark.diffusion.sampler) clips the x0h of the DDIM update only, for every method
alike: here x0h + Delta_0, and the reward sees the unclipped x0h.

Reference: H. Ye, H. Lin, J. Han, M. Xu, S. Liu, Y. Liang, J. Ma, J. Zou, S. Ermon. TFG: Unified
Training-Free Guidance for Diffusion Models. NeurIPS 2024.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import GuidanceMethod, is_nonzero, log_mean_exp_reward, scale_costs, scaled

Schedule = Literal["increase", "decrease", "constant"]


def schedule_value(kind: str, step) -> float:
    """s(t) of a TFG schedule at one grid step: a_t, 1 - a_t or 1."""
    return {"increase": step.a_t, "decrease": 1.0 - step.a_t, "constant": 1.0}[kind]


@dataclass
class TFG(GuidanceMethod):
    name = "tfg"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    mu: float = 0.25
    gamma: float = 0.0
    n_recur: int = 1
    n_iter: int = 1
    n_s: int = 4
    rho_schedule: Schedule = "increase"
    mu_schedule: Schedule = "increase"

    def __post_init__(self):
        super().__post_init__()
        for name, low in (("mu", 0.0), ("gamma", 0.0)):
            if getattr(self, name) < low:
                raise ValueError(f"method {self.name!r}: {name} must be >= {low}, got {getattr(self, name)}")
        for name, low in (("n_recur", 1), ("n_iter", 0), ("n_s", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"method {self.name!r}: {name} must be >= {low}, got {getattr(self, name)}")
        self._means = weakref.WeakKeyDictionary()             # schedule means per sampler (grid)

    def rho_t(self, step, sampler) -> float:
        return self.strength * self._normalised(self.rho_schedule, step, sampler)

    def mu_t(self, step, sampler) -> float:
        return self.mu * self._normalised(self.mu_schedule, step, sampler)

    def _normalised(self, kind, step, sampler) -> float:
        means = self._means.setdefault(sampler, {})           # once per grid, not once per step
        if kind not in means:
            means[kind] = sum(schedule_value(kind, s) for s in sampler.steps) / len(sampler.steps)
        return schedule_value(kind, step) / means[kind]

    def step(self, x_t, step, sampler, guide, noise):
        rho_t, mu_t = self.rho_t(step, sampler), self.mu_t(step, sampler)
        std = self.gamma * math.sqrt(1 - step.ab_t)
        for i in range(self.n_recur):
            if i > 0:
                x_t = sampler.renoise(x_prev, step, noise)
            draws = [noise.draw() for _ in range(self.n_s)] if self.gamma > 0 else []
            rt = lambda x0: log_mean_exp_reward(guide.objective, x0, std, draws)          # noqa: E731
            if is_nonzero(rho_t):
                with torch.enable_grad():
                    x, e, x0h = sampler.eps_with_graph(x_t, step)
                    (g_t,) = torch.autograd.grad(rt(x0h).sum(), x)                       # one VJP
                e, x0h, delta_t = e.detach(), x0h.detach(), scaled(rho_t, g_t)
            else:
                e = sampler.eps(x_t, step)
                x0h, delta_t = tweedie(x_t, e, step.ab_t), None
            delta_0 = torch.zeros_like(x0h)
            if mu_t != 0:
                with torch.enable_grad():
                    for _ in range(self.n_iter):                                         # clean space
                        d = delta_0.requires_grad_(True)
                        (h,) = torch.autograd.grad(rt(x0h + d).sum(), d)
                        delta_0 = (d + mu_t * h).detach()
            x_prev = sampler.ddim(x0h + delta_0, e, step, noise)
            if delta_t is not None:
                x_prev = x_prev + delta_t / math.sqrt(step.a_t)
        return x_prev

    def costs_per_sample(self, steps, timesteps=None):
        """N_recur (1U + [rho > 0] (1U_b + N_s G) + [mu > 0] N_iter N_s G) per step, N_s read as 1 when
        gamma = 0 (the schedules s(t) never vanish on a grid, so rho_t, mu_t are 0 only for rho, mu = 0)."""
        n_s = self.n_s if self.gamma > 0 else 1
        mean = n_s if self.strength != 0 else 0
        var = self.n_iter * n_s if self.mu != 0 else 0
        per_step = (self.n_recur, self.n_recur * (self.strength != 0), self.n_recur * (mean + var),
                    self.n_recur * (mean + var))
        return scale_costs(steps, per_step)
