"""benchmark/methods/naive.py: Guo et al. (2024)'s naive gradient guidance G: one step against their eq. 6 on
hand-built Gaussian data (tests/methods/test_published_steps.py's `_Setup`), its direction (g itself, not through
the denoiser), no step where the target is met, and the refused sigma.
"""

import math

import pytest
import torch

from benchmark.methods import LinearTarget
from benchmark.methods.naive import NaiveGradient
from tests.methods.test_published_steps import B, D, TOL, s  # noqa: F401  (s: a fixture)


def _target(s):
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(B, D, generator=gen, dtype=torch.float64)
    return LinearTarget(g, (g * s.x0h).sum(-1) + 0.7)


def test_naive_step_is_guo_et_al(s):
    """G (Guo et al. 2024, eq. 6): e' = e - sqrt(h) beta_t (y - g^T x0h) g, beta_t = alpha / (sigma^2 + h |g|^2),
    sigma = 0.1; x_{t-1} = DDIM(x0h(e'), e')."""
    target, sigma, alpha, h = _target(s), 0.1, math.sqrt(s.ab), 1 - s.ab
    g, y = target.g, target.y
    beta = alpha / (sigma ** 2 + h * (g * g).sum(-1))
    e_prime = s.e - math.sqrt(h) * (beta * (y - (g * s.x0h).sum(-1)))[:, None] * g
    want = s.ddim(s.x0_of(e_prime), e_prime)
    assert torch.allclose(s.run("naive", 1.0, linear=target), want, atol=TOL, rtol=0)


def test_the_step_moves_along_g_and_not_where_the_target_is_met(s):
    """e' - e is a multiple of g per chain, so x_{t-1} moves along g alone (not J^T g: no denoiser backward); with
    y = g^T x0h (the target met) the step is the unguided one exactly."""
    target = _target(s)
    unguided = s.run("none", 0.0)
    moved = s.run("naive", 1.0, linear=target) - unguided
    g = target.g
    along = (moved * g).sum(-1, keepdim=True) / (g * g).sum(-1, keepdim=True) * g
    assert torch.allclose(moved, along, atol=TOL, rtol=0) and moved.abs().max() > 1e-3
    met = LinearTarget(g, (g * s.x0h).sum(-1))
    assert torch.allclose(s.run("naive", 1.0, linear=met), unguided, atol=TOL, rtol=0)
    assert isinstance(NaiveGradient(), NaiveGradient) and NaiveGradient.uses_linear_target
    assert NaiveGradient().costs_per_sample(20) == (20, 0, 0, 0)       # 1U per step: no VJP, no objective call


@pytest.mark.parametrize("sigma", [0.0, -0.1])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match=f"method 'naive': sigma must be > 0 \\(the observation noise\\), got {sigma}"):
        NaiveGradient(strength=1.0, sigma=sigma)
