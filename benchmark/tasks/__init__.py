"""Tasks: data distributions with their objectives. One file per task, one line here."""

from benchmark.tasks.base import Task
from benchmark.tasks.sphere import SphereTask
from benchmark.tasks.subspace import SubspaceTask

TASKS: dict[str, type[Task]] = {"subspace": SubspaceTask, "sphere": SphereTask}


def make_task(name: str, task_seed: int = 0) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {sorted(TASKS)}")
    return TASKS[name](task_seed=task_seed)


__all__ = ["TASKS", "Task", "make_task", "SphereTask", "SubspaceTask"]
