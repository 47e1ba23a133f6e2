"""The one shape of a guidance method: typed hyper-parameters and a guided step of the shared loop.

A method is a dataclass whose fields are its hyper-parameters (one of them `strength`; a field
typed `Literal[...]` is checked against its choices); the
sampler calls `step(x_t, step, sampler, guide, noise) -> x_{t-1}`. The default step is the
plain DDIM update from a (possibly guided) noise prediction returned by `guided_eps`, so a
method that modifies the score only overrides `guided_eps` (e' = e - sqrt(1 - ab_t) * G).
A method that owns the whole trajectory (bon, smc: several particles per chain) overrides
`sample(sampler, x_T, noise, guide) -> x_0`, whose default is the shared loop of steps.

Every method declares its cost formula, `costs_per_sample(steps, timesteps=None)`: (denoiser
forwards, denoiser VJPs, objective evaluations, objective gradients) per output sample over one
sampling pass of `steps` steps, as the counting wrappers count them (DESIGN.md §3). The base class
has none on purpose: a method without one fails the contract (benchmark/contract.py) by name.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from benchmark.diffusion.sampler import Sampler, Step, run_steps, tweedie


#: (denoiser forwards, denoiser VJPs, objective evaluations, objective gradients) per output sample.
SampleCosts = tuple[int, int, int, int]
COST_NAMES = ("denoiser forwards", "denoiser VJPs", "objective evals", "objective grads")


def missing_cost_formula(cls: type, what: str = "costs_per_sample(steps)") -> str:
    """The message of a method that declares no cost formula."""
    return (f"method {getattr(cls, 'name', '') or cls.__qualname__!r} ({cls.__module__}.{cls.__qualname__}) declares "
            f"no cost formula: define {what} -> (denoiser forwards, denoiser VJPs, objective evals, "
            "objective grads) per output sample over a sampling pass of `steps` steps")


def add_costs(*costs: Sequence[int]) -> SampleCosts:
    """The element-wise sum of cost tuples."""
    return tuple(int(sum(c)) for c in zip((0, 0, 0, 0), *costs))


def scale_costs(k: int, costs: Sequence[int]) -> SampleCosts:
    return tuple(int(k * c) for c in costs)


def grid_timesteps(steps: int, timesteps: Sequence[int] | None) -> list[int | None]:
    """The t of each of the `steps` grid steps (noisiest first), or None for each when not given."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if timesteps is None:
        return [None] * steps
    ts = [int(t) for t in timesteps]
    if len(ts) != steps:
        raise ValueError(f"{len(ts)} timesteps given for a grid of {steps} steps")
    return ts


def summed_over_grid(steps: int, timesteps: Sequence[int] | None,
                     per_step: Callable[[int | None], Sequence[int]]) -> SampleCosts:
    """sum over the grid of per_step(t): the cost of a method that pays per step (t None when the grid's
    timesteps are not given; a per-step cost that depends on t raises then)."""
    return add_costs(*(per_step(t) for t in grid_timesteps(steps, timesteps)))


def declared_costs(method, steps: int, timesteps: Sequence[int] | None = None) -> SampleCosts:
    """`method.costs_per_sample(steps[, timesteps])`, as a tuple of 4 ints: a formula that takes only
    `steps` is called without the timesteps. NotImplementedError (naming the method) when it declares
    none; ValueError when it returns anything but 4 non-negative integers."""
    fn = getattr(method, "costs_per_sample", None)
    if fn is None:
        raise NotImplementedError(missing_cost_formula(type(method)))
    try:
        takes_timesteps = "timesteps" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_timesteps = False
    got = fn(steps, timesteps=timesteps) if takes_timesteps else fn(steps)
    try:
        costs = tuple(got)
    except TypeError:
        costs = ()
    if len(costs) != 4 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in costs):
        raise ValueError(f"method {getattr(method, 'name', '')!r}: costs_per_sample({steps}) must return 4 integers "
                         f">= 0 {COST_NAMES}, got {got!r}")
    return costs


