"""Super-resolution: A x = the 2x2 average pooling of x (8x8 -> 4x4); r(x) = -||y - A x||_2.

Average pooling is the down-sampling operator of DPS's super-resolution experiments (their
bicubic x4 on 256 px; at 8 px a 2x box filter is the sensible analogue).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from benchmark.objectives.inverse import InverseProblem
from benchmark.objectives.operator import per_sample


class SuperRes(InverseProblem):
    name = "superres"
    factor = 2

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float = 0.05, image: int | str = "all"):
        super().__init__(x_star, noise, sigma_y, image)

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)

    def AT(self, v: torch.Tensor) -> torch.Tensor:
        """A^T v: each low-resolution pixel spread over its f x f block, divided by f^2."""
        return F.interpolate(v, scale_factor=self.factor, mode="nearest") / self.factor ** 2

    def A_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """A^+ = f^2 A^T (A A^T = I / f^2): nearest-neighbour up-sampling."""
        return F.interpolate(v, scale_factor=self.factor, mode="nearest")

    def solve(self, v: torch.Tensor, a, b) -> torch.Tensor:
        """(a A A^T + b I)^{-1} v = v / (a / f^2 + b)."""
        return v / (per_sample(a, v) / self.factor ** 2 + per_sample(b, v))
