"""Tasks: data distributions with their objectives. One file per task, one line here."""

from benchmark.tasks.base import Task
from benchmark.tasks.digits import DigitsTask
from benchmark.tasks.sphere import SphereTask
from benchmark.tasks.subspace import SubspaceTask

TASKS: dict[str, type[Task]] = {"subspace": SubspaceTask, "sphere": SphereTask, "digits": DigitsTask}


def make_task(name: str, task_seed: int = 0, models_dir: str | None = None) -> Task:
    """The task `name`; `models_dir` (the folder of pre-trained networks) reaches the tasks that load
    networks from it (`uses_models`) and is ignored by the others."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {sorted(TASKS)}")
    if TASKS[name].uses_models:
        return TASKS[name](task_seed=task_seed, models_dir=models_dir)
    return TASKS[name](task_seed=task_seed)


__all__ = ["TASKS", "Task", "make_task", "DigitsTask", "SphereTask", "SubspaceTask"]