@dataclass(frozen=True)
class LinearTarget:
    """Guo et al.'s linear model of the objective around the previous sample z (one per chain):
    g = grad r(z): [B, D], y = g^T z + delta: [B]."""

    g: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Guide:
    """What a method may use to guide.

    objective: the counted reward r(x) -> [B].
    linear: for Algorithm-1 methods, the per-chain linear target of the current round.
    augment: the task's augmentation family for Shen et al.'s random augmentation,
        augment(x [B, *shape], z [B, *shape]) -> T(x), differentiable in x; z ~ N(0, I) per
        sample (drawn from the chain's own noise stream, so augmentations are per sample).
    noisy_log_prob: for classifier guidance, log p(y | x_t, t) -> [B] of a classifier trained on
        noisy inputs (x_t [B, *shape], t int), counted like the objective; None if the
        objective has none.
    """

    objective: object
    linear: LinearTarget | None = None
    augment: object | None = None
    noisy_log_prob: object | None = None

    def for_particles(self, K: int) -> "Guide":
        """The guide of [K B] particle rows, K stacked copies of the B chains (particle-major, the
        objective's convention for per-chain parameters): the linear target repeated K times."""
        if K == 1 or self.linear is None:
            return self
        return dataclasses.replace(self, linear=LinearTarget(torch.cat([self.linear.g] * K),
                                                             torch.cat([self.linear.y] * K)))


@dataclass
class GuidanceMethod:
    name: ClassVar[str] = ""
    #: True for Guo et al.'s methods, which guide towards the linear target of Algorithm 1.
    uses_linear_target: ClassVar[bool] = False
    #: True for methods that need the objective's noise-conditional log-probability (classifier
    #: guidance); the sweep allows them only on a task's `noisy_log_prob_objectives`.
    uses_noisy_log_prob: ClassVar[bool] = False
    #: True for methods whose chains may each have their own strength in one sampling pass (batched
    #: cells, benchmark.batch): every use of `strength` takes a float or a per-chain float64 tensor [B]
    #: (`with_strengths`; the contract's "batched strengths" check). Chains of cells that differ only in
    #: their seed share a pass whatever this says (chains are independent: the contract's batch check).
    batches_strengths: ClassVar[bool] = False
    #: True for methods that need the objective's linear measurement y = A x + sigma_y n (A, A^T, A^+, sigma_y:
    #: benchmark.objectives.operator.LinearMeasurement), the posterior samplers for linear inverse problems.
    needs_operator: ClassVar[bool] = False

    strength: float = 0.0

    def skip(self, objective) -> tuple[bool, str]:
        """(True, why) when the method cannot guide `objective` (an objective class or instance), else (False, ""):
        the sweep refuses such a pair when the DAG is built and a cell before it samples (benchopt's `skip`).
        `why` names the method and what it needs ("'cg' needs an objective with ..."); the caller adds the
        objective and task. The default reads what the method declares (`needs_operator`, `uses_noisy_log_prob`);
        a method with other needs overrides it."""
        from benchmark.objectives.operator import has_operator

        if self.needs_operator and not has_operator(objective):
            return True, (f"{self.name!r} needs an objective with a linear measurement y = A x + sigma_y n "
                          "(A, A^T, A^+: benchmark.objectives.operator.LinearMeasurement)")
        if self.uses_noisy_log_prob and not callable(getattr(objective, "noisy_log_prob", None)):
            return True, f"{self.name!r} needs an objective with a noise-conditional classifier"
        return False, ""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
                raise ValueError(f"method {self.name!r}: {f.name} must be finite, got {value}")
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
            if choices and value not in choices:
                raise ValueError(f"method {self.name!r}: {f.name} must be one of {list(choices)}, got {value!r}")
        if self.strength < 0:
            raise ValueError(f"method {self.name!r}: strength must be >= 0, got {self.strength}")

    def params(self) -> dict:
        return dataclasses.asdict(self)

    def with_strengths(self, strengths: torch.Tensor) -> "GuidanceMethod":
        """A copy that guides chain i with strengths[i] (float64 [B]): the cells of one batched pass.
        Validation was done on each cell's own method (strength a float); only `batches_strengths`
        methods take this."""
        if not self.batches_strengths:
            raise ValueError(f"method {self.name!r} does not declare batches_strengths: its cells of different "
                             "strengths run in separate passes")
        copy = dataclasses.replace(self)  # runs __post_init__ at the method's own float strength
        copy.strength = strengths.to(torch.float64)
        return copy

    def sample(self, sampler: Sampler, x_T: torch.Tensor, noise, guide: Guide | None = None) -> torch.Tensor:
        """x_T -> x_0 over the sampler's grid: the shared loop of `step`s."""
        return run_steps(sampler, self, x_T, noise, guide)

    def step(self, x_t: torch.Tensor, step: Step, sampler: Sampler, guide: Guide | None, noise) -> torch.Tensor:
        e = self.guided_eps(x_t, step, sampler, guide)
        return sampler.ddim(tweedie(x_t, e, step.ab_t), e, step, noise)

    def guided_eps(self, x_t: torch.Tensor, step: Step, sampler: Sampler, guide: Guide | None) -> torch.Tensor:
        return sampler.eps(x_t, step)

    def costs_per_sample(self, steps: int, timesteps: Sequence[int] | None = None) -> SampleCosts:
        """(denoiser forwards, denoiser VJPs, objective evaluations, objective gradients) one output sample
        costs over a sampling pass of `steps` steps; `timesteps` (the grid's t per step, noisiest first) for
        a formula that depends on t (a time-travel window, a stop step), which raises ValueError without it.

        Every method declares its own (a plug-in may take `steps` only); the contract tests check it
        against the counted cost. The base class declares none: this raises NotImplementedError."""
        raise NotImplementedError(missing_cost_formula(type(self)))


