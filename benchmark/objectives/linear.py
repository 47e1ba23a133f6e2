"""r(x) = theta^T x (Guo et al. 2024, the sphere experiment): unbounded in R^D, ||theta|| on the unit sphere."""

from __future__ import annotations

import torch

from benchmark.objectives.base import Objective


class Linear(Objective):
    def __init__(self, name: str, theta: torch.Tensor, optimum_on_support: float | None = None):
        super().__init__()
        self.name = name
        self.register_buffer("theta", theta.float())
        self.optimum = None
        self.optimum_on_support = optimum_on_support

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.theta


class SphereLinear(Linear):
    """The sphere task's objective: theta a unit vector drawn from the task seed; optimum 1 on the unit sphere."""

    name = "linear"
    tasks = ("sphere",)

    def __init__(self, task):
        theta = torch.randn(task.dim, generator=task.generator("objective", self.name))
        super().__init__(self.name, theta / torch.linalg.vector_norm(theta), optimum_on_support=1.0)
