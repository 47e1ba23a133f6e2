"""benchmark/diffusion/schedules.py: the variance-preserving schedules (cosine, linear) against their formulas,
the sampling grid, and the checks of names, T and given alpha-bar values."""

import math

import pytest
import torch

from benchmark.diffusion.schedules import SCHEDULES, VPSchedule, make_schedule, timestep_grid


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


def test_schedule_from_alphas_cumprod_validates():
    s = VPSchedule.from_alphas_cumprod(torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64), "given")
    assert s.T == 3 and s.ab.tolist() == [1.0, 0.9, 0.5, 0.1] and s.ab.dtype == torch.float64
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        VPSchedule.from_alphas_cumprod(torch.tensor([0.9, 0.5, 0.0]), "zsnr")
    with pytest.raises(ValueError, match="strictly decreasing"):
        VPSchedule.from_alphas_cumprod(torch.tensor([0.9, 0.95, 0.1]), "bad")


def test_T_must_be_at_least_one():
    with pytest.raises(ValueError, match="T must be >= 1, got 0"):
        make_schedule("cosine", 0)
    assert sorted(SCHEDULES) == ["cosine", "linear"] and make_schedule("linear", 1).T == 1


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
