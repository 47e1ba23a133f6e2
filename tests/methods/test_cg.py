"""benchmark/methods/cg.py: classifier guidance (Dhariwal & Nichol 2021) with a noise-conditional classifier: one step
against their Alg. 2 on hand-built Gaussian data (tests/methods/test_published_steps.py's `_Setup`), the gradient
taken at x_t without a backward pass through the denoiser, and the refusal of an objective without a noisy
classifier.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler
from benchmark.methods import Guide, make_method
from benchmark.methods.cg import ClassifierGuidance
from tests.methods.test_published_steps import B, D, TOL, s  # noqa: F401  (s: a fixture)


def test_cg_step_is_dhariwal_and_nichol(s):
    """Classifier guidance (Dhariwal & Nichol 2021, Alg. 2): e' = e - s sqrt(1 - ab) grad_{x_t} log p(c | x_t, t),
    x_{t-1} = DDIM(x0h(e'), e'); here log p(c | x, t) = -|x - c|^2 / 2, gradient c - x_t at x_t itself."""
    scale = 1.5
    e_prime = s.e - scale * math.sqrt(1 - s.ab) * (s.c - s.x_t)
    want = s.ddim(s.x0_of(e_prime), e_prime)
    got = s.run("cg", scale, noisy_log_prob=lambda x, t: -0.5 * ((x - s.c) ** 2).sum(-1))
    assert torch.allclose(got, want, atol=TOL, rtol=0)


def test_no_backward_through_the_denoiser(s):
    """The gradient is the classifier's at x_t itself: one denoiser forward per chain and no VJP; the classifier's
    gradient is the only backward (here counted by hand)."""
    costs, calls = Costs(), []
    sampler = Sampler(CountingDenoiser(s._eps, costs), s.schedule, steps=20, eta=0.0)

    def noisy_log_prob(x, t):
        calls.append((x.requires_grad, t))
        return -0.5 * ((x - s.c) ** 2).sum(-1)
    method = make_method("cg", 1.5)
    assert isinstance(method, ClassifierGuidance) and method.uses_noisy_log_prob
    noise = PerSampleNoise.for_chains(("cg",), B, (D,), dtype=torch.float64)
    method.step(s.x_t, s.step, sampler, Guide(lambda x: x.sum(-1), noisy_log_prob=noisy_log_prob), noise)
    assert (costs.denoiser_forwards, costs.denoiser_vjps) == (B, 0)
    assert calls == [(True, s.step.t)]                       # at x_t (a leaf that requires grad), at step t
    assert method.costs_per_sample(20) == (20, 0, 20, 20)


def test_an_objective_without_a_noisy_classifier_is_refused(s):
    noise = PerSampleNoise.for_chains(("cg",), B, (D,), dtype=torch.float64)
    with pytest.raises(ValueError, match="method 'cg' needs an objective with a noise-conditional classifier"):
        make_method("cg", 1.0).step(s.x_t, s.step, s.sampler, Guide(s.quadratic), noise)
