"""What every objective offers: a per-sample reward to MAXIMISE and its known optima."""

from __future__ import annotations

import torch
from torch import nn


class Objective(nn.Module):
    """r(x) -> Tensor[B]; one sample's reward never depends on another's.

    `optimum` is sup_x r(x) (None when unbounded); `optimum_on_support` is the sup over the
    data's support (the subspace span(A), the sphere), so a report can show both gaps.
    """

    name: str = ""
    optimum: float | None = None
    optimum_on_support: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
