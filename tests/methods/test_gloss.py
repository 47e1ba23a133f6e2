"""benchmark/methods/gloss.py: Guo et al. (2024)'s look-ahead-loss guidance G_loss: one step against their Def. 1 /
eq. 7 on hand-built Gaussian data (tests/methods/test_published_steps.py's `_Setup`), its direction (the gradient
through the denoiser, J^T g, unlike G's g), no step where the target is met, and the refused sigma.
"""

import math

import pytest
import torch

from benchmark.methods import LinearTarget
from benchmark.methods.gloss import LookAheadLoss
from tests.methods.test_naive import _target
from tests.methods.test_published_steps import TOL, s  # noqa: F401  (s: a fixture)


def test_gloss_step_is_guo_et_al(s):
    """G_loss (Guo et al. 2024, Def. 1 / eq. 7): with u = grad_{x_t}(g^T x0h) = J^T g,
    score' = score + 2 beta_t (y - g^T x0h) u, beta_t = (alpha^2 / 2) / (alpha^2 sigma^2 + h |u|^2);
    in noise units (e = -sqrt(h) score) e' = e - sqrt(h) 2 beta_t (y - g^T x0h) u."""
    target, sigma, alpha, h = _target(s), 0.1, math.sqrt(s.ab), 1 - s.ab
    g, y = target.g, target.y
    u = g @ s.J
    beta = (alpha ** 2 / 2) / (alpha ** 2 * sigma ** 2 + h * (u * u).sum(-1))
    e_prime = s.e - math.sqrt(h) * (2 * beta * (y - (g * s.x0h).sum(-1)))[:, None] * u
    want = s.ddim(s.x0_of(e_prime), e_prime)
    assert torch.allclose(s.run("gloss", 1.0, linear=target), want, atol=TOL, rtol=0)


def test_the_step_moves_along_the_gradient_through_the_denoiser(s):
    """e' - e is a multiple of u = J^T g per chain (one VJP through the denoiser), not of g; with y = g^T x0h the
    step is the unguided one exactly."""
    target = _target(s)
    unguided = s.run("none", 0.0)
    moved = s.run("gloss", 1.0, linear=target) - unguided
    for direction, parallel in ((target.g @ s.J, True), (target.g, False)):
        along = (moved * direction).sum(-1, keepdim=True) / (direction * direction).sum(-1, keepdim=True) * direction
        assert torch.allclose(moved, along, atol=TOL, rtol=0) == parallel
    met = LinearTarget(target.g, (target.g * s.x0h).sum(-1))
    assert torch.allclose(s.run("gloss", 1.0, linear=met), unguided, atol=TOL, rtol=0)
    assert LookAheadLoss.uses_linear_target and LookAheadLoss().costs_per_sample(20) == (20, 20, 0, 0)


@pytest.mark.parametrize("sigma", [0.0, -0.1])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match=f"method 'gloss': sigma must be > 0 \\(the observation noise\\), got {sigma}"):
        LookAheadLoss(strength=1.0, sigma=sigma)
