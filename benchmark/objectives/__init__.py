"""Objectives: rewards r(x) -> [B] to maximise, components built from their task, built-in and plug-in alike.

One protocol (benchmark.objectives.base.Objective): a subclass of `Objective` with a class attribute `tasks` (the
task names it applies to; a plug-in's empty tuple: any task), built as `cls(task, **params)`, so its constructor's
keywords after `task` are its parameters (the allowed names and their defaults), `check_params` refuses bad
values before anything is built, and its fixed randomness comes from `task.generator(...)`.

BUILTIN_OBJECTIVES lists the built-ins, one line each (`module:Class`, imported on first use, so that a task's
own objectives may live in its package); a built-in's class attribute `name` is what a config calls it, and a
task offers the built-ins whose `tasks` name it (`Task.objectives`, in this order). OBJECTIVES holds the
plug-ins: entry points of group `guidebench.objectives` (the entry point's name is the objective's) or
`package.module:Class` import paths. `Task.objective(name, params)` builds either (`make_objective`).
"""

from benchmark.objectives.base import Objective, constructor_params
from benchmark.objectives.gaussian_inverse import GaussianInverse
from benchmark.objectives.inpaint import Inpaint
from benchmark.objectives.label import Label
from benchmark.objectives.linear import Linear
from benchmark.objectives.negnorm import NegNorm
from benchmark.objectives.quadratic import Quadratic
from benchmark.objectives.reward import FeatureReward
from benchmark.objectives.superres import SuperRes
from benchmark.registry import Registry, import_path

#: The built-in objectives, one line each: `module:Class` of an Objective subclass naming its `tasks` and `name`.
BUILTIN_OBJECTIVES: tuple[str, ...] = (
    "benchmark.objectives.subspace:QuadraticOn",
    "benchmark.objectives.subspace:QuadraticOff",
    "benchmark.objectives.subspace:NegNormOnes",
    "benchmark.objectives.subspace:NegNormRandom",
    "benchmark.objectives.subspace:SubspaceGaussianInverse",
    "benchmark.objectives.linear:SphereLinear",
    "benchmark.objectives.digits:DigitsLabel",
    "benchmark.objectives.digits:DigitsInpaint",
    "benchmark.objectives.digits:DigitsSuperRes",
    "benchmark.objectives.digits:DigitsReward",
    "benchmark.tasks.images.objectives:MaskInpaint",
    "benchmark.tasks.images.objectives:FactorSuperRes",
    "benchmark.tasks.images.objectives:ImagesDeblur",
    "benchmark.tasks.images.objectives:UserReward",
    "benchmark.tasks.images.objectives:RewardModelObjective",
    "benchmark.tasks.mixture.objectives:MixtureInverse",
    "benchmark.tasks.mixture.objectives:MixtureTilt",
    "benchmark.tasks.mixture.objectives:MixtureBetween",
    "benchmark.tasks.latent:LatentRewardModel",
    "benchmark.tasks.latent:LatentUserReward",
)

OBJECTIVES: Registry[type] = Registry("objective", "guidebench.objectives", {})


def builtin_classes() -> list[type[Objective]]:
    """The classes BUILTIN_OBJECTIVES names, in its order; ValueError for an entry that is not an Objective
    subclass with a `name` and `tasks`, or for two entries with one name for the same task."""
    classes, seen = [], {}
    for path in BUILTIN_OBJECTIVES:
        cls = import_path(path)
        if not (isinstance(cls, type) and issubclass(cls, Objective) and cls.name and cls.tasks):
            raise ValueError(f"built-in objective {path!r} must be an Objective subclass with class attributes "
                             "`name` and `tasks` (the tasks it applies to)")
        for task in cls.tasks:
            if (task, cls.name) in seen:
                raise ValueError(f"built-in objectives {seen[task, cls.name]!r} and {path!r} are both objective "
                                 f"{cls.name!r} of task {task!r}")
            seen[task, cls.name] = path
        classes.append(cls)
    return classes


