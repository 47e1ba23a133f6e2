"""benchmark/methods/diffpir.py: DiffPIR's rho_t, its proximal step with the zeta noise mix, and its refused
hyper-parameters, by independent arithmetic on hand-built inputs.

One eta = 0 grid step on Gaussian data with the exact noise prediction (tests/methods/test_mpgd.py's GaussianStep:
D = 4, B = 8 chains, float64) and a measurement y = H x + sigma_y n by a random matrix H [2, 4]
(tests/methods/test_ddnm.py's). DiffPIR's laws over whole runs (each step against the paper's equations, the limits
against the exact posterior, the digits and diffusers runs) are checked beside PiGDM's and DDNM's in
tests/methods/test_pigdm.py.
"""

import math

import pytest
import torch

from benchmark.diffusion import PerSampleNoise
from benchmark.diffusion.sampler import Step
from benchmark.methods import Guide, make_method
from benchmark.methods.diffpir import SIGMA_FLOOR, DiffPIR
from tests.methods.test_ddnm import _measured
from tests.methods.test_mpgd import B, D, GaussianStep


def test_rho_is_lam_sigma_squared_over_sigmabar_squared():
    """rho_t = lam sigma^2 / sigmabar_t^2, sigmabar_t^2 = (1 - ab_t) / ab_t, sigma = max(sigma_y, SIGMA_FLOOR):
    at ab_t = 0.2 sigmabar_t^2 = 4."""
    st = Step(3, 10, 120, 100, 0.2, 0.3, 0.0)
    assert DiffPIR().rho(st, 0.1) == pytest.approx(0.25 * 0.01 / 4, rel=1e-12)
    assert DiffPIR(lam=2.0).rho(st, 0.0) == pytest.approx(2.0 * SIGMA_FLOOR ** 2 / 4, rel=1e-12)   # the floor
    assert SIGMA_FLOOR == 1e-3


@pytest.mark.parametrize("zeta, strength", [(0.0, 1.0), (0.3, 1.0), (1.0, 0.6)])
def test_one_step_is_the_proximal_update(zeta, strength):
    """x0' = x0h + H^T (H H^T + rho_t I)^{-1} (y - H x0h), x0 = x0h + strength (x0' - x0h),
    eps_hat = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t), and at eta = 0 (s = 0, k = c = sqrt(1 - ab_{t-1}))
    x_{t-1} = sqrt(ab_{t-1}) x0 + sqrt(1 - zeta) c eps_hat + sqrt(zeta) c z, z the chain's next draw."""
    s, obj = GaussianStep(), _measured(sigma_y=0.2)
    H, y = obj.H, obj.y
    rho = 0.25 * 0.2 ** 2 * s.ab / (1 - s.ab)
    x0p = s.x0h + (y - s.x0h @ H.T) @ torch.linalg.inv(H @ H.T + rho * torch.eye(2, dtype=torch.float64)).T @ H
    x0 = s.x0h + strength * (x0p - s.x0h)
    eps_hat = (s.x_t - math.sqrt(s.ab) * x0) / math.sqrt(1 - s.ab)
    z = PerSampleNoise.for_chains(("diffpir",), B, (D,), dtype=torch.float64).draw()
    c = math.sqrt(1 - s.ab_prev)
    want = math.sqrt(s.ab_prev) * x0 + math.sqrt(1 - zeta) * c * eps_hat + math.sqrt(zeta) * c * z
    method = make_method("diffpir", strength, zeta=zeta)
    assert isinstance(method, DiffPIR)
    got = method.step(s.x_t, s.step, s.sampler, Guide(obj),
                      PerSampleNoise.for_chains(("diffpir",), B, (D,), dtype=torch.float64))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("params, message", [({"lam": 0.0}, r"lam must be > 0, got 0.0"),
                                             ({"zeta": 1.5}, r"zeta must be in \[0, 1\], got 1.5"),
                                             ({"zeta": -0.1}, r"zeta must be in \[0, 1\], got -0.1")])
def test_bad_hyperparameters_name_the_parameter(params, message):
    with pytest.raises(ValueError, match="method 'diffpir': " + message):
        make_method("diffpir", 1.0, **params)
