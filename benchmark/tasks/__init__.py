"""Tasks: data distributions with their objectives. One file per task, one line here.

TASKS is a Registry (benchmark/registry.py): the built-ins below, then the entry points of group
`guidebench.tasks` of installed plug-ins, then `package.module:Class` import paths (a Task subclass).
"""

from benchmark.registry import Registry
from benchmark.tasks.base import Task
from benchmark.tasks.digits import DigitsTask
from benchmark.tasks.images import ImagesTask
from benchmark.tasks.latent import LatentTask
from benchmark.tasks.mixture import MixtureTask
from benchmark.tasks.sphere import SphereTask
from benchmark.tasks.subspace import SubspaceTask

TASKS: Registry[type[Task]] = Registry("task", "guidebench.tasks",
                                       {"subspace": SubspaceTask, "sphere": SphereTask, "digits": DigitsTask,
                                        "images": ImagesTask, "mixture": MixtureTask, "latent": LatentTask})


def task_class(name: str) -> type[Task]:
    """The class of task `name` (a built-in, a plug-in's entry point or `package.module:Class`)."""
    return TASKS.resolve_subclass(name, Task)


def check_task_params(name: str, params: dict) -> None:
    """ValueError for a parameter task `name` does not take (its constructor's keywords)."""
    import inspect

    allowed = [p for p in inspect.signature(task_class(name).__init__).parameters
               if p not in ("self", "task_seed", "models_dir")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"task {name!r} has no parameter(s) {unknown}; allowed: {allowed or 'none'}")


def make_task(name: str, task_seed: int = 0, models_dir: str | None = None, **params) -> Task:
    """The task `name` with its parameters `params` (e.g. the images task's `folder`); `models_dir`
    (the folder of pre-trained networks) reaches the tasks that load networks from it (`uses_models`)
    and is ignored by the others. A parameter the task does not take is a ValueError naming the allowed."""
    cls = task_class(name)
    check_task_params(name, params)
    if cls.uses_models:
        return cls(task_seed=task_seed, models_dir=models_dir, **params)
    return cls(task_seed=task_seed, **params)


__all__ = ["TASKS", "Task", "check_task_params", "make_task", "task_class", "DigitsTask", "ImagesTask", "LatentTask",
           "SphereTask", "SubspaceTask"]