@dataclass
class LossGuidance(GuidanceMethod):
    """A method whose gradient goes through the denoiser, g_t = grad_{x_t} r(x0h(x_t)), with the
    three improvements of Shen et al. (2024) as options:

    augment = |T| > 0: random augmentation (their Alg. 1), the reward averaged over |T| random
        augmentations of x0h, r_T(x0h) = (1/|T|) sum_j r(T_j(x0h)), so
        g_t = (1/|T|) sum_j grad_{x_t} r(T_j(x0h)); still one VJP through the denoiser, |T|
        objective evaluations and gradients. The family T is the task's (`Guide.augment`).
    polyak: Polyak step size (their Alg. 2), the method's step size replaced per sample by a step
        built from e = eps_theta(x_t, t) and g_t, by `polyak_rule`:
        "published" (default): zeta = strength ||e|| / ||g_t||^2, and zeta = 0 for a sample with
            ||g_t|| < POLYAK_CUTOFF = 1e-6 (their only guard). strength is the paper's eta, the
            scale of the Polyak step (strength = 1: the bare step). The displacement
            ||zeta g_t|| = strength ||e|| / ||g_t|| grows at high noise, where g_t ~ sqrt(ab_t) -> 0.
        "guarded": zeta = strength ||e|| / (||g_t||^2 + polyak_eps) (ours, not the paper's): the
            guard polyak_eps (in units of ||g_t||^2, used only by this rule) bounds the displacement
            by strength ||e|| / (2 sqrt(polyak_eps)); at high noise, where ||g_t||^2 << polyak_eps,
            its step is a small fraction of the published one.
        The rule is the same for every method that takes `polyak` (dps, freedom, ugd, lgd, shen): the
        option is Shen et al.'s step, so it runs their rule unless "guarded" is named.
    recurrence = s > 1: time travel (their Alg. 3, FreeDoM's and UGD's recurrence), the step made s
        times, each repeat re-noising x_{t-1} back to t first (x_t = sqrt(a_t) x_{t-1} + sqrt(1 - a_t) z),
        at every step with travel_end <= t <= travel_start (travel_start = 0: no upper limit).

    Reference: Y. Shen, X. Jiang, Y. Yang, Y. Wang, D. Han, D. Li. Understanding and Improving
    Training-free Loss-based Diffusion Guidance. NeurIPS 2024.
    """

    augment: int = 0
    polyak: bool = False
    polyak_rule: Literal["published", "guarded"] = "published"
    polyak_eps: float = 1e-2
    recurrence: int = 1
    travel_start: int = 0
    travel_end: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.augment < 0:
            raise ValueError(f"method {self.name!r}: augment (|T|, the number of random augmentations) must be "
                             f">= 0 (0 = off), got {self.augment}")
        if self.polyak_eps <= 0:
            raise ValueError(f"method {self.name!r}: polyak_eps must be > 0, got {self.polyak_eps}")
        if self.recurrence < 1:
            raise ValueError(f"method {self.name!r}: recurrence must be >= 1 (1 = no time travel), "
                             f"got {self.recurrence}")
        for name in ("travel_start", "travel_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"method {self.name!r}: {name} must be >= 0, got {getattr(self, name)}")
        if 0 < self.travel_start < self.travel_end:
            raise ValueError(f"method {self.name!r}: travel_end must be <= travel_start (the window is "
                             f"travel_end <= t <= travel_start), got {self.travel_end} > {self.travel_start}")

    def repeats(self, t: int | None) -> int:
        """How many times the step at timestep t is made (1 outside the time-travel window); t None
        (the grid unknown) is allowed only without a window."""
        if t is None:
            if self.travel_start or self.travel_end:
                raise ValueError(f"method {self.name!r}: the cost of a time-travel window "
                                 f"[{self.travel_end}, {self.travel_start}] depends on the grid's timesteps; "
                                 "pass them (costs_per_sample(steps, timesteps))")
            return self.recurrence
        inside = self.travel_end <= t and (self.travel_start == 0 or t <= self.travel_start)
        return self.recurrence if inside else 1

    def step(self, x_t, step, sampler, guide, noise):
        for i in range(self.repeats(step.t)):
            if i > 0:
                x_t = sampler.renoise(x_prev, step, noise)
            x_prev = self.guided_step(x_t, step, sampler, guide, noise)
        return x_prev

    def guided_step(self, x_t, step, sampler, guide, noise) -> torch.Tensor:
        """One guided transition x_t -> x_{t-1} (without time travel)."""
        raise NotImplementedError

    @property
    def n_augment(self) -> int:
        """|T|: objective evaluations per reward of `reward` (1 without augmentation)."""
        return max(self.augment, 1)

    def guided_step_costs(self, t: int | None) -> SampleCosts:
        """The cost per sample of one `guided_step` at timestep t (without time travel)."""
        raise NotImplementedError(missing_cost_formula(type(self), "guided_step_costs(t) (or costs_per_sample(steps))"))

    def costs_per_sample(self, steps: int, timesteps: Sequence[int] | None = None) -> SampleCosts:
        """sum over the grid of repeats(t) x the guided step's cost (time travel repeats the whole step)."""
        return summed_over_grid(steps, timesteps, lambda t: scale_costs(self.repeats(t), self.guided_step_costs(t)))

    def reward(self, x0: torch.Tensor, guide: Guide, noise) -> torch.Tensor:
        """r(x0) -> [B], or its mean over `augment` random augmentations; differentiable in x0."""
        if self.augment == 0:
            return guide.objective(x0)
        return augmented_reward(guide, x0, [noise.draw() for _ in range(self.augment)])

    def grad_through_denoiser(self, x_t, step, sampler, guide, noise, reward=None):
        """One forward and one VJP: (e, x0h, r, g_t = grad_{x_t} r(x0h(x_t))), all detached.

        reward: x0 -> [B], differentiable (default: `self.reward`, i.e. r or its augmented mean)."""
        with torch.enable_grad():
            x, e, x0h = sampler.eps_with_graph(x_t, step)
            r = reward(x0h) if reward is not None else self.reward(x0h, guide, noise)   # [B]
            (g_t,) = torch.autograd.grad(r.sum(), x)                        # one VJP
        return e.detach(), x0h.detach(), r.detach(), g_t

    def step_size(self, default: torch.Tensor | float, e: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The per-sample step [B]: the method's own (`default`), or Polyak's by `polyak_rule` when `polyak`."""
        if self.polyak:
            g_norm = norm(g)
            if self.polyak_rule == "guarded":
                return chain_scalar(self.strength, e.dtype) * norm(e) / (g_norm ** 2 + self.polyak_eps)
            zeta = chain_scalar(self.strength, e.dtype) * norm(e) / g_norm ** 2
            return torch.where(g_norm < POLYAK_CUTOFF, torch.zeros_like(zeta), zeta)   # not inf or 0/0
        if isinstance(default, torch.Tensor):
            return default.to(e.dtype)
        return torch.full((e.shape[0],), float(default), dtype=e.dtype, device=e.device)


#: Shen et al.'s Polyak step is 0 for a sample whose gradient norm ||g_t|| is below this ("published" rule).
POLYAK_CUTOFF = 1e-6


def norm(x: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm: [B, ...] -> [B] (never a norm over the batch)."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def augmented_reward(guide: Guide, x0: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
    """(1/|T|) sum_j r(T_j(x0)) -> [N] for x0: [N, ...], N a multiple of the batch B of the draws
    z_j: [B, ...] (x0 stacked in blocks of B, e.g. LGD's Monte-Carlo copies); one objective call."""
    if guide.augment is None:
        raise ValueError("random augmentation needs the task's augmentation family (Guide.augment)")
    reps = x0.shape[0] // zs[0].shape[0]
    xs = torch.cat([guide.augment(x0, z.repeat(reps, *(1,) * (z.dim() - 1))) for z in zs])
    return guide.objective(xs).view(len(zs), x0.shape[0]).mean(0)


def log_mean_exp_reward(reward_fn, x0: torch.Tensor, std: float, draws: list[torch.Tensor]) -> torch.Tensor:
    """log (1/n) sum_i exp r(x0 + std eps_i) -> [B], the Gaussian-smoothed reward of LGD-MC and
    TFG (one call of reward_fn on all n B points); draws: n tensors eps_i like x0."""
    if not draws:
        return reward_fn(x0)
    n = len(draws)
    xs = torch.cat([x0 + std * eps for eps in draws])
    return torch.logsumexp(reward_fn(xs).view(n, x0.shape[0]), dim=0) - math.log(n)


def reward_grad_through_denoiser(x_t, step, sampler, objective):
    """One forward and one VJP through the denoiser: (e, x0h, r(x0h), g_t = grad_{x_t} r(x0h)).

    x_t: [B, D] -> e, x0h, g_t: [B, D], r: [B]; all detached.
    """
    with torch.enable_grad():
        x, e, x0h = sampler.eps_with_graph(x_t, step)
        r = objective(x0h)                                                   # [B]
        (g_t,) = torch.autograd.grad(r.sum(), x)                             # one VJP
    return e.detach(), x0h.detach(), r.detach(), g_t


def per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample factor c: [B] shaped to broadcast against like: [B, ...]."""
    return c.view(-1, *(1,) * (like.dim() - 1))


def chain_scalar(c: float | torch.Tensor, dtype: torch.dtype) -> float | torch.Tensor:
    """A strength-like factor as the arithmetic with `dtype` tensors uses it: a float unchanged, a per-chain
    float64 tensor [B] (batched cells) rounded to `dtype` once, as torch rounds a Python scalar; so a
    chain of a batched pass computes exactly what its cell computes alone."""
    return c.to(dtype) if isinstance(c, torch.Tensor) else c


def scaled(c: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """c x for a scalar c, or per chain for c: [B] (float64, batched cells) against x: [B, ...]."""
    if isinstance(c, torch.Tensor):
        return per_sample(c.to(x.dtype), x) * x
    return c * x


def is_nonzero(c: float | torch.Tensor) -> bool:
    """c != 0 for a scalar; for a per-chain tensor, whether any chain's is (a batched pass holds cells
    whose strengths are all zero or all non-zero: their cost formulas agree, benchmark.batch)."""
    return bool((c != 0).any()) if isinstance(c, torch.Tensor) else c != 0


def make_proposal(owner: str, name: str, strength: float, params: str) -> GuidanceMethod:
    """The proposal of an inference-compute method (bon, smc): method `name` at `strength`, its own
    hyper-parameters given as one string 'name=value,name=value' (each value read as JSON, else as a
    string, as the CLI reads --param), e.g. "normalise=none,augment=3"."""
    from benchmark.methods import make_method

    kwargs = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"method {owner!r}: proposal_params expects 'name=value,name=value', got {params!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value.strip()
    try:
        return make_method(name, strength, **kwargs)
    except ValueError as err:
        raise ValueError(f"method {owner!r}: proposal {name!r}: {err}") from None
