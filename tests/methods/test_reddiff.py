"""benchmark/methods/reddiff.py: RED-diff (Mardani et al. 2024) refuses an objective without a linear measurement
for its A^+ y start, starts from A^+ y, weighs its regulariser by lam / sqrt(SNR), and is a point estimate near
the posterior mean on the linear-Gaussian problem (subspace task, `gaussian_inverse`, oracle denoiser; the setup,
`problem` and `run`, is tests/methods/test_daps.py's, where RED-diff's counted costs, refused hyper-parameters
and runs on digits and on a tiny diffusers model are checked beside DAPS's).
"""

import pytest
import torch

from benchmark.methods import make_method
from benchmark.methods.reddiff import REDDiff
from tests.methods.test_daps import problem, run  # noqa: F401  (problem: a fixture)


def test_reddiff_pinv_needs_an_operator(subspace):
    objectives = {k: subspace.objective(k) for k in ("quadratic_off", "gaussian_inverse")}
    assert make_method("reddiff").skip(objectives["quadratic_off"])[0]
    assert "init='noise'" in make_method("reddiff").skip(objectives["quadratic_off"])[1]
    assert not make_method("reddiff").skip(objectives["gaussian_inverse"])[0]
    assert not make_method("reddiff", init="noise").skip(objectives["quadratic_off"])[0]
    assert not make_method("daps").skip(objectives["quadratic_off"])[0]


def test_reddiff_starts_from_the_pseudo_inverse(problem):
    """With a vanishing learning rate the output is its start, A^+ y (their `initialize`)."""
    x, _, _ = run(problem, "reddiff", 5, 2, strength=1.0, lr=1e-12)
    obj = problem[2]
    assert torch.allclose(x, obj.A_pinv(obj.measurement(x)), atol=1e-6)


def test_reddiff_weight_is_lam_over_sqrt_snr():
    """lambda_t = lam sigma_t, sigma_t = sqrt((1 - ab_t) / ab_t) (their denoise_term_weight "linear", 1 / sqrt(SNR)):
    at ab_t = 0.2, sigma_t = 2; at ab_t = 0.8, 1 / 2 (a squared sigma_t would give 4 and 1 / 4); the default lam is
    their 0.25."""
    assert isinstance(make_method("reddiff"), REDDiff)
    assert REDDiff().lambda_t(0.2) == pytest.approx(0.25 * 2.0, rel=1e-12)
    assert REDDiff(lam=3.0).lambda_t(0.8) == pytest.approx(1.5, rel=1e-12)


# --- RED-diff's limit ------------------------------------------------------------------------------

def test_reddiff_is_a_point_estimate_near_the_posterior_mean(problem):
    """RED-diff optimises one mu per chain from A^+ y; chains differ only by the noise of the stochastic gradient,
    so the spread is a small fraction of the posterior's (var_ratio measured 0.005, 0.035, 0.068 at 20, 100, 200
    steps, n = 1000), and the mean approaches the posterior mean (= the MAP) as the optimisation runs longer
    (mean_error 1.46, 0.71, 0.33; the prior mean 0 is ||mu|| away)."""
    obj = problem[2]
    far = float(obj.posterior_mean.norm())
    errors = []
    for steps in (20, 100, 200):
        x, _, _ = run(problem, "reddiff", steps, 1000, strength=1.0)
        cal = obj.calibration(x)
        assert cal["var_ratio"] < 0.1, (steps, cal)
        errors.append(cal["mean_error"])
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.45 < far
