"""Image metrics: Frechet distance, PSNR, SSIM and sample diversity. Per-sample values are [B].

Range convention. Models see images in [-1, 1]; PSNR and SSIM are measured, as usual, on images in
[0, 1] with data range L = 1: `psnr` and `ssim` take images in `value_range` (default (-1, 1), the
models' range) and map them to [0, 1] by u = (x - lo) / (hi - lo) before measuring. PSNR does not
depend on this affine map (the MSE and L^2 scale alike); SSIM does, through its luminance term, so
SSIM on [-1, 1] with L = 2 is NOT the usual SSIM (noisy digits: 0.72 on [-1, 1] vs 0.93 on [0, 1]).

- Frechet distance (Heusel et al. 2017): the 2-Wasserstein distance between Gaussians fitted to two
  feature sets, FD = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2}), computed in
  float64 with tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(S_1^{1/2} S_2 S_1^{1/2})) (the eigenvalues of
  a symmetric PSD matrix: no non-symmetric matrix square root). The plug-in estimator with sample
  means and unbiased covariances is biased upwards, by roughly tr(S_1)/n_1 + tr(S_2)/n_2 when the
  sets are independent (Chong & Forsyth 2020), so FDs are comparable only at equal sample sizes,
  and with few samples (tens, as in a cell) they rank methods rather than measure a distance.
- PSNR = 10 log10(L^2 / MSE) on [0, 1] (L = 1), MSE over all pixels and channels of a sample.
  Identical images would give +inf: the MSE is floored at 1e-10, so PSNR is capped at
  PSNR_CAP = 100 dB (finite, so that means over chains stay finite).
- SSIM (Wang et al. 2004): on u, v in [0, 1], the mean over local windows (and channels) of
      SSIM(u, v) = ((2 mu_u mu_v + C_1)(2 s_uv + C_2)) / ((mu_u^2 + mu_v^2 + C_1)(s_u^2 + s_v^2 + C_2)),
  C_1 = (0.01 L)^2, C_2 = (0.03 L)^2, L = 1, with local biased moments (mu, s^2, s_uv) under a
  normalised Gaussian window applied without padding ("valid": no window sees padded pixels, as
  scikit-image's structural_similarity, which pads and then crops the border, also averages).
  Window: Wang et al.'s 11x11, sigma 1.5 on images of at least 11 px a side (equal to
  skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)); on smaller images (digits' 8x8) 5x5 with sigma 1
  (a 4x4 map of windows on 8x8).
- Diversity: the mean pairwise Euclidean distance between samples.

Standard metrics on user-provided local networks (benchmark.rewards.encoders loads them; the images task
measures them when configured, see benchmark.tasks.images.task):
- FID: `frechet_distance` of a feature network's features (Inception for the published FID; any local
  network here, so a figure is comparable only with the same network). Biased upward at small n (above).
  Equal to torchmetrics' FrechetInceptionDistance(feature=<the same module>) (tests/images/test_metrics.py).
- KID (Binkowski et al. 2018): the unbiased estimator of the squared MMD with the polynomial kernel
  k(a, b) = (a^T b / d + 1)^3, MMD^2_u = sum_{i != j} k(x_i, x_j) / (m(m-1)) + sum_{i != j} k(y_i, y_j) / (n(n-1))
  - 2 sum_{i,j} k(x_i, y_j) / (m n), over the whole sets (torchmetrics averages it over random subsets of
  equal size: the same value with one subset of all samples). Unbiased at any n >= 2 (it can be negative),
  so KIDs at different sample sizes are comparable; its variance grows as n falls.
- LPIPS (Zhang et al. 2018, eq. 1): d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} ||w_l * (f^l_hw(x) - f^l_hw(y))||^2,
  f^l a backbone's layer-l features normalised to unit length over channels, w_l >= 0 per channel, inputs
  shifted and scaled first (LPIPS's ScalingLayer). Written here (class LPIPS) because torchmetrics' LPIPS
  takes only its three torchvision backbones, needs torchvision and unpickles its weights; equal to
  torchmetrics' _LPIPS.forward on the same network and heads (tests). Per pair, no sample-size bias.
- CLIP score (Hessel et al. 2021, torchmetrics' scale): max(100 cos(E_I(x), E_T(c)), 0) per image
  (`clip_score`); torchmetrics clamps the batch mean instead of each image (the same whenever no image's
  cosine is negative). A mean of per-image values: unbiased, no sample-size bias beyond its variance.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: PSNR of identical images (the MSE floor 1e-10 at L = 1).
PSNR_CAP = 100.0
MSE_FLOOR = 1e-10
#: SSIM's Gaussian windows (size, sigma): Wang et al.'s, and the one for images under 11 px a side.
WANG_WINDOW = (11, 1.5)
SMALL_WINDOW = (5, 1.0)
#: The range models' images live in, which psnr and ssim map to [0, 1].
MODEL_RANGE = (-1.0, 1.0)


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


def to_unit_range(x: torch.Tensor, value_range: tuple[float, float] = MODEL_RANGE) -> torch.Tensor:
    """Images in `value_range` (lo, hi) -> [0, 1] in float64: (x - lo) / (hi - lo)."""
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    return (x.double() - lo) / (hi - lo)


def psnr(x: torch.Tensor, ref: torch.Tensor, value_range: tuple[float, float] = MODEL_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample, on [0, 1] (L = 1): x, ref [B, ...] in `value_range`
    -> [B]; identical images give PSNR_CAP (100 dB)."""
    if x.shape != ref.shape:
        raise ValueError(f"psnr expects two tensors of one shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    u, v = to_unit_range(x, value_range), to_unit_range(ref, value_range)
    mse = ((u - v) ** 2).flatten(1).mean(-1).clamp_min(MSE_FLOOR)
    return (10 * torch.log10(1.0 / mse)).clamp_max(PSNR_CAP).to(torch.get_default_dtype())


def ssim_window(H: int, W: int) -> tuple[int, float]:
    """The Gaussian window (size, sigma) SSIM uses on H x W images: Wang et al.'s 11x11, sigma 1.5 from
    11 px a side, else 5x5, sigma 1."""
    return WANG_WINDOW if min(H, W) >= WANG_WINDOW[0] else SMALL_WINDOW


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    k = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-k ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]                                           # [size, size], sums to 1