def builtin_objectives(task_name: str) -> dict[str, type[Objective]]:
    """name -> class of the built-in objectives of task `task_name` (those whose `tasks` name it), in order."""
    return {cls.name: cls for cls in builtin_classes() if task_name in cls.tasks}


def applies_to(cls: type, task_name: str) -> bool:
    """Whether the plug-in objective class `cls` applies to task `task_name` (its `tasks`; empty: any)."""
    tasks = tuple(getattr(cls, "tasks", ()) or ())
    return not tasks or task_name in tasks


def plugin_objectives(task_name: str) -> list[str]:
    """The names of the registered plug-in objectives that apply to task `task_name`."""
    return [n for n, cls in OBJECTIVES.items() if applies_to(cls, task_name)]


def objective_class(task: type, name: str) -> type | None:
    """The class objective `name` of the task class `task` is built from: the task's built-in of that name, else a
    plug-in that applies to it; None for an objective the task lists itself and builds in its `_make_objective`.
    ValueError naming the objectives allowed for the task when the name is unknown or the plug-in does not apply."""
    own = builtin_objectives(task.name)
    if name in own:
        return own[name]
    listed = list(task.objectives)
    if name in listed:
        return None
    allowed = listed + [n for n in plugin_objectives(task.name) if n not in listed]
    cls = OBJECTIVES[name] if ":" in name else OBJECTIVES.get(name)     # an import path says why it failed
    if cls is None:
        raise ValueError(f"task {task.name!r} has no objective {name!r}; allowed: {allowed}")
    if not isinstance(cls, type):
        raise ValueError(f"objective {name!r} resolves to {cls!r}, not a class built as cls(task, **params)")
    if not applies_to(cls, task.name):
        raise ValueError(f"objective {name!r} ({_where(cls)}) applies to tasks {list(cls.tasks)}, not to task "
                         f"{task.name!r}; allowed for task {task.name!r}: {allowed}")
    return cls


def check_param_names(cls: type, name: str, task_name: str, params: dict) -> None:
    """ValueError for a parameter the objective's constructor `cls(task, ...)` does not take."""
    names = constructor_params(cls)
    unknown = [] if names is None else sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"objective {name!r} of task {task_name!r} has no parameter(s) {unknown}; "
                         f"allowed: {sorted(names) or 'none'}")


def check_objective(task: type, name: str, params: dict, task_seed: int = 0) -> None:
    """ValueError for an objective the task class `task` does not offer, a parameter it does not take or a value
    it would refuse (the class's `check_params`), without building it."""
    cls = objective_class(task, name)
    params = dict(params)
    if cls is None:                                   # the task's own list, built by its _make_objective
        task._check_param_names(name, params)
        task.check_objective_params(name, params, task_seed)
        return
    check_param_names(cls, name, task.name, params)
    check = getattr(cls, "check_params", None)
    if check is not None:
        check((constructor_params(cls) or {}) | params, task, task_seed)


def make_objective(task, name: str, params: dict | None = None):
    """The objective `name` of `task` with its parameters `params`, `cls(task, **params)` (what `Task.objective`
    returns): ValueError naming the objectives allowed for the task, or the parameters the objective takes."""
    params = dict(params or {})
    cls = objective_class(type(task), name)
    if cls is None:
        type(task)._check_param_names(name, params)
        return task._make_objective(name, **params)
    check_param_names(cls, name, task.name, params)
    try:
        return cls(task, **params)
    except TypeError as exc:
        raise ValueError(f"objective {name!r} ({_where(cls)}) of task {task.name!r}: {exc}") from exc


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


__all__ = ["BUILTIN_OBJECTIVES", "OBJECTIVES", "Objective", "FeatureReward", "GaussianInverse", "Inpaint", "Label",
           "Linear", "NegNorm", "Quadratic", "SuperRes", "applies_to", "builtin_objectives", "check_objective",
           "make_objective", "objective_class", "plugin_objectives"]
