"""What every objective offers: a per-sample reward to MAXIMISE, its known optima and its kind, and how it is
built: `cls(task, **params)`, its constructor's keywords after `task` being its parameters."""

from __future__ import annotations

import inspect

import torch
from torch import nn

#: What an objective's reward is, which decides the published step rule of a method such as DPS:
#: "inverse": a measurement misfit, with `residual_norm(x) -> [B]` = ||y - A x||_2 per sample;
#: "log_prob": a log-probability log p(c | x) <= 0 (a classifier's label objective);
#: "reward": anything else (the default; also for an objective that declares no kind).
KINDS = ("inverse", "log_prob", "reward")


def objective_kind(objective) -> str:
    """The objective's declared `kind` ("reward" when it declares none); ValueError naming the allowed kinds
    for anything else, and for an "inverse" objective without `residual_norm`."""
    kind = getattr(objective, "kind", "reward")
    name = getattr(objective, "name", "") or type(objective).__name__
    if kind not in KINDS:
        raise ValueError(f"objective {name!r}: kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "inverse" and not callable(getattr(objective, "residual_norm", None)):
        raise ValueError(f"objective {name!r} declares kind 'inverse' but has no residual_norm(x) -> [B] "
                         "(||y - A x||_2 per sample)")
    return kind


def constructor_params(cls) -> dict | None:
    """{keyword: default} of the objective class `cls` as it is built, `cls(task, **params)`: its constructor's
    keywords after `task` (inspect.Parameter.empty for one without a default); None when it takes **kwargs or
    its signature cannot be read (any keyword then passes)."""
    try:
        sig = list(inspect.signature(cls).parameters.values())[1:]          # after `task`
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig):
        return None
    return {p.name: p.default for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class Objective(nn.Module):
    """r(x) -> Tensor[B]; one sample's reward never depends on another's.

    `optimum` is sup_x r(x) (None when unbounded); `optimum_on_support` is the sup over the
    data's support (the subspace span(A), the sphere), so a report can show both gaps.

    Objectives with per-chain parameters (a target class or a ground-truth image per chain) read
    row j of a batch as chain j; after `for_chains(n)`, a batch of k n rows is read as k stacked
    copies of the n chains (row j is chain j mod n, as `torch.cat([x] * k)` stacks them).

    A registered objective (benchmark.objectives: a built-in or a plug-in) is built from its task as
    `cls(task, **params)`: its constructor's keywords after `task` are its parameters, their defaults its
    defaults (`param_defaults`); `check_params` refuses bad values before anything is built; fixed randomness
    comes from `task.generator(...)`, so every cell sees the same problem. The classes below whose
    constructors take arrays (Quadratic, Inpaint, ...) are the rewards those are built from.
    """

    #: What a config calls the objective (a built-in's class attribute; a plug-in may set it when built).
    name: str = ""
    #: The tasks (benchmark.tasks.TASKS names) the objective applies to; empty: any task (plug-ins only).
    tasks: tuple[str, ...] = ()
    #: The task's pre-trained networks (Task.networks names) building the objective loads, besides the denoiser.
    needs_networks: tuple[str, ...] = ()
    #: One of KINDS; an "inverse" objective also defines residual_norm(x) -> [B].
    kind: str = "reward"
    optimum: float | None = None
    optimum_on_support: float | None = None
    #: Methods besides forward that cost an objective evaluation (and a gradient when differentiated);
    #: CountingObjective counts them like forward.
    counted_methods: tuple[str, ...] = ()
    #: Chains per round, set by `for_chains`; None: row j of a batch is chain j.
    chains: int | None = None
    #: The objective's own metrics, which way each is better ("higher", "lower" or a target value), for
    #: objectives whose task measures them (e.g. `calibration`); a task includes its objectives' in its
    #: `metric_directions`, and the report also reads a plug-in objective's from here.
    metric_directions: dict[str, str | float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> dict:
        """The objective's parameters as resolved (defaults filled in), recorded with the results."""
        return {}

    @classmethod
    def param_defaults(cls) -> dict:
        """The parameters `cls(task, **params)` takes and their defaults, from its constructor's signature."""
        return constructor_params(cls) or {}

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        """Raise ValueError for parameter values the objective would refuse, without building it (no data, no
        networks): what a cell spec and the sweep ask before any job runs. `params`: every parameter, defaults
        filled in; `task`: the task's class. Checks that need the built task (an image count, a shape) come when
        the objective is built."""

    def for_chains(self, n: int) -> "Objective":
        if n < 1:
            raise ValueError(f"objective {self.name!r}: chains must be >= 1, got {n}")
        self.chains = n
        return self

    def chain_index(self, B: int, L: int, device) -> torch.Tensor:
        """Which of L per-chain entries each row of a batch of B uses: chain i takes entry i mod L. [B]"""
        n = self.chains or B
        if L > 1 and B % n:
            raise ValueError(f"objective {self.name!r} has per-chain parameters for {n} chains; a batch of {B} "
                             f"rows is neither the chains nor stacked copies of them (row j is chain j mod {n})")
        return torch.arange(B, device=device) % n % L
