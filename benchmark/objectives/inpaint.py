"""Inpainting: A x = M * x, M a binary mask of the observed pixels; r(x) = -||y - M x||_2.

Masks for 8x8 images: "centre" (default) hides the central 4x4 square (rows and columns 2..5,
16 of 64 pixels), the box inpainting of DPS / TFG at this size; "lower_half" hides rows 4..7,
a harder and more ambiguous completion. The noise falls on observed pixels only (y = M (x* + sigma_y n)).
"""

from __future__ import annotations

import torch

from benchmark.objectives.inverse import InverseProblem
from benchmark.objectives.operator import per_sample

MASKS = ("centre", "lower_half")


def inpaint_mask(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The observed-pixel mask M: [C, H, W] of 0/1."""
    if kind not in MASKS:
        raise ValueError(f"objective 'inpaint': unknown mask {kind!r}; allowed: {list(MASKS)}")
    C, H, W = shape
    m = torch.ones(shape)
    if kind == "centre":
        m[:, H // 4:H - H // 4, W // 4:W - W // 4] = 0
    else:
        m[:, H // 2:, :] = 0
    return m


class Inpaint(InverseProblem):
    name = "inpaint"

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float = 0.05, image: int | str = "all",
                 mask: str = "centre"):
        m = inpaint_mask(mask, tuple(x_star.shape[1:]))
        super().__init__(x_star, noise * m, sigma_y, image, mask=m)
        self.mask_kind = mask

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.device)

    def AT(self, v: torch.Tensor) -> torch.Tensor:
        """A^T = M (a diagonal 0/1 operator is its own adjoint)."""
        return v * self.mask.to(v.device)

    def A_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """A^+ = M (M is a projection: M M M = M)."""
        return v * self.mask.to(v.device)

    def solve(self, v: torch.Tensor, a, b) -> torch.Tensor:
        """(a M + b I)^{-1} v, element-wise (A A^T = M)."""
        return v / (per_sample(a, v) * self.mask.to(v.device) + per_sample(b, v))

    def params(self) -> dict:
        return super().params() | {"mask": self.mask_kind}
