"""r(x) = top - scale * ||x - b|| (Guo et al. 2024, Sec. 6.1: top = 5, scale = 0.5).

Maximum `top` at x = b; over span(A) the best is x = P b, giving top - scale * ||b - P b||.
"""

from __future__ import annotations

import torch

from benchmark.objectives.base import Objective


class NegNorm(Objective):
    def __init__(self, name: str, b: torch.Tensor, support_basis: torch.Tensor | None = None,
                 top: float = 5.0, scale: float = 0.5):
        super().__init__()
        self.name = name
        self.register_buffer("b", b.float())
        self.top, self.scale = top, scale
        self.optimum = top
        if support_basis is not None:
            b_perp = b - support_basis @ (support_basis.T @ b)
            self.optimum_on_support = top - scale * float(torch.linalg.vector_norm(b_perp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top - self.scale * torch.linalg.vector_norm(x - self.b, dim=-1)
