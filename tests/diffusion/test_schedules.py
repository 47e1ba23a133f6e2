import math

import pytest
import torch

from benchmark.diffusion import make_schedule, timestep_grid
from benchmark.diffusion.sampler import Step, ddim_update, renoise


@pytest.mark.parametrize("name", ["cosine", "linear"])
@pytest.mark.parametrize("T", [10, 200, 1000])
def test_schedule_shape_and_monotone(name, T):
    s = make_schedule(name, T)
    assert s.T == T and s.ab[0] == 1.0
    assert torch.all(s.ab[1:] < s.ab[:-1])
    assert float(s.ab[-1]) < 0.01  # the chain ends near pure noise
    betas = 1 - s.ab[1:] / s.ab[:-1]
    assert float(betas.max()) <= 0.999 + 1e-12


def test_cosine_matches_formula():
    T, s_ = 200, 0.008
    s = make_schedule("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 50, 100, 150):
        assert float(s.ab[t]) == pytest.approx(f(t) / f(0), rel=1e-10)


def test_linear_endpoints_rescaled():
    s = make_schedule("linear", 200)
    betas = 1 - s.ab[1:] / s.ab[:-1]
    assert float(betas[0]) == pytest.approx(1e-4 * 5, rel=1e-9)
    assert float(betas[-1]) == pytest.approx(0.02 * 5, rel=1e-9)


def test_grid():
    assert timestep_grid(5, 5) == [5, 4, 3, 2, 1, 0]
    g = timestep_grid(1000, 50)
    assert g[0] == 1000 and g[-1] == 0 and len(g) == 51
    assert all(a > b for a, b in zip(g, g[1:]))
    with pytest.raises(ValueError, match="steps must be in"):
        timestep_grid(10, 11)


def test_bad_schedule_name():
    with pytest.raises(ValueError, match="allowed: \\['cosine', 'linear'\\]"):
        make_schedule("sigmoid", 10)


def test_ddim_posterior_and_renoise_are_consistent():
    """DDPM (eta = 1) step from the true x_0 is q(x_{t-1} | x_t, x_0); renoise is q(x_t | x_{t-1})."""
    s = make_schedule("cosine", 50)
    t, tp = 30, 29
    step = Step(0, 1, t, tp, float(s.ab[t]), float(s.ab[tp]), 1.0)
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x_t = math.sqrt(step.ab_t) * x0 + math.sqrt(1 - step.ab_t) * eps
    x_prev = ddim_update(x0, eps, step, torch.randn(n, 1, generator=gen, dtype=torch.float64))
    # Marginal of x_{t-1} must be N(0, 1) for unit-variance data, and renoise must map it back.
    assert float(x_prev.var()) == pytest.approx(1.0, abs=0.01)
    x_t2 = renoise(x_prev, step, torch.randn(n, 1, generator=gen, dtype=torch.float64))
    assert float(x_t2.var()) == pytest.approx(1.0, abs=0.01)
    # Posterior variance of DDPM: (1 - ab_{t-1}) / (1 - ab_t) * beta_t.
    resid = x_prev - (math.sqrt(step.ab_prev) * x0 + math.sqrt(1 - step.ab_prev - step.sigma ** 2) * eps)
    assert float(resid.var()) == pytest.approx(step.sigma ** 2, rel=0.02)
    assert step.sigma ** 2 == pytest.approx((1 - step.ab_prev) / (1 - step.ab_t) * (1 - step.a_t), rel=1e-12)
