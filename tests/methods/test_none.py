"""benchmark/methods/none.py: unguided sampling refuses a guidance strength, makes the shared DDIM(eta) step with the
model's e bit for bit, and costs one denoiser forward per step.
"""

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.diffusion.sampler import ddim_update, tweedie
from benchmark.methods import make_method
from benchmark.methods.none import Unguided


@pytest.mark.parametrize("strength", [0.5, 1e-12])
def test_a_strength_is_refused(strength):
    with pytest.raises(ValueError, match=f"method 'none' has no guidance strength; use strength 0, got {strength}"):
        make_method("none", strength)
    assert isinstance(make_method("none", 0.0), Unguided)


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_a_step_is_the_ddim_update_bit_for_bit(subspace, eta):
    """x_{t-1} = sqrt(ab_prev) x0h + sqrt(1 - ab_prev - s_t^2) e + s_t z with e the model's, x0h its Tweedie estimate
    and z the chain's next draw, at every step of a 10-step grid; no guide needed."""
    sched = make_schedule("cosine", 200)
    model = subspace.oracle(sched)
    sampler = Sampler(CountingDenoiser(model, Costs()), sched, steps=10, eta=eta)
    x_t = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    for step in sampler.steps:
        got = make_method("none").step(x_t, step, sampler, None, PerSampleNoise([5, 6, 7], (64,)))
        e = model(x_t, torch.full((3,), step.t, dtype=torch.long))
        want = ddim_update(tweedie(x_t, e, step.ab_t), e, step, PerSampleNoise([5, 6, 7], (64,)).draw())
        assert torch.equal(got, want), step.index


def test_one_denoiser_forward_per_step(subspace):
    costs = Costs()
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), costs), sched, steps=10)
    noise = PerSampleNoise.for_chains(("none",), 4, (64,))
    sample(sampler, make_method("none"), noise.draw(), noise)
    counted = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert counted == (40, 0, 0, 0) == tuple(4 * c for c in make_method("none").costs_per_sample(10))
