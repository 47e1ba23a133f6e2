"""Contract tests over the whole method registry: per-sample independence, determinism, and
counted cost equal to each method's formula."""

import dataclasses
import re

import pytest
import torch

from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed,
                                 make_schedule, sample)
from benchmark.methods import METHODS, Guide, make_method
from benchmark.optimize import linearise

# Cost per sampling step of each method, in (denoiser forwards, denoiser VJPs, objective evals,
# objective grads) per sample (DESIGN.md §3), for the hyper-parameters given.
COST_PER_STEP = {
    "none": (1, 0, 0, 0),
    "naive": (1, 0, 0, 0),
    "gloss": (1, 1, 0, 0),
    "dps": (1, 1, 1, 1),
    "freedom": (1, 1, 1, 1),
    "mpgd": (1, 0, 1, 1),
}
STRENGTH = {"none": 0.0}


def test_every_method_has_a_cost_formula():
    assert set(COST_PER_STEP) == set(METHODS)


def _setup(subspace, costs, steps=20, eta=1.0, device="cpu"):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched).to(device), costs), sched, steps=steps, eta=eta)
    objective = CountingObjective(subspace.objective("quadratic_off").to(device), costs)
    return sampler, objective


def _run(subspace, name, n, seeds_base=("contract",), eta=1.0, device="cpu", chain_offset=0):
    costs = Costs()
    sampler, objective = _setup(subspace, costs, eta=eta, device=device)
    method = make_method(name, STRENGTH.get(name, 0.3))
    noise = PerSampleNoise([derive_seed(*seeds_base, i + chain_offset) for i in range(n)], (64,), device=device)
    z_prev = PerSampleNoise([i + chain_offset + 1000 for i in range(n)], (64,), device=device).draw() * 0.5
    target = linearise(objective, z_prev, method.strength, "per_sample") if method.uses_linear_target else None
    before = costs.snapshot()
    x = sample(sampler, method, noise.draw(), noise, Guide(objective, target))
    return x, costs - before, sampler


@pytest.mark.parametrize("name", sorted(METHODS))
def test_batch_equals_separate_samples(subspace, name, device):
    """A batch of 8 chains gives what 8 batches of 1 give: no norm or step couples samples."""
    x8, _, _ = _run(subspace, name, 8, device=device)
    x1 = torch.cat([_run(subspace, name, 1, device=device, chain_offset=i)[0] for i in range(8)])
    assert torch.allclose(x8, x1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_samples(subspace, name, device):
    a, _, _ = _run(subspace, name, 4, device=device)
    b, _, _ = _run(subspace, name, 4, device=device)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_eta_zero_is_deterministic_given_x_T(subspace, name, device):
    """With eta = 0 the step noise is never used: different noise streams, same x_T, same output."""
    costs = Costs()
    sampler, objective = _setup(subspace, costs, eta=0.0, device=device)
    method = make_method(name, STRENGTH.get(name, 0.3))
    x_T = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)).to(device)
    target = linearise(objective, x_T * 0.3, method.strength, "per_sample") if method.uses_linear_target else None
    outs = [sample(sampler, method, x_T, PerSampleNoise([s + k for k in range(4)], (64,), device=device),
                   Guide(objective, target)) for s in (0, 100)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_counted_cost_matches_formula(subspace, name):
    n = 5
    _, spent, sampler = _run(subspace, name, n)
    steps = len(sampler.steps)
    expected = tuple(c * steps * n for c in COST_PER_STEP[name])
    got = (spent.denoiser_forwards, spent.denoiser_vjps, spent.objective_evals, spent.objective_grads)
    assert got == expected


def test_linearisation_costs_one_gradient_per_chain_or_one_per_batch(subspace):
    costs = Costs()
    _, objective = _setup(subspace, costs)
    z = torch.randn(6, 64)
    t = linearise(objective, z, 0.5, "per_sample")
    assert (costs.objective_evals, costs.objective_grads) == (6, 6)
    theta = objective.theta
    # quadratic: grad r(z) = -2 (theta^T z - 3) theta; y = g^T z + delta
    g = -2 * (z @ theta - 3).unsqueeze(-1) * theta
    assert torch.allclose(t.g, g, atol=1e-5) and torch.allclose(t.y, (g * z).sum(-1) + 0.5, atol=1e-5)
    t = linearise(objective, z, 0.5, "batch_mean")
    assert (costs.objective_evals, costs.objective_grads) == (7, 7)
    assert torch.allclose(t.g, t.g[:1].expand(6, -1)) and torch.allclose(t.y, t.y[:1].expand(6))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_hyperparameters_are_typed_and_strength_exists(name):
    fields = {f.name for f in dataclasses.fields(METHODS[name])}
    assert "strength" in fields
    assert METHODS[name].name == name


def test_make_method_errors():
    with pytest.raises(ValueError, match=re.escape(f"unknown method 'gradient'; allowed: {sorted(METHODS)}")):
        make_method("gradient")
    with pytest.raises(ValueError, match="has no parameter\\(s\\) \\['sgima'\\]; allowed: \\['sigma'\\]"):
        make_method("gloss", 0.1, sgima=0.1)
    with pytest.raises(ValueError, match="strength must be >= 0"):
        make_method("naive", -0.1)
    with pytest.raises(ValueError, match="no guidance strength"):
        make_method("none", 0.5)
    with pytest.raises(ValueError, match="sigma must be float"):
        make_method("gloss", 0.1, sigma="abc")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        make_method("naive", 0.1, sigma=0.0)
    with pytest.raises(ValueError, match="sigma must be float, got True"):
        make_method("gloss", 0.1, sigma=True)
