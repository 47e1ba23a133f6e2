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

# Settings run by every contract test: (method, strength, hyper-parameters, cost per sampling step
# in (denoiser forwards, denoiser VJPs, objective evals, objective grads) per sample, DESIGN.md §3,
# or for a method whose cost is not per step, a function of the number of steps S giving the total per sample).
# Every method appears with its defaults; options that change the cost appear once more each.
# Polyak's step runs at 0.01: at 0.3 with 20 steps it overshoots (a chaotic regime, where a batch
# and single chains differ at float rounding and the difference grows; see test_shen.py).
SETTINGS = [
    ("none", 0.0, {}, (1, 0, 0, 0)),
    ("naive", 0.3, {}, (1, 0, 0, 0)),
    ("gloss", 0.3, {}, (1, 1, 0, 0)),
    ("dps", 0.3, {}, (1, 1, 1, 1)),
    ("dps", 0.3, {"augment": 3}, (1, 1, 3, 3)),                         # |T| = 3
    ("dps", 0.01, {"polyak": True, "recurrence": 2}, (2, 2, 2, 2)),       # time travel s = 2
    ("freedom", 0.3, {}, (1, 1, 1, 1)),
    ("freedom", 0.01, {"augment": 2, "recurrence": 3, "polyak": True}, (3, 3, 6, 6)),
    ("mpgd", 0.3, {}, (1, 0, 1, 1)),
    ("ugd", 0.3, {}, (1, 1, 2, 2)),                                      # m = 1: (1 + m) G
    ("ugd", 0.3, {"backward_steps": 0, "recurrence": 2}, (2, 2, 2, 2)),  # k = 2, m = 0
    ("ugd", 0.3, {"backward_steps": 3, "augment": 2}, (1, 1, 5, 5)),     # |T| + m
    ("lgd", 0.3, {}, (1, 1, 10, 10)),                                    # n = 10
    ("lgd", 0.3, {"n": 3, "augment": 2}, (1, 1, 6, 6)),                  # n |T|
    ("tfg", 0.3, {}, (1, 1, 2, 2)),                                      # rho, mu > 0, N_iter = 1
    ("tfg", 0.3, {"gamma": 0.5, "n_s": 3, "n_iter": 2, "n_recur": 2}, (2, 2, 18, 18)),  # 2 (1 + 3 + 2 * 3)
    ("tfg", 0.0, {"mu": 0.25}, (1, 0, 1, 1)),                            # rho = 0: no VJP (MPGD-like)
    ("tfg", 0.3, {"mu": 0.0}, (1, 1, 1, 1)),                             # mu = 0: no iterations (DPS-like)
    ("shen", 0.01, {}, (2, 2, 20, 20)),                                  # |T| = 10, s = 2
    ("cg", 0.3, {}, (1, 0, 1, 1)),                                       # noise-conditional log p: 1 G, no VJP
    # Inference-compute references: cost per output sample over the S steps of the grid (a function of S).
    ("bon", 0.0, {}, lambda S: (4 * S, 0, 4, 0)),                         # n = 4 chains + 4 rewards to select
    ("bon", 0.3, {"n": 2, "proposal": "dps"}, lambda S: (2 * S, 2 * S, 2 * S + 2, 2 * S)),  # 2 x dps + 2
    ("smc", 0.3, {}, lambda S: (4 * S, 0, 4 * S, 0)),                     # K = 4: potentials at S - 1 steps + final
    # K = 3, dps proposal on the S - 1 steps with s_t > 0 (the last is unguided), potentials every 5 steps + final
    ("smc", 0.3, {"particles": 3, "resample_every": 5, "potential": "max", "proposal": "dps",
                  "proposal_strength": 0.3},
     lambda S: (3 * S, 3 * (S - 1), 3 * (S - 1) + 3 * ((S - 1) // 5 + 1), 3 * (S - 1))),
]
IDS = [f"{n}-{s}-" + ",".join(f"{k}={v}" for k, v in p.items()) for n, s, p, _ in SETTINGS]


def test_every_method_has_a_cost_formula():
    assert {name for name, *_ in SETTINGS} == set(METHODS)


def _setup(subspace, costs, steps=20, eta=1.0, device="cpu"):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched).to(device), costs), sched, steps=steps, eta=eta)
    objective = CountingObjective(subspace.objective("quadratic_off").to(device), costs)
    return sampler, objective


def _noisy_stand_in(objective):
    """cg's noise-conditional log p(c | x_t, t), stood in for by the counted reward at x_t itself: the
    subspace task has no noise-conditional classifier (tests/test_digits_cells.py checks cg with one)."""
    return lambda x_t, t: objective(x_t)


