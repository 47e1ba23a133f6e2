"""Gaussian deblurring: A x = k * x, a normalised Gaussian blur of each channel; r(x) = -||y - A x||_2.

The blur of DPS's Gaussian-deblurring experiments (Chung et al. 2023: a 61x61 kernel of standard
deviation 3.0 on 256 px images, reflection padding): here the kernel is separable,
k(i) proportional to exp(-i^2 / (2 blur_sigma^2)) for i = -K//2 .. K//2, K = `kernel_size` (odd;
None: 2 ceil(3 blur_sigma) + 1, which holds 99.7 % of the mass per axis), summing to 1, applied per
channel with reflection padding so A x has x's shape. Reflection needs K // 2 < min(H, W).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from benchmark.objectives.inverse import InverseProblem


def default_kernel_size(blur_sigma: float) -> int:
    """2 ceil(3 sigma) + 1: the odd kernel holding +-3 standard deviations."""
    return 2 * math.ceil(3 * blur_sigma) + 1


def check_blur(blur_sigma, kernel_size, shape: tuple[int, ...] | None = None) -> None:
    """blur_sigma a finite number > 0, kernel_size None or an odd integer >= 1 (and, given an image
    shape (C, H, W), smaller than twice its sides, for reflection padding)."""
    if not (isinstance(blur_sigma, (int, float)) and not isinstance(blur_sigma, bool) and math.isfinite(blur_sigma)
            and blur_sigma > 0):
        raise ValueError(f"objective 'deblur': blur_sigma must be a finite number > 0, got {blur_sigma!r}")
    if kernel_size is not None and (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)
                                    or kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(f"objective 'deblur': kernel_size must be None or an odd integer >= 1, got {kernel_size!r}")
    if shape is not None:
        K = kernel_size or default_kernel_size(blur_sigma)
        if K // 2 >= min(shape[-2:]):
            raise ValueError(f"objective 'deblur': kernel_size {K} is too large for {shape[-2]}x{shape[-1]} images "
                             f"(reflection padding needs kernel_size // 2 < {min(shape[-2:])})")


def gaussian_kernel_1d(blur_sigma: float, kernel_size: int) -> torch.Tensor:
    """The normalised 1-D Gaussian [kernel_size]."""
    i = torch.arange(kernel_size, dtype=torch.get_default_dtype()) - kernel_size // 2
    k = torch.exp(-i ** 2 / (2 * blur_sigma ** 2))
    return k / k.sum()


class Deblur(InverseProblem):
    name = "deblur"

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float = 0.05, image: int | str = "all",
                 blur_sigma: float = 3.0, kernel_size: int | None = None):
        check_blur(blur_sigma, kernel_size, tuple(x_star.shape))
        self.blur_sigma = float(blur_sigma)
        self.kernel_size = kernel_size or default_kernel_size(blur_sigma)
        super().__init__(x_star, noise, sigma_y, image, kernel=gaussian_kernel_1d(self.blur_sigma, self.kernel_size))

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        """k * x per channel, separable, reflection-padded: [B, C, H, W] -> [B, C, H, W]."""
        C, K = x.shape[1], self.kernel_size
        k = self.kernel.to(x.device, x.dtype)
        x = F.pad(x, (K // 2,) * 4, mode="reflect")
        x = F.conv2d(x, k.view(1, 1, K, 1).expand(C, 1, K, 1), groups=C)
        return F.conv2d(x, k.view(1, 1, 1, K).expand(C, 1, 1, K), groups=C)

    def params(self) -> dict:
        return super().params() | {"blur_sigma": self.blur_sigma, "kernel_size": self.kernel_size}
