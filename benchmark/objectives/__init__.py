"""Objectives: rewards r(x) -> [B] to maximise. Which objective a task offers is the task's business.

OBJECTIVES holds the objectives that are not a task's own: plug-ins (entry points of group
`guidebench.objectives`, or `package.module:Class` import paths). A plug-in objective is a class with
a class attribute `tasks: tuple[str, ...]` (the task names it applies to; empty: any task), built as
`cls(task, **params)` and behaving like `Objective` (an nn.Module r(x) -> [B], `params()`, optima).
`Task.objective(name, params)` falls back to it for a name that is not the task's own.
"""

import inspect

from benchmark.objectives.base import Objective
from benchmark.objectives.gaussian_inverse import GaussianInverse
from benchmark.objectives.inpaint import Inpaint
from benchmark.objectives.label import Label
from benchmark.objectives.linear import Linear
from benchmark.objectives.negnorm import NegNorm
from benchmark.objectives.quadratic import Quadratic
from benchmark.objectives.reward import FeatureReward
from benchmark.objectives.superres import SuperRes
from benchmark.registry import Registry

OBJECTIVES: Registry[type] = Registry("objective", "guidebench.objectives", {})


def applies_to(cls: type, task_name: str) -> bool:
    """Whether the plug-in objective class `cls` applies to task `task_name` (its `tasks`; empty: any)."""
    tasks = tuple(getattr(cls, "tasks", ()) or ())
    return not tasks or task_name in tasks


def plugin_objectives(task_name: str) -> list[str]:
    """The names of the registered plug-in objectives that apply to task `task_name`."""
    return [n for n, cls in OBJECTIVES.items() if applies_to(cls, task_name)]


def check_plugin_params(cls, name: str, task_name: str, params: dict) -> None:
    """ValueError for a parameter the plug-in objective's constructor `cls(task, ...)` does not take."""
    try:
        sig = list(inspect.signature(cls).parameters.values())[1:]          # after `task`
    except (TypeError, ValueError):
        return
    if not any(p.kind is p.VAR_KEYWORD for p in sig):
        names = [p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"objective {name!r} of task {task_name!r} has no parameter(s) {unknown}; "
                             f"allowed: {sorted(names) or 'none'}")


def make_plugin_objective(task, name: str, params: dict | None = None):
    """The plug-in objective `name` of `task`, `cls(task, **params)` (what `Task.objective` falls back to
    for a name that is not the task's own): ValueError naming the objectives allowed for the task when
    the name is unknown or the plug-in does not apply to the task, or naming the parameters it takes."""
    params = dict(params or {})
    own = list(task.objectives)
    allowed = own + [n for n in plugin_objectives(task.name) if n not in own]
    cls = OBJECTIVES[name] if ":" in name else OBJECTIVES.get(name)     # an import path says why it failed
    if cls is None:
        raise ValueError(f"task {task.name!r} has no objective {name!r}; allowed: {allowed}")
    if not isinstance(cls, type):
        raise ValueError(f"objective {name!r} resolves to {cls!r}, not a class built as cls(task, **params)")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not applies_to(cls, task.name):
        raise ValueError(f"objective {name!r} ({where}) applies to tasks {list(cls.tasks)}, not to task "
                         f"{task.name!r}; allowed for task {task.name!r}: {allowed}")
    check_plugin_params(cls, name, task.name, params)
    try:
        return cls(task, **params)
    except TypeError as exc:
        raise ValueError(f"objective {name!r} ({where}) of task {task.name!r}: {exc}") from None


__all__ = ["OBJECTIVES", "Objective", "FeatureReward", "GaussianInverse", "Inpaint", "Label", "Linear", "NegNorm",
           "Quadratic", "SuperRes", "applies_to", "make_plugin_objective", "plugin_objectives"]