def _run(subspace, setting, n, seeds_base=("contract",), eta=1.0, device="cpu", chain_offset=0):
    name, strength, params, _ = setting
    costs = Costs()
    sampler, objective = _setup(subspace, costs, eta=eta, device=device)
    method = make_method(name, strength, **params)
    noise = PerSampleNoise([derive_seed(*seeds_base, i + chain_offset) for i in range(n)], (64,), device=device)
    z_prev = PerSampleNoise([i + chain_offset + 1000 for i in range(n)], (64,), device=device).draw() * 0.5
    target = linearise(objective, z_prev, method.strength, "per_sample") if method.uses_linear_target else None
    before = costs.snapshot()
    x = sample(sampler, method, noise.draw(), noise, Guide(objective, target, augment=subspace.augment,
                                                          noisy_log_prob=_noisy_stand_in(objective)))
    return x, costs - before, sampler


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_batch_equals_separate_samples(subspace, setting, device):
    """A batch of 8 chains gives what 8 batches of 1 give: no norm or step couples samples."""
    x8, _, _ = _run(subspace, setting, 8, device=device)
    x1 = torch.cat([_run(subspace, setting, 1, device=device, chain_offset=i)[0] for i in range(8)])
    assert torch.isfinite(x8).all()
    assert torch.allclose(x8, x1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_same_seed_same_samples(subspace, setting, device):
    a, _, _ = _run(subspace, setting, 4, device=device)
    b, _, _ = _run(subspace, setting, 4, device=device)
    assert torch.equal(a, b)


# Methods that draw other randomness from the chain's stream (LGD-MC's Monte-Carlo draws, Shen's
# augmentations) depend on it even at eta = 0: for them the stream is part of the method.
# bon and smc start their particles j > 0 from draws of streams derived from the chain's.
STREAM_USERS = ("lgd", "shen", "bon", "smc")


@pytest.mark.parametrize("setting", [s for s in SETTINGS if not s[2] and s[0] not in STREAM_USERS],
                         ids=lambda s: s[0])
def test_eta_zero_is_deterministic_given_x_T(subspace, setting, device):
    """With eta = 0 the step noise is never used: different noise streams, same x_T, same output."""
    name, strength, params, _ = setting
    method = make_method(name, strength, **params)
    costs = Costs()
    sampler, objective = _setup(subspace, costs, eta=0.0, device=device)
    x_T = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)).to(device)
    target = linearise(objective, x_T * 0.3, method.strength, "per_sample") if method.uses_linear_target else None
    outs = [sample(sampler, method, x_T, PerSampleNoise([s + k for k in range(4)], (64,), device=device),
                   Guide(objective, target, noisy_log_prob=_noisy_stand_in(objective))) for s in (0, 100)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_counted_cost_matches_formula(subspace, setting):
    n = 5
    _, spent, sampler = _run(subspace, setting, n)
    steps = len(sampler.steps)
    per_sample = setting[3](steps) if callable(setting[3]) else tuple(c * steps for c in setting[3])
    expected = tuple(c * n for c in per_sample)
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
    """Every hyper-parameter is a keyword argument typed float, int, bool, str or Literal[...] with a default
    of that type (one of the choices for a Literal); make_method keeps the types and refuses values of
    another (a bool for a number, a number for a bool, a value outside a Literal's choices)."""
    import typing
    from typing import Literal

    from benchmark.methods import method_params

    types = method_params(name)
    assert METHODS[name].name == name
    assert types["strength"] is float
    for f in dataclasses.fields(METHODS[name]):
        kind = types[f.name]
        assert f.default is not dataclasses.MISSING, f"{name}.{f.name} has no default"
        if typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            assert f.default in choices and all(isinstance(c, str) for c in choices), (name, f.name, choices)
            with pytest.raises(ValueError, match=f"{f.name} must be one of"):
                make_method(name, 0.0, **{f.name: "not-a-choice"})
            continue
        assert kind in (float, int, bool, str), f"{name}.{f.name}: untyped or unsupported type {kind!r}"
        assert type(f.default) is kind or (kind is float and type(f.default) is int), (name, f.name, f.default)
        if f.name == "strength":
            continue
        built = make_method(name, 0.0, **{f.name: f.default})
        assert type(getattr(built, f.name)) is kind, (name, f.name)
        wrong = {bool: "yes", int: True, float: True}.get(kind)
        if wrong is not None:
            with pytest.raises(ValueError, match=f"{f.name} must be {kind.__name__}"):
                make_method(name, 0.0, **{f.name: wrong})


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
