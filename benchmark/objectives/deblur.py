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
from benchmark.objectives.operator import PINV_RCOND, per_sample


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


def blur_matrix(n: int, k: torch.Tensor) -> torch.Tensor:
    """The [n, n] matrix of the reflection-padded 1-D convolution with k (odd length < 2n) along an axis of n."""
    K = len(k)
    eye = torch.eye(n, dtype=torch.float64).view(n, 1, n, 1)
    out = F.conv2d(F.pad(eye, (0, 0, K // 2, K // 2), mode="reflect"), k.double().view(1, 1, K, 1))
    return out[:, 0, :, 0].T


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

    # The linear measurement in closed form: per channel A X = K_H X K_W^T, K = U diag(s) V^T (SVD of each axis's
    # reflection-padded blur matrix), so A = (U_H (x) U_W) diag(s_H s_W^T) (V_H (x) V_W)^T (DDRM's separable form).

    def _svd(self):
        cache = getattr(self, "_svd_cache", None)
        if cache is None or cache[0] is not self.kernel:
            H, W = self.x_star.shape[-2:]
            U1, s1, V1h = torch.linalg.svd(blur_matrix(H, self.kernel))
            U2, s2, V2h = torch.linalg.svd(blur_matrix(W, self.kernel))
            S = torch.outer(s1, s2)
            cache = (self.kernel, U1, V1h.T, U2, V2h.T, S)
            object.__setattr__(self, "_svd_cache", cache)
        return cache[1:]

    def _factors(self, v: torch.Tensor):
        return (t.to(v.device, v.dtype) for t in self._svd())

    def AT(self, v: torch.Tensor) -> torch.Tensor:
        """A^T V = K_H^T V K_W per channel."""
        U1, V1, U2, V2, S = self._factors(v)
        return V1 @ (S * (U1.T @ v @ U2)) @ V2.T

    def A_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """A^+ V = V_H (S^+ * (U_H^T V U_W)) V_W^T, singular values below PINV_RCOND x the largest set to 0."""
        U1, V1, U2, V2, S = self._factors(v)
        S_pinv = torch.where(S > PINV_RCOND * S.max(), 1 / S, torch.zeros_like(S))
        return V1 @ (S_pinv * (U1.T @ v @ U2)) @ V2.T

    def solve(self, v: torch.Tensor, a, b) -> torch.Tensor:
        """(a A A^T + b I)^{-1} V = U_H ((U_H^T V U_W) / (a S^2 + b)) U_W^T."""
        U1, _, U2, _, S = self._factors(v)
        return U1 @ ((U1.T @ v @ U2) / (per_sample(a, v) * S ** 2 + per_sample(b, v))) @ U2.T
