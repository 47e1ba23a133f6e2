"""The contract every guidance method keeps (built-in or plug-in), as plain functions: pytest
(tests/test_contract.py) and `python -m benchmark check-method` run the same checks.

On the subspace task's exact (oracle) denoiser, 20 DDIM(eta = 1) steps of a cosine schedule with
T = 200, guiding the objective `quadratic_off` (the counted reward; Algorithm-1 methods get a
per-chain linear target around a fixed point, classifier guidance a stand-in for log p(c | x_t, t)):

    hyper-parameters        a dataclass whose fields (strength included) are typed float, int, bool, str
                            or Literal[str, ...], each with a default of its type
    batch = single chains   a batch of 8 chains gives what 8 batches of 1 give (per-sample independence:
                            no norm, step or random draw couples samples), and the samples are finite
    same seed               the same seeds give bit-identical samples
    batched strengths       a method that declares `batches_strengths`: chains with different strengths in
                            one pass give what each strength's chains give alone (batched cells)
    cost formula            the counted denoiser forwards, VJPs, objective evaluations and gradients per
                            output sample equal the method's declared `costs_per_sample(steps)`

Each check returns a Check (name, passed, detail); `check_method` runs them all.
"""

from __future__ import annotations

import dataclasses
import functools
import traceback
import typing
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

#: The contract's grid and objective.
STEPS, SCHEDULE, T, OBJECTIVE = 20, "cosine", 200, "quadratic_off"
#: The contract's objective for a method that cannot guide OBJECTIVE (GuidanceMethod.skip): the linear-Gaussian
#: inverse problem, whose measurement is linear (the posterior samplers' `needs_operator`).
INVERSE_OBJECTIVE = "gaussian_inverse"
#: The strength the contract runs a method at when none is given (the one the methods' table mostly uses);
#: a method that refuses it (`none`, `bon` with its unguided proposal) runs at its default strength.
CONTRACT_STRENGTH = 0.3
#: Tolerances of "a batch equals single chains" (float rounding of batched matrix products).
ATOL = RTOL = 1e-5
CHECKS = ("hyper-parameters", "batch equals single chains", "same seed same samples", "cost formula",
          "batched strengths")


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


@functools.lru_cache(maxsize=1)
def contract_task():
    """The subspace task (task seed 0), made once."""
    from benchmark.tasks import make_task

    return make_task("subspace")


def contract_objective(method) -> str:
    """OBJECTIVE, or INVERSE_OBJECTIVE for a built method that skips OBJECTIVE but not it (a method that needs a
    linear measurement); cg, which skips both, runs on OBJECTIVE with a stand-in classifier (`noisy_stand_in`)."""
    from benchmark.objectives import builtin_objectives

    own = builtin_objectives("subspace")
    skips = method.skip(own[OBJECTIVE])[0] and not method.skip(own[INVERSE_OBJECTIVE])[0]
    return INVERSE_OBJECTIVE if skips else OBJECTIVE


def setup(task, costs, steps: int = STEPS, eta: float = 1.0, device: str = "cpu", objective: str = OBJECTIVE):
    """(sampler, objective) on the task's oracle, both counted into `costs`."""
    from benchmark.diffusion import CountingDenoiser, CountingObjective, Sampler, make_schedule

    sched = make_schedule(SCHEDULE, T)
    sampler = Sampler(CountingDenoiser(task.oracle(sched).to(device), costs), sched, steps=steps, eta=eta)
    objective = CountingObjective(task.objective(objective).to(device), costs)
    return sampler, objective


def noisy_stand_in(objective):
    """cg's noise-conditional log p(c | x_t, t), stood in for by the counted reward at x_t itself: the
    subspace task has no noise-conditional classifier (tests/tasks/test_digits_cells.py checks cg with one)."""
    return lambda x_t, t: objective(x_t)


def resolve(method) -> type:
    """The method class of a registered name, `package.module:Class` or a class."""
    from benchmark.methods import method_class

    return method_class(method)


def default_strength(method) -> float:
    """CONTRACT_STRENGTH, or the method's default strength when it refuses that (e.g. `none`)."""
    from benchmark.methods import make_method

    try:
        make_method(method, CONTRACT_STRENGTH)
        return CONTRACT_STRENGTH
    except ValueError:
        return float(next(f.default for f in dataclasses.fields(resolve(method)) if f.name == "strength"))


