"""Contract tests over the whole method registry, plug-ins included: per-sample independence,
determinism, and counted cost equal to each method's own declared formula (`costs_per_sample`).
The checks themselves live in benchmark/contract.py, which `python -m benchmark check-method` runs too;
the table below pins the built-ins' formulas (DESIGN.md §3) for their defaults and option variants."""

import dataclasses
import re

import pytest
import torch

from benchmark import contract
from benchmark.diffusion import Costs, PerSampleNoise, sample, timestep_grid
from benchmark.methods import METHODS, Guide, GuidanceMethod, make_method
from benchmark.methods.base import declared_costs
from benchmark.optimize import linearise

# Settings run by every contract test: (method, strength, hyper-parameters, cost per sampling step
# in (denoiser forwards, denoiser VJPs, objective evals, objective grads) per sample, DESIGN.md §3,
# or for a method whose cost is not per step, a function of the number of steps S giving the total per sample).
# Every method appears with its defaults; options that change the cost appear once more each.
# Polyak's step (Shen et al.'s published rule, the default) runs at 0.003: at 0.03 with 20 steps it overshoots
# (a chaotic regime, where a batch and single chains differ at float rounding and the difference grows;
# see test_shen.py).
SETTINGS = [
    ("none", 0.0, {}, (1, 0, 0, 0)),
    ("naive", 0.3, {}, (1, 0, 0, 0)),
    ("gloss", 0.3, {}, (1, 1, 0, 0)),
    ("dps", 0.3, {}, (1, 1, 1, 1)),
    ("dps", 0.3, {"augment": 3}, (1, 1, 3, 3)),                         # |T| = 3
    ("dps", 0.003, {"polyak": True, "recurrence": 2}, (2, 2, 2, 2)),      # time travel s = 2
    ("freedom", 0.3, {}, (1, 1, 1, 1)),
    ("freedom", 0.003, {"augment": 2, "recurrence": 3, "polyak": True}, (3, 3, 6, 6)),
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
    ("shen", 0.003, {}, (2, 2, 20, 20)),                                 # |T| = 10, s = 2
    ("cg", 0.3, {}, (1, 0, 1, 1)),                                       # noise-conditional log p: 1 G, no VJP
    ("pigdm", 1.0, {}, (1, 1, 1, 0)),                                   # on gaussian_inverse (needs_operator)
    ("ddnm", 1.0, {}, (1, 0, 1, 0)),
    ("diffpir", 1.0, {}, (1, 0, 1, 0)),
    ("daps", 0.3, {}, (1, 0, 100, 100)),                                 # K = 100 Langevin steps, Tweedie
    ("daps", 0.3, {"mcmc_steps": 2, "ode_steps": 3}, (3, 0, 2, 2)),        # 3 PF-ODE forwards per step
    ("reddiff", 0.3, {}, lambda S: (S, 0, S + 1, S)),                      # init A^+ y: + 1 read of y
    ("reddiff", 0.3, {"init": "noise"}, (1, 0, 1, 1)),                   # init x_T: any reward
    # svdd: M = 20 candidates per step, PM values, argmax: one forward at x_T, then M forwards and M rewards per step
    # but the last (deterministic, x_0 = x0h(x_1))
    ("svdd", 0.0, {}, lambda S: (1 + 20 * (S - 1), 0, 20 * (S - 1), 0)),
    # M = 3, MC values by K = 2 rollouts of R = min(3, S - 1 - i) steps (K = 1 for a one-step rollout): per step
    # 3 (1 + 2 * 2) = 15 forwards and 6 rewards while R = 3, then 9 and 6 (R = 2), 3 and 3 (R = 1)
    ("svdd", 0.3, {"candidates": 3, "value": "mc", "select": "softmax", "rollouts": 2, "rollout_steps": 3},
     lambda S: (15 * S - 32, 0, 6 * S - 9, 0) if S >= 3 else (1 + 3 * (S - 1), 0, 3 * (S - 1), 0)),
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


def _plugin_settings():
    """Every registered method the table does not list (installed plug-ins), at the contract's strength,
    with its default hyper-parameters and its own declared formula (no table entry: None)."""
    out = []
    for name in METHODS:
        if name in METHODS.builtins():
            continue
        try:
            strength = contract.default_strength(name)
        except ValueError:                  # not a method at all: the contract tests say so
            strength = contract.CONTRACT_STRENGTH
        out.append((name, strength, {}, None))
    return out


#: The table's settings and every plug-in's defaults: what the contract tests run over.
ALL = SETTINGS + _plugin_settings()
ALL_IDS = IDS + [f"plugin-{n}-{s}" for n, s, _, _ in ALL[len(SETTINGS):]]


def _table_costs(setting, steps):
    """The table's per-sample cost of a setting over `steps` steps."""
    cost = setting[3]
    return cost(steps) if callable(cost) else tuple(c * steps for c in cost)


def test_every_builtin_is_in_the_table():
    assert {name for name, *_ in SETTINGS} == set(METHODS.builtins())


@pytest.mark.parametrize("setting", ALL, ids=ALL_IDS)
def test_every_method_declares_a_cost_formula(setting):
    name, strength, params, _ = setting
    per_sample = declared_costs(make_method(name, strength, **params), contract.STEPS)
    assert len(per_sample) == 4 and all(isinstance(c, int) and c >= 0 for c in per_sample)


@pytest.mark.parametrize("steps", [1, 2, 7, 20, 50])
@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_declared_formula_equals_the_table(setting, steps):
    """Each built-in's own formula is the table's, for every setting and grid length (with and without
    the grid's timesteps)."""
    name, strength, params, _ = setting
    method = make_method(name, strength, **params)
    timesteps = timestep_grid(contract.T, steps)[:-1]
    assert declared_costs(method, steps, timesteps) == _table_costs(setting, steps)
    assert declared_costs(method, steps) == _table_costs(setting, steps)


def test_the_base_class_declares_no_formula():
    with pytest.raises(NotImplementedError, match="declares no cost formula: define costs_per_sample"):
        GuidanceMethod().costs_per_sample(5)


def _setup(subspace, costs, steps=20, eta=1.0, device="cpu"):
    return contract.setup(subspace, costs, steps=steps, eta=eta, device=device)


_noisy_stand_in = contract.noisy_stand_in


@pytest.mark.parametrize("setting", ALL, ids=ALL_IDS)
def test_batch_equals_separate_samples(subspace, setting, device):
    """A batch of 8 chains gives what 8 batches of 1 give (finite, to atol = rtol = 1e-5): no norm or step
    couples samples."""
    name, strength, params, _ = setting
    check = contract.check_batch_equals_single_chains(name, strength, params, task=subspace, n=8, device=device)
    assert (contract.ATOL, contract.RTOL) == (1e-5, 1e-5)
    assert check.passed, check.detail


@pytest.mark.parametrize("setting", ALL, ids=ALL_IDS)
def test_batched_strengths_equal_each_strength_alone(subspace, setting, device):
    """Chains at three strengths in one pass (batched cells) give what each strength gives alone (to atol = rtol
    = 1e-5); a method that does not declare batches_strengths passes by running its strengths apart."""
    name, strength, params, _ = setting
    check = contract.check_batched_strengths(name, strength, params, task=subspace, device=device)
    assert check.passed, check.detail
    declared = getattr(contract.resolve(name), "batches_strengths", False)
    assert ("in one pass equal each alone" if declared else "not declared") in check.detail


def test_every_builtin_but_bon_batches_strengths():
    """bon's strength is its proposal's, built once: its cells of different strengths run apart."""
    assert {n for n in METHODS.builtins() if not contract.resolve(n).batches_strengths} == {"bon"}


@dataclasses.dataclass
class _ScalarStrength(GuidanceMethod):
    """Declares batches_strengths but branches on the strength as a Python number."""

    name = "scalar_strength"
    batches_strengths = True

    def guided_eps(self, x_t, step, sampler, guide):
        e = sampler.eps(x_t, step)
        return e - (0.1 if float(self.strength.max() if torch.is_tensor(self.strength) else self.strength) > 0.2
                    else 0.0) * e

    def costs_per_sample(self, steps):
        return (steps, 0, 0, 0)


@pytest.mark.parametrize("setting", ALL, ids=ALL_IDS)
def test_same_seed_same_samples(subspace, setting, device):
    name, strength, params, _ = setting
    check = contract.check_same_seed(name, strength, params, task=subspace, n=4, device=device)
    assert check.passed, check.detail


# Methods that draw other randomness from the chain's stream (LGD-MC's Monte-Carlo draws, Shen's
# augmentations) depend on it even at eta = 0: for them the stream is part of the method.
# bon and smc start their particles j > 0 from draws of streams derived from the chain's. DDNM+ draws the
# range-space noise and DiffPIR its zeta share of fresh noise at any eta (their published updates).
STREAM_USERS = ("ddnm", "diffpir", "lgd", "shen", "bon", "smc", "daps", "reddiff")


@pytest.mark.parametrize("setting", [s for s in SETTINGS if not s[2] and s[0] not in STREAM_USERS],
                         ids=lambda s: s[0])
def test_eta_zero_is_deterministic_given_x_T(subspace, setting, device):
    """With eta = 0 the step noise is never used: different noise streams, same x_T, same output."""
    name, strength, params, _ = setting
    method = make_method(name, strength, **params)
    costs = Costs()
    sampler, objective = contract.setup(subspace, costs, eta=0.0, device=device,
                                        objective=contract.contract_objective(method))
    x_T = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)).to(device)
    target = linearise(objective, x_T * 0.3, method.strength, "per_sample") if method.uses_linear_target else None
    outs = [sample(sampler, method, x_T, PerSampleNoise([s + k for k in range(4)], (64,), device=device),
                   Guide(objective, target, noisy_log_prob=_noisy_stand_in(objective))) for s in (0, 100)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("setting", ALL, ids=ALL_IDS)
def test_counted_cost_matches_formula(subspace, setting):
    """The counted cost of 5 chains is 5 x the method's declared formula, which for the table's settings is
    the table's: counted == table."""
    name, strength, params, _ = setting
    check = contract.check_costs(name, strength, params, task=subspace, n=5)
    assert check.passed, check.detail
    if setting[3] is not None:
        steps = contract.STEPS
        method = make_method(name, strength, **params)
        assert declared_costs(method, steps, timestep_grid(contract.T, steps)[:-1]) == _table_costs(setting, steps)


def test_grid_dependent_formulas(subspace):
    """A stop step or a time-travel window makes the cost depend on the grid's timesteps: the formula
    takes them (and counts what is counted), and refuses to guess without them."""
    grid = timestep_grid(contract.T, contract.STEPS)[:-1]
    cases = [("freedom", {"stop_t": 100}, lambda t: (1, 1, 1, 1) if t > 100 else (1, 0, 0, 0)),
             ("dps", {"recurrence": 3, "travel_start": 150, "travel_end": 60},
              lambda t: (3, 3, 3, 3) if 60 <= t <= 150 else (1, 1, 1, 1)),
             ("smc", {"particles": 2, "proposal": "freedom", "proposal_strength": 0.1,
                      "proposal_params": "stop_t=100"}, None)]
    for name, params, per_step in cases:
        method = make_method(name, 0.3, **params)
        with pytest.raises(ValueError, match="depends on the grid's timesteps"):
            declared_costs(method, len(grid))
        if per_step is not None:
            expected = tuple(sum(per_step(t)[i] for t in grid) for i in range(4))
            assert declared_costs(method, len(grid), grid) == expected
            assert expected != declared_costs(make_method(name, 0.3), len(grid))
        check = contract.check_costs(name, 0.3, params, task=subspace, n=3)
        assert check.passed, check.detail


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
    check = contract.check_hyperparameters(name)
    assert check.passed, check.detail
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


def test_make_method_accepts_an_import_path_and_a_class():
    from benchmark.methods.dps import DPS

    assert type(make_method("benchmark.methods.dps:DPS", 0.2, augment=2)) is DPS
    assert make_method(DPS, 0.2).augment == 0
    assert "benchmark.methods.dps:DPS" in METHODS and "benchmark.methods.dps:Nope" not in METHODS
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        make_method("benchmark.methods.dps:Nope")
    with pytest.raises(ValueError, match="cannot import 'no_such_package_xyz.mod'"):
        make_method("no_such_package_xyz.mod:Method")
    with pytest.raises(ValueError, match="not a subclass of benchmark.methods.base.GuidanceMethod"):
        make_method("benchmark.diffusion:Costs")


@dataclasses.dataclass
class _NoFormula(GuidanceMethod):
    """A method that guides nothing and declares no cost formula."""

    name = "no_formula"


@dataclasses.dataclass
class _Coupled(GuidanceMethod):
    """Unguided, then every sample shifted by the batch mean at the last step: samples are coupled."""

    name = "coupled"

    def step(self, x_t, step, sampler, guide, noise):
        x = super().step(x_t, step, sampler, guide, noise)
        return x + self.strength * x.mean(0, keepdim=True) if step.index == step.num_steps - 1 else x

    def costs_per_sample(self, steps):
        return (steps, 0, 0, 0)


@dataclasses.dataclass
class _Undercounted(_Coupled):
    """Per-sample, but its formula forgets a forward."""

    name = "undercounted"

    def step(self, x_t, step, sampler, guide, noise):
        return GuidanceMethod.step(self, x_t, step, sampler, guide, noise)

    def costs_per_sample(self, steps):
        return (steps - 1, 0, 0, 0)


def test_the_contract_names_what_a_broken_method_breaks(subspace):
    checks = {c.name: c for c in contract.check_method(_NoFormula, 0.0, task=subspace)}
    assert list(checks) == list(contract.CHECKS)
    assert not checks["cost formula"].passed and "declares no cost formula" in checks["cost formula"].detail
    assert "_NoFormula" in checks["cost formula"].detail
    assert all(c.passed for n, c in checks.items() if n != "cost formula")
    checks = {c.name: c for c in contract.check_method(_Coupled, 0.5, task=subspace)}
    assert not checks["batch equals single chains"].passed
    assert "couples the samples" in checks["batch equals single chains"].detail
    assert checks["cost formula"].passed and checks["same seed same samples"].passed
    checks = {c.name: c for c in contract.check_method(_Undercounted, 0.0, task=subspace)}
    assert not checks["cost formula"].passed and "denoiser forwards 100 != 95" in checks["cost formula"].detail
    checks = {c.name: c for c in contract.check_method(_ScalarStrength, 0.3, task=subspace)}
    assert not checks["batched strengths"].passed and "must take a per-chain tensor" in checks["batched strengths"].detail
    assert all(c.passed for n, c in checks.items() if n != "batched strengths")
    [built] = contract.check_method("gradient")
    assert built.name == "builds" and not built.passed and "unknown method 'gradient'; allowed:" in built.detail
