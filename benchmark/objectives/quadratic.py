"""r(x) = top - (theta^T x - target)^2 (Guo et al. 2024, Sec. 6.1: top = 10, target = 3).

The global maximum `top` is reached on the hyperplane theta^T x = target; on span(A) it is
reached as long as A^T theta != 0, but far out in the prior's tail when theta is mostly off it.
"""

from __future__ import annotations

import torch

from benchmark.objectives.base import Objective


class Quadratic(Objective):
    def __init__(self, name: str, theta: torch.Tensor, support_basis: torch.Tensor | None = None,
                 target: float = 3.0, top: float = 10.0):
        super().__init__()
        self.name = name
        self.register_buffer("theta", theta.float())
        self.target, self.top = target, top
        self.optimum = top
        if support_basis is not None:
            # theta has a component in the support unless it vanishes relative to |theta| (float32 round-off)
            on = float(torch.linalg.vector_norm(support_basis.T @ theta)) > 1e-6 * float(torch.linalg.vector_norm(theta))
            self.optimum_on_support = top if on else top - target ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top - (x @ self.theta - self.target) ** 2