def run_chains(method, strength: float, params: dict | None, n: int, *, task=None, seeds_base=("contract",),
               eta: float = 1.0, device: str = "cpu", chain_offset: int = 0, steps: int = STEPS,
               strengths: list[float] | None = None):
    """n chains (seeds derive_seed(*seeds_base, i + chain_offset)) of a freshly built method in one batch:
    (x_0 [n, 64], the costs they spent, the sampler); `strengths` (n of them): chain i guided with
    strengths[i] (`GuidanceMethod.with_strengths`, a batched pass)."""
    from benchmark.diffusion import Costs, PerSampleNoise, derive_seed, sample
    from benchmark.methods import Guide, make_method
    from benchmark.optimize import linearise

    task = task if task is not None else contract_task()
    costs = Costs()
    built = make_method(method, strength, **(params or {}))
    sampler, objective = setup(task, costs, steps=steps, eta=eta, device=device, objective=contract_objective(built))
    if strengths is not None:
        built = built.with_strengths(torch.tensor(strengths, dtype=torch.float64, device=device))
    shape = tuple(task.shape)
    noise = PerSampleNoise([derive_seed(*seeds_base, i + chain_offset) for i in range(n)], shape, device=device)
    z_prev = PerSampleNoise([i + chain_offset + 1000 for i in range(n)], shape, device=device).draw() * 0.5
    target = linearise(objective, z_prev, built.strength, "per_sample") if built.uses_linear_target else None
    before = costs.snapshot()
    x = sample(sampler, built, noise.draw(), noise, Guide(objective, target, augment=task.augment,
                                                         noisy_log_prob=noisy_stand_in(objective)))
    return x, costs - before, sampler


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    """fn(), or a failed check naming the exception and where it was raised."""
    try:
        return fn()
    except Exception as exc:  # the method under test may raise anything: report it as the check's failure
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return Check(name, False, f"raised {type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno})")


def check_hyperparameters(method) -> Check:
    """Every field (strength included) typed float, int, bool, str or Literal[str, ...] with a default of
    its type, and a `strength` field typed float."""
    def run():
        cls = resolve(method)
        hints = typing.get_type_hints(cls)
        problems = []
        if hints.get("strength") is not float:
            problems.append("no field `strength: float`")
        for f in dataclasses.fields(cls):
            kind = hints.get(f.name)
            if f.default is dataclasses.MISSING:
                problems.append(f"{f.name} has no default")
            elif typing.get_origin(kind) is Literal:
                choices = typing.get_args(kind)
                if f.default not in choices or not all(isinstance(c, str) for c in choices):
                    problems.append(f"{f.name}: Literal{list(choices)} must list strings and hold its default "
                                    f"{f.default!r}")
            elif kind not in (float, int, bool, str):
                problems.append(f"{f.name}: type {kind!r} (allowed: float, int, bool, str, Literal[str, ...])")
            elif not (type(f.default) is kind or kind is float and type(f.default) is int):
                problems.append(f"{f.name}: default {f.default!r} is not {kind.__name__}")
        if problems:
            return Check(CHECKS[0], False, "; ".join(problems))
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        return Check(CHECKS[0], True, f"typed with defaults ({fields})")
    return _guarded(CHECKS[0], run)


def check_batch_equals_single_chains(method, strength: float, params: dict | None = None, *, task=None,
                                     n: int = 8, device: str = "cpu") -> Check:
    """A batch of n chains gives what n batches of 1 give, to ATOL/RTOL, and finite samples."""
    def run():
        xb, _, _ = run_chains(method, strength, params, n, task=task, device=device)
        x1 = torch.cat([run_chains(method, strength, params, 1, task=task, device=device, chain_offset=i)[0]
                        for i in range(n)])
        if not torch.isfinite(xb).all():
            bad = sorted(set(torch.nonzero(~torch.isfinite(xb.flatten(1)))[:, 0].tolist()))
            return Check(CHECKS[1], False, f"non-finite samples in chains {bad} of the batch of {n}")
        same, largest, worst = _compare(xb, x1)
        if not same:
            return Check(CHECKS[1], False,
                         f"a batch of {n} chains differs from {n} batches of 1: max |difference| "
                         f"{largest:.3g} (chain {worst}; tolerance atol={ATOL}, rtol={RTOL}); a norm, "
                         "step size or random draw taken over the batch couples the samples")
        return Check(CHECKS[1], True, f"{n} chains in one batch equal {n} batches of 1 "
                                      f"(max |difference| {largest:.2g})")
    return _guarded(CHECKS[1], run)


def _compare(xb: torch.Tensor, x1: torch.Tensor) -> tuple[bool, float, int]:
    """(equal to ATOL/RTOL, the largest |difference|, the chain where it is) of two batches of samples."""
    diff = (xb - x1).abs().flatten(1).max(1).values.nan_to_num(float("inf"))
    return torch.allclose(xb, x1, atol=ATOL, rtol=RTOL), float(diff.max()), int(diff.argmax())


