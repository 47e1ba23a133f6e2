"""Super-resolution: A x = the 2x2 average pooling of x (8x8 -> 4x4); r(x) = -||y - A x||_2.

Average pooling is the down-sampling operator of DPS's super-resolution experiments (their
bicubic x4 on 256 px; at 8 px a 2x box filter is the sensible analogue).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from benchmark.objectives.inverse import InverseProblem


class SuperRes(InverseProblem):
    name = "superres"
    factor = 2

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float = 0.05, image: int | str = "all"):
        super().__init__(x_star, noise, sigma_y, image)

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)