def ssim(x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = MODEL_RANGE,
         window: tuple[int, float] | None = None) -> torch.Tensor:
    """Structural similarity per sample on [0, 1] (L = 1, C_1 = 0.01^2, C_2 = 0.03^2): x, y [B, C, H, W]
    in `value_range` -> [B] (mean over channels and windows). `window` (size, sigma): None picks
    `ssim_window(H, W)`."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim expects two [B, C, H, W] tensors of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    size, sigma = window or ssim_window(*x.shape[-2:])
    if min(x.shape[-2:]) < size:
        raise ValueError(f"ssim window {size} is larger than the image {tuple(x.shape[-2:])}")
    u, v = to_unit_range(x, value_range), to_unit_range(y, value_range)
    C = u.shape[1]
    w = _gaussian_window(size, sigma, u.device, u.dtype).expand(C, 1, size, size)

    def blur(a):
        return F.conv2d(a, w, groups=C)                                      # valid: no padding

    mu_u, mu_v = blur(u), blur(v)
    s_uu = blur(u * u) - mu_u ** 2
    s_vv = blur(v * v) - mu_v ** 2
    s_uv = blur(u * v) - mu_u * mu_v
    L = 1.0
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    s = ((2 * mu_u * mu_v + c1) * (2 * s_uv + c2)) / ((mu_u ** 2 + mu_v ** 2 + c1) * (s_uu + s_vv + c2))
    return s.flatten(1).mean(-1).to(torch.get_default_dtype())


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean ||x_i - x_j|| over pairs i < j of x [B, ...]; nan for fewer than 2 samples."""
    if x.shape[0] < 2:
        return math.nan
    return float(torch.pdist(x.flatten(1).double()).mean())


# --- standard metrics on local networks (FID is frechet_distance above) -----------------------------

def polynomial_kernel(a: torch.Tensor, b: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0) -> torch.Tensor:
    """k(a_i, b_j) = (gamma a_i^T b_j + coef)^degree, gamma = 1/d by default: [m, d], [n, d] -> [m, n]."""
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    return (a @ b.T * gamma + coef) ** degree


def kernel_distance(f1: torch.Tensor, f2: torch.Tensor, degree: int = 3, gamma: float | None = None,
                    coef: float = 1.0) -> float:
    """KID: the unbiased squared MMD (Binkowski et al. 2018) between feature sets f1 [m, d] and f2 [n, d]
    (m, n >= 2) with the polynomial kernel, in float64 (see the module docstring)."""
    m, n = f1.shape[0], f2.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"a kernel distance needs at least 2 samples per set, got {m} and {n}")
    a, b = f1.double(), f2.double()
    k11, k22 = polynomial_kernel(a, a, degree, gamma, coef), polynomial_kernel(b, b, degree, gamma, coef)
    k12 = polynomial_kernel(a, b, degree, gamma, coef)
    within = (k11.sum() - k11.diagonal().sum()) / (m * (m - 1)) + (k22.sum() - k22.diagonal().sum()) / (n * (n - 1))
    return float(within - 2 * k12.mean())


class LPIPS(torch.nn.Module):
    """LPIPS (Zhang et al. 2018, eq. 1) on a pluggable backbone `net` (images -> list of feature maps
    [B, C_l, H_l, W_l]) with per-channel weights `lins` ([1, C_l, 1, 1] each, LPIPS's 1x1 convolutions),
    inputs in [-1, 1] shifted and scaled by (x - shift) / scale per channel (default LPIPS's). Grey images are
    repeated to three channels. forward(x, y) -> [B]."""

    def __init__(self, net: torch.nn.Module, lins, shift: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None):
        super().__init__()
        from benchmark.rewards.encoders import LPIPS_SCALE, LPIPS_SHIFT

        self.net = net
        self.lins = torch.nn.ParameterList(torch.nn.Parameter(w.detach().clone().reshape(1, -1, 1, 1),
                                                              requires_grad=False) for w in lins)
        shift = torch.tensor(LPIPS_SHIFT) if shift is None else shift
        scale = torch.tensor(LPIPS_SCALE) if scale is None else scale
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone())
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())

    @staticmethod
    def unit(f: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Features normalised to unit length over channels (LPIPS's normalize_tensor)."""
        return f / torch.sqrt(eps + f.square().sum(1, keepdim=True))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from benchmark.rewards.encoders import rgb

        fx = self.net((rgb(x) - self.shift) / self.scale)
        fy = self.net((rgb(y) - self.shift) / self.scale)
        if len(fx) != len(self.lins):
            raise ValueError(f"LPIPS: the network gives {len(fx)} layers, the heads weigh {len(self.lins)}")
        d = 0
        for a, b, w in zip(fx, fy, self.lins):
            d = d + ((self.unit(a) - self.unit(b)).square() * w).sum(1).mean((-2, -1))
        return d


def clip_score(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """CLIP score per image, max(100 cos(E_I, E_T), 0): embeddings [B, d] and [B, d] (or [1, d]) -> [B]."""
    cos = torch.nn.functional.cosine_similarity(image_embeds.double(), text_embeds.double(), dim=-1, eps=1e-12)
    return (100 * cos).clamp_min(0).to(torch.get_default_dtype())
