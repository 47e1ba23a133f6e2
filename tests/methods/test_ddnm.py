"""benchmark/methods/ddnm.py: DDNM's noise-free step (Alg. 1) and DDNM+'s scales (eqs. 17-19), by independent
arithmetic on hand-built inputs.

One eta = 0 grid step on Gaussian data with the exact noise prediction (tests/methods/test_mpgd.py's GaussianStep:
D = 4, B = 8 chains, float64) and a measurement y = H x by a random matrix H [2, 4]. DDNM's laws over whole runs
(each step's F x_t + c + G z against the papers' equations, the limits against the exact posterior, the digits
and diffusers runs) are checked beside PiGDM's and DiffPIR's in tests/methods/test_pigdm.py.
"""

import math

import pytest
import torch

from benchmark.diffusion import PerSampleNoise
from benchmark.diffusion.sampler import Step
from benchmark.methods import Guide, make_method
from benchmark.methods.ddnm import DDNM, ddnm_plus_scales
from benchmark.objectives.operator import MatrixMeasurement
from tests.methods.test_mpgd import B, D, GaussianStep


class Measured(MatrixMeasurement):
    """y = H x + sigma_y n with a given H [m, D] and y [m], shared by every chain."""

    def __init__(self, H, y, sigma_y=0.0):
        self.H, self.y, self.sigma_y = H, y, sigma_y


def _measured(sigma_y=0.0, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Measured(torch.randn(2, D, generator=g, dtype=torch.float64),
                    torch.randn(2, generator=g, dtype=torch.float64), sigma_y)


@pytest.mark.parametrize("strength", [1.0, 0.4, 0.0])
def test_noise_free_step_is_the_range_space_correction(strength):
    """sigma_y = 0 (Alg. 1): x0 = x0h - strength H^+ (H x0h - y), x_{t-1} = DDIM(x0, e) with e unchanged; at strength 1
    x0 = H^+ y + (I - H^+ H) x0h fits the measurement exactly, at 0 the step is the unguided DDIM."""
    s, obj = GaussianStep(), _measured()
    H, y = obj.H, obj.y
    x0 = s.x0h - strength * (s.x0h @ H.T - y) @ torch.linalg.pinv(H).T
    noise = PerSampleNoise.for_chains(("ddnm",), B, (D,), dtype=torch.float64)
    got = make_method("ddnm", strength).step(s.x_t, s.step, s.sampler, Guide(obj), noise)
    assert torch.allclose(got, s.ddim(x0, s.e), atol=1e-10, rtol=0)
    x0_got = (got - math.sqrt(1 - s.ab_prev) * s.e) / math.sqrt(s.ab_prev)         # the x0 the step used
    residual = (x0_got @ H.T - y).abs().max()
    assert residual < 1e-9 if strength == 1.0 else residual > 1e-3


def test_ddnm_plus_scales_by_hand():
    """(lambda_t, gamma_t) with a = sqrt(ab_{t-1}), c^2 = 1 - ab_{t-1}, nu = a sigma_y: (1, sqrt(c^2 - nu^2)) while
    the noise budget holds the measurement noise (c >= nu), else (k / nu, s), k = sqrt(c^2 - s^2)."""
    early = Step(0, 10, 100, 90, 0.3, 0.4, 0.0)                 # c^2 = 0.6, nu^2 = 0.4 x 0.25 = 0.1, s = 0
    assert ddnm_plus_scales(early, 0.5) == pytest.approx((1.0, math.sqrt(0.5)), abs=1e-12)
    late = Step(9, 10, 10, 0, 0.98, 0.99, 0.0)                  # c^2 = 0.01 < nu^2 = 0.2475, s = 0, k = 0.1
    assert ddnm_plus_scales(late, 0.5) == pytest.approx((0.1 / (math.sqrt(0.99) * 0.5), 0.0), abs=1e-12)
    noisy = Step(9, 10, 10, 0, 0.98, 0.99, 1.0)                 # eta = 1: s^2 = (0.01 / 0.02)(1 - 0.98 / 0.99)
    s2 = 0.5 * (1 - 0.98 / 0.99)
    lam, gamma = ddnm_plus_scales(noisy, 0.5)
    assert lam == pytest.approx(math.sqrt(0.01 - s2) / (math.sqrt(0.99) * 0.5), abs=1e-12)
    assert gamma == pytest.approx(math.sqrt(s2), abs=1e-12)


def test_ddnm_plus_step_adds_its_correction_and_splits_the_noise():
    """sigma_y > 0 at eta = 0 (DDNM+, the module docstring): x_{t-1} = a x0 + (I - H^+ H) k e + gamma H^+ H z with
    x0 = x0h - strength lambda_t H^+ (H x0h - y), k = c, z the chain's next draw: e is kept only in H's null space."""
    s, obj = GaussianStep(), _measured(sigma_y=0.3)
    H, y = obj.H, obj.y
    Hp = torch.linalg.pinv(H)
    R = Hp @ H                                                     # the projection on H's row space
    lam, gamma = ddnm_plus_scales(s.step, 0.3)
    assert gamma > 0
    x0 = s.x0h - 0.7 * lam * (s.x0h @ H.T - y) @ Hp.T
    z = PerSampleNoise.for_chains(("ddnm+",), B, (D,), dtype=torch.float64).draw()
    k = math.sqrt(1 - s.ab_prev)
    want = math.sqrt(s.ab_prev) * x0 + k * (s.e - s.e @ R.T) + gamma * z @ R.T
    method = make_method("ddnm", 0.7)
    assert isinstance(method, DDNM) and method.needs_operator
    got = method.step(s.x_t, s.step, s.sampler, Guide(obj),
                      PerSampleNoise.for_chains(("ddnm+",), B, (D,), dtype=torch.float64))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
