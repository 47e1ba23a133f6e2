"""benchmark/methods/mpgd.py: MPGD (He et al. 2024), one guided step pinned to the authors' step-size rule by
independent arithmetic, and its cost (no backward pass through the denoiser).

Hand-built inputs with closed forms (as tests/methods/test_published_steps.py): data N(0, Sigma) in d = 4 with
its exact noise prediction e(x_t) = sqrt(1 - ab) M x_t, M = (ab Sigma + (1 - ab) I)^{-1}, so
x0h = (I - (1 - ab) M) x_t / sqrt(ab); a reward per chain r_i(x) = -w_i |x - c_i|^2 / 2, whose clean-space
gradient is h_i = w_i (c_i - x0h_i) (w_i = 0: a zero gradient); eta = 0, so
x_{t-1} = sqrt(ab_prev) x0h' + sqrt(1 - ab_prev) e, all in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule
from benchmark.methods import Guide, make_method
from benchmark.methods.mpgd import MPGD
from tests.methods.test_freedom import _run

D, B = 4, 8
TOL = 1e-10


class GaussianStep:
    """One eta = 0 grid step with the exact eps of N(0, Sigma) and the per-chain reward above."""

    def __init__(self, index: int = 7, steps: int = 20, seed: int = 22):
        gen = torch.Generator().manual_seed(seed)
        L = torch.randn(D, D, generator=gen, dtype=torch.float64)
        self.Sigma = L @ L.T / D + 0.1 * torch.eye(D, dtype=torch.float64)
        self.c = torch.randn(B, D, generator=gen, dtype=torch.float64)
        self.w = torch.rand(B, generator=gen, dtype=torch.float64) + 0.5
        self.x_t = torch.randn(B, D, generator=gen, dtype=torch.float64)
        self.schedule = make_schedule("cosine", 200)
        self.sampler = Sampler(CountingDenoiser(self._eps, Costs()), self.schedule, steps=steps, eta=0.0)
        self.step = self.sampler.steps[index]
        self.ab, self.ab_prev = self.step.ab_t, self.step.ab_prev
        M = self._M(self.ab)
        self.e = math.sqrt(1 - self.ab) * self.x_t @ M
        self.K = torch.eye(D, dtype=torch.float64) - (1 - self.ab) * M
        self.x0h = self.x_t @ self.K / math.sqrt(self.ab)
        self.J = self.K / math.sqrt(self.ab)                 # d x0h / d x_t, symmetric

    def _M(self, ab):
        return torch.linalg.inv(ab * self.Sigma + (1 - ab) * torch.eye(D, dtype=torch.float64))

    def _eps(self, x, t):
        """x M row by row (no matmul, whose rounding depends on the batch size: a batch of 8 must equal
        8 batches of 1 exactly)."""
        ab = float(self.schedule.ab[int(torch.as_tensor(t).flatten()[0])])
        return math.sqrt(1 - ab) * (x.unsqueeze(-1) * self._M(ab)).sum(-2)

    def reward(self, rows):
        """r_i(x) = -w_i |x - c_i|^2 / 2 for the chains `rows` (a batch of those chains, in that order)."""
        w, c = self.w[rows], self.c[rows]
        return lambda x: -0.5 * w * ((x - c) ** 2).sum(-1)

    def h(self):
        """The clean-space gradient grad r(x0h) = w (c - x0h), per chain."""
        return self.w[:, None] * (self.c - self.x0h)

    def ddim(self, x0h, e):
        return math.sqrt(self.ab_prev) * x0h + math.sqrt(1 - self.ab_prev) * e

    def run(self, method, rows=None):
        rows = list(range(B)) if rows is None else rows
        guide = Guide(CountingObjective(self.reward(rows), Costs()))
        noise = PerSampleNoise.for_chains(("mpgd",), len(rows), (D,), dtype=torch.float64)
        return method.step(self.x_t[rows], self.step, self.sampler, guide, noise)


@pytest.fixture(scope="module")
def s():
    return GaussianStep()


def test_default_step_is_he_et_al(s):
    """The default schedule "rms", their code's rho = rho_scale / RMS(h) / sqrt(ab_prev), per sample:
    x0h' = x0h + c_t h_t, c_t = strength / (|h_t| / sqrt(d) sqrt(ab_{t-1})), x_{t-1} = DDIM(x0h', e)."""
    strength = 0.3
    h = s.h()
    c_t = strength / (h.norm(dim=1) / math.sqrt(D) * math.sqrt(s.ab_prev))
    want = s.ddim(s.x0h + c_t[:, None] * h, s.e)
    got = s.run(make_method("mpgd", strength))
    assert torch.allclose(got, want, atol=TOL, rtol=0)
    # so the guided move of x_{t-1}, sqrt(ab_prev) c_t h_t, has root-mean-square `strength` in every chain
    move = got - s.ddim(s.x0h, s.e)
    assert torch.allclose(move.norm(dim=1) / math.sqrt(D), torch.full((B,), strength, dtype=torch.float64),
                          atol=TOL, rtol=0)


@pytest.mark.parametrize("schedule", ["constant", "sqrt_ab_prev"])
def test_named_schedules(s, schedule):
    """"constant": c_t = strength (TFG's MPGD: N_iter = 1, a constant mu);
    "sqrt_ab_prev": c_t = strength sqrt(ab_{t-1})."""
    strength = 0.3
    c_t = strength if schedule == "constant" else strength * math.sqrt(s.ab_prev)
    want = s.ddim(s.x0h + c_t * s.h(), s.e)
    assert torch.allclose(s.run(make_method("mpgd", strength, schedule=schedule)), want, atol=TOL, rtol=0)


def test_a_zero_gradient_gives_no_step_in_that_chain_only():
    """w_0 = 0: h_0 = 0 exactly, RMS 0; that chain takes the unguided step (not 0/0 = nan), the others
    take theirs as in a batch without it."""
    s = GaussianStep()
    s.w[0] = 0.0
    got = s.run(make_method("mpgd", 0.3))
    assert torch.isfinite(got).all()
    assert torch.allclose(got[0], s.ddim(s.x0h, s.e)[0], atol=TOL, rtol=0)
    assert torch.equal(got[1:], s.run(make_method("mpgd", 0.3), rows=list(range(1, B))))


@pytest.mark.parametrize("schedule", ["rms", "constant", "sqrt_ab_prev"])
def test_a_batch_of_8_is_8_batches_of_1(s, schedule):
    method = make_method("mpgd", 0.3, schedule=schedule)
    alone = torch.cat([s.run(method, rows=[i]) for i in range(B)])
    assert torch.equal(s.run(method), alone)


def test_batched_strengths_are_the_cells_alone(s):
    """A pass with a strength per chain (benchmark.batch) makes each chain's step at its own strength."""
    strengths = torch.linspace(0.05, 0.4, B, dtype=torch.float64)
    batched = s.run(make_method("mpgd", 0.1).with_strengths(strengths))
    alone = torch.cat([s.run(make_method("mpgd", float(v)), rows=[i]) for i, v in enumerate(strengths)])
    assert torch.equal(batched, alone)


def test_bad_schedule_names_the_choices():
    message = r"schedule must be one of \['rms', 'constant', 'sqrt_ab_prev'\], got 'cosine'"
    with pytest.raises(ValueError, match=message):
        make_method("mpgd", 0.1, schedule="cosine")


def test_mpgd_never_backpropagates_through_the_denoiser(subspace):
    """A whole run with the oracle on quadratic_off (tests/methods/test_freedom.py's _run): no VJP, one
    objective gradient per chain and step (the clean-space gradient grad r(x0h))."""
    assert isinstance(make_method("mpgd", 0.1), MPGD)
    _, costs, sampler = _run(subspace, "mpgd", 0.1, n=4)
    assert costs.denoiser_vjps == 0
    assert costs.objective_grads == 4 * len(sampler.steps)
