"""Image metrics: Frechet distance, PSNR, SSIM and sample diversity. Per-sample values are [B].

- Frechet distance (Heusel et al. 2017): the 2-Wasserstein distance between Gaussians fitted to two
  feature sets, FD = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2}), computed in
  float64 with tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(S_1^{1/2} S_2 S_1^{1/2})) (the eigenvalues of
  a symmetric PSD matrix: no non-symmetric matrix square root). The plug-in estimator with sample
  means and unbiased covariances is biased upwards, by roughly tr(S_1)/n_1 + tr(S_2)/n_2 when the
  sets are independent (Chong & Forsyth 2020), so FDs are comparable only at equal sample sizes,
  and with few samples (tens, as in a cell) they rank methods rather than measure a distance.
- PSNR = 10 log10(L^2 / MSE) with L the data range (2 for images in [-1, 1]); MSE floored at 1e-10.
- SSIM (Wang et al. 2004): the mean over local windows of
  ((2 mu_x mu_y + C_1)(2 s_xy + C_2)) / ((mu_x^2 + mu_y^2 + C_1)(s_x^2 + s_y^2 + C_2)),
  C_1 = (0.01 L)^2, C_2 = (0.03 L)^2, local (biased) moments under a Gaussian window. Their 11x11,
  sigma 1.5 window is larger than an 8x8 image; here it is 5x5 with sigma 1, applied without padding
  (a 4x4 map of windows on 8x8), so no window sees padded pixels.
- Diversity: the mean pairwise Euclidean distance between samples.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: SSIM's Gaussian window (size, sigma) for 8x8 images.
SSIM_WINDOW = (5, 1.0)


def _sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    lam, V = torch.linalg.eigh(S)
    return (V * lam.clamp_min(0).sqrt()) @ V.T


def frechet_distance_from_stats(mu1: torch.Tensor, S1: torch.Tensor, mu2: torch.Tensor, S2: torch.Tensor) -> float:
    """FD between N(mu1, S1) and N(mu2, S2) (float64)."""
    mu1, S1, mu2, S2 = (a.double() for a in (mu1, S1, mu2, S2))
    r1 = _sqrtm_psd(S1)
    M = r1 @ S2 @ r1
    tr_sqrt = torch.linalg.eigvalsh((M + M.T) / 2).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + S1.trace() + S2.trace() - 2 * tr_sqrt)


def feature_stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, unbiased covariance) of features [n, d], n >= 2, in float64."""
    if f.shape[0] < 2:
        raise ValueError(f"a Frechet distance needs at least 2 samples per set, got {f.shape[0]}")
    f = f.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """FD between the Gaussians fitted to feature sets f1 [n1, d] and f2 [n2, d]."""
    return frechet_distance_from_stats(*feature_stats(f1), *feature_stats(f2))


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample: x, ref [B, ...] -> [B]."""
    mse = ((x - ref) ** 2).flatten(1).mean(-1).clamp_min(1e-10)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    k = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-k ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]                                           # [size, size], sums to 1


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: tuple[int, float] = SSIM_WINDOW
         ) -> torch.Tensor:
    """Structural similarity per sample: x, y [B, C, H, W] -> [B] (mean over channels and windows)."""
    size, sigma = window
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim expects two [B, C, H, W] tensors of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if min(x.shape[-2:]) < size:
        raise ValueError(f"ssim window {size} is larger than the image {tuple(x.shape[-2:])}")
    x, y = x.double(), y.double()
    C = x.shape[1]
    w = _gaussian_window(size, sigma, x.device, x.dtype).expand(C, 1, size, size)

    def blur(a):
        return F.conv2d(a, w, groups=C)                                      # valid: no padding

    mu_x, mu_y = blur(x), blur(y)
    s_xx = blur(x * x) - mu_x ** 2
    s_yy = blur(y * y) - mu_y ** 2
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2))
    return s.flatten(1).mean(-1).to(torch.get_default_dtype())


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean ||x_i - x_j|| over pairs i < j of x [B, ...]; nan for fewer than 2 samples."""
    if x.shape[0] < 2:
        return math.nan
    return float(torch.pdist(x.flatten(1).double()).mean())