def check_batched_strengths(method, strength: float, params: dict | None = None, *, task=None,
                            device: str = "cpu") -> Check:
    """A `batches_strengths` method: six chains at three strengths (strength/3, strength, 3 strength; all
    0 for a method whose strength must be 0) in one pass equal each strength's two chains alone, to
    ATOL/RTOL. A method that does not declare it passes: its cells of different strengths run apart."""
    def run():
        from benchmark.methods import make_method

        if not getattr(resolve(method), "batches_strengths", False):
            return Check(CHECKS[4], True, "not declared (batches_strengths = False): cells of different strengths "
                                          "run in separate passes")
        grid = [strength / 3, strength, 3 * strength]
        try:
            for s in grid:
                make_method(method, s, **(params or {}))
        except ValueError:
            grid = [strength] * 3                                            # e.g. `none`: strength 0 only
        per_chain = [s for s in grid for _ in range(2)]
        xb, _, _ = run_chains(method, strength, params, 6, task=task, device=device, strengths=per_chain)
        x1 = torch.cat([run_chains(method, s, params, 2, task=task, device=device, chain_offset=2 * i)[0]
                        for i, s in enumerate(grid)])
        same, largest, worst = _compare(xb, x1)
        if not same or not torch.isfinite(xb).all():
            return Check(CHECKS[4], False,
                         f"chains at strengths {grid} in one pass differ from each strength alone: max |difference| "
                         f"{largest:.3g} (chain {worst}; tolerance atol={ATOL}, rtol={RTOL}); every use of "
                         "`strength` must take a per-chain tensor (methods.base: scaled, chain_scalar, is_nonzero)")
        return Check(CHECKS[4], True, f"strengths {[round(s, 6) for s in grid]} in one pass equal each alone "
                                      f"(max |difference| {largest:.2g})")
    return _guarded(CHECKS[4], run)


def check_same_seed(method, strength: float, params: dict | None = None, *, task=None, n: int = 4,
                    device: str = "cpu") -> Check:
    """The same seeds give bit-identical samples."""
    def run():
        a, _, _ = run_chains(method, strength, params, n, task=task, device=device)
        b, _, _ = run_chains(method, strength, params, n, task=task, device=device)
        if not torch.equal(a, b):
            d = (a - b).abs().max()
            return Check(CHECKS[2], False, f"two runs with the same seeds differ (max |difference| {float(d):.3g}): "
                                           "draw randomness only from the chain's noise stream")
        return Check(CHECKS[2], True, f"two runs of {n} chains with the same seeds are identical")
    return _guarded(CHECKS[2], run)


def check_costs(method, strength: float, params: dict | None = None, *, task=None, n: int = 5,
                device: str = "cpu") -> Check:
    """The counted cost of n chains is n x the declared `costs_per_sample(steps)` (per output sample)."""
    def run():
        from benchmark.methods import make_method
        from benchmark.methods.base import COST_NAMES, declared_costs

        built = make_method(method, strength, **(params or {}))
        try:
            declared_costs(built, STEPS)     # a missing formula is named before any sampling
        except NotImplementedError as exc:
            return Check(CHECKS[3], False, str(exc))
        except ValueError:
            pass                             # a formula that needs the grid's timesteps: given below
        _, spent, sampler = run_chains(method, strength, params, n, task=task, device=device)
        steps = len(sampler.steps)
        per_sample = declared_costs(built, steps, [s.t for s in sampler.steps])
        expected = tuple(c * n for c in per_sample)
        got = (spent.denoiser_forwards, spent.denoiser_vjps, spent.objective_evals, spent.objective_grads)
        if got != expected:
            wrong = ", ".join(f"{name} {g} != {e}" for name, g, e in zip(COST_NAMES, got, expected) if g != e)
            return Check(CHECKS[3], False, f"counted cost of {n} samples over {steps} steps differs from "
                                           f"{n} x costs_per_sample({steps}) = {n} x {per_sample}: {wrong}")
        return Check(CHECKS[3], True, f"counted = declared: {per_sample} per sample over {steps} steps "
                                      f"{COST_NAMES}")
    return _guarded(CHECKS[3], run)


def check_method(method, strength: float | None = None, params: dict | None = None, *, task=None,
                 device: str = "cpu") -> list[Check]:
    """Every contract check on `method` (a registered name, `package.module:Class` or a GuidanceMethod
    class) at `strength` (default: CONTRACT_STRENGTH, or the method's default when it refuses that) with
    hyper-parameters `params`: a list of Check(name, passed, detail). A method that cannot be resolved or
    built gives one failed check, 'builds'."""
    from benchmark.methods import make_method

    params = dict(params or {})
    try:
        resolve(method)
        if strength is None:
            strength = default_strength(method)
        make_method(method, strength, **params)
    except ValueError as exc:
        return [Check("builds", False, str(exc))]
    checks = [check_hyperparameters(method)]
    for fn in (check_batch_equals_single_chains, check_same_seed, check_costs, check_batched_strengths):
        checks.append(fn(method, strength, params, task=task, device=device))
    return checks


def describe(method) -> str:
    """'name (module.Class)' of a method given by name or class, for messages."""
    cls = resolve(method)
    return f"{getattr(cls, 'name', '') or '?'} ({cls.__module__}.{cls.__qualname__})"
