"""One guided step of each method, pinned to its paper's formula by independent arithmetic.

The inputs are hand-built so that every quantity has a closed form, computed here without calling
the method's code (issue 22): data N(0, Sigma) in d = 4 with its exact noise prediction
    e(x_t) = sqrt(1 - ab) M x_t,   M = (ab Sigma + (1 - ab) I)^{-1},
so x0h = K x_t / sqrt(ab) with K = I - (1 - ab) M, and d x0h / d x_t = K / sqrt(ab) (symmetric);
the reward r(x) = -|x - c|^2 / 2 (gradient c - x) or, for LGD-MC, r(x) = theta^T x, whose
Monte-Carlo smoothing log mean_i exp r(x0h + s eps_i) has the gradient theta for any draws.
eta = 0 makes the DDIM update deterministic: x_{t-1} = sqrt(ab_prev) x0h' + sqrt(1 - ab_prev) e'.
Each test states the paper's update and its reference; the methods run at their default settings
(only the strength given), so a changed default shows here. DPS, MPGD and Shen's Polyak step are
pinned in tests/methods/test_dps.py, tests/methods/test_mpgd.py and tests/methods/test_shen.py; classifier guidance
and Guo et al.'s G and G_loss on these inputs (`_Setup`) in tests/methods/test_cg.py, test_naive.py and test_gloss.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule
from benchmark.methods import Guide, make_method

D, B = 4, 3
TOL = 1e-10


class _Setup:
    def __init__(self, index: int = 7, steps: int = 20):
        gen = torch.Generator().manual_seed(22)
        L = torch.randn(D, D, generator=gen, dtype=torch.float64)
        self.Sigma = L @ L.T / D + 0.1 * torch.eye(D, dtype=torch.float64)
        self.c = torch.randn(D, generator=gen, dtype=torch.float64)
        self.theta = torch.randn(D, generator=gen, dtype=torch.float64)
        self.x_t = torch.randn(B, D, generator=gen, dtype=torch.float64)
        self.schedule = make_schedule("cosine", 200)
        self.sampler = Sampler(CountingDenoiser(self._eps, Costs()), self.schedule, steps=steps, eta=0.0)
        self.step = self.sampler.steps[index]
        ab = self.step.ab_t
        self.ab, self.ab_prev = ab, self.step.ab_prev
        self.M = torch.linalg.inv(ab * self.Sigma + (1 - ab) * torch.eye(D, dtype=torch.float64))
        self.K = torch.eye(D, dtype=torch.float64) - (1 - ab) * self.M
        self.e = math.sqrt(1 - ab) * self.x_t @ self.M
        self.x0h = self.x_t @ self.K / math.sqrt(ab)
        self.J = self.K / math.sqrt(ab)                       # d x0h / d x_t, symmetric

    def _eps(self, x, t):
        ab = float(self.schedule.ab[int(torch.as_tensor(t).flatten()[0])])   # t: an int or one per row
        M = torch.linalg.inv(ab * self.Sigma + (1 - ab) * torch.eye(D, dtype=torch.float64))
        return math.sqrt(1 - ab) * x @ M

    def quadratic(self, x):
        return -0.5 * ((x - self.c) ** 2).sum(-1)

    def linear(self, x):
        return x @ self.theta

    def ddim(self, x0h, e):
        return math.sqrt(self.ab_prev) * x0h + math.sqrt(1 - self.ab_prev) * e

    def x0_of(self, e):
        return (self.x_t - math.sqrt(1 - self.ab) * e) / math.sqrt(self.ab)

    def run(self, name, strength, objective=None, linear=None, noisy_log_prob=None, **params):
        costs = Costs()
        guide = Guide(CountingObjective(objective or self.quadratic, costs), linear,
                      noisy_log_prob=noisy_log_prob)
        noise = PerSampleNoise.for_chains(("published",), B, (D,), dtype=torch.float64)
        return make_method(name, strength, **params).step(self.x_t, self.step, self.sampler, guide, noise)


@pytest.fixture(scope="module")
def s():
    return _Setup()


def test_freedom_step_is_yu_et_al(s):
    """FreeDoM (Yu et al. 2023, eq. 9 with their code's rho_t = s sqrt(ab_t)): x_{t-1} = DDIM(x0h, e) + rho_t g_t,
    g_t = J^T grad r(x0h)."""
    strength = 0.3
    g_t = (s.c - s.x0h) @ s.J
    want = s.ddim(s.x0h, s.e) + strength * math.sqrt(s.ab) * g_t
    assert torch.allclose(s.run("freedom", strength), want, atol=TOL, rtol=0)


def test_ugd_step_is_bansal_et_al(s):
    """UGD (Bansal et al. 2023, Alg. 1, one recurrence): forward e^ = e - w sqrt(1 - ab) g_t; backward
    m = 1 clean-space step D* = lr grad r(x0h(e^)) from D = 0, e^ -= sqrt(ab / (1 - ab)) D*;
    x_{t-1} = DDIM(x0h(e^), e^)."""
    w, lr = 0.3, 0.1
    g_t = (s.c - s.x0h) @ s.J
    e_hat = s.e - w * math.sqrt(1 - s.ab) * g_t
    x0_hat = s.x0_of(e_hat)
    D_star = lr * (s.c - x0_hat)
    e_hat = e_hat - math.sqrt(s.ab / (1 - s.ab)) * D_star
    want = s.ddim(s.x0_of(e_hat), e_hat)
    assert torch.allclose(s.run("ugd", w), want, atol=TOL, rtol=0)


def test_lgd_step_is_song_et_al(s):
    """LGD-MC (Song et al. 2023, Alg. 1 / eq. 9): x_{t-1} = DDIM(x0h, e) + zeta grad_{x_t} log mean_i exp
    r(x0h + sqrt(1 - ab) eps_i); for a linear reward that gradient is J^T theta whatever the draws."""
    zeta = 0.2
    want = s.ddim(s.x0h, s.e) + zeta * s.theta @ s.J
    assert torch.allclose(s.run("lgd", zeta, objective=s.linear), want, atol=TOL, rtol=0)


def test_tfg_step_is_ye_et_al(s):
    """TFG (Ye et al. 2024, Alg. 1; defaults mu = 0.25, gamma = 0, N_recur = 1, N_iter = 1, schedules
    'increase' s(t) = a_t normalised to mean 1 over the grid): Delta_t = rho_t J^T grad r(x0h),
    Delta_0 = mu_t grad r(x0h), x_{t-1} = DDIM(x0h + Delta_0, e) + Delta_t / sqrt(a_t)."""
    rho, mu = 0.4, 0.25
    mean_a = sum(st.a_t for st in s.sampler.steps) / len(s.sampler.steps)
    a_t = s.ab / s.ab_prev
    rho_t, mu_t = rho * a_t / mean_a, mu * a_t / mean_a
    delta_t = rho_t * (s.c - s.x0h) @ s.J
    delta_0 = mu_t * (s.c - s.x0h)
    want = s.ddim(s.x0h + delta_0, s.e) + delta_t / math.sqrt(a_t)
    assert torch.allclose(s.run("tfg", rho), want, atol=TOL, rtol=0)
