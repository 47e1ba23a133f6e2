"""benchmark/images/metrics.py: Frechet distance, PSNR and SSIM on [0, 1] (L = 1) against known values, SSIM against
a window-by-window computation and against scikit-image, and sample diversity; the standard metrics on local
networks (issue 26: FID, KID, LPIPS, CLIP score), each against torchmetrics 1.8.2 on the same tiny random networks
(tests/reward_fixture.py), and their sample-size bias. The value tests run on the `device` fixture
(`pytest --device cuda`; torchmetrics' metrics moved there too) and compare on the CPU."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.images.metrics import (LPIPS, PSNR_CAP, SMALL_WINDOW, WANG_WINDOW, clip_score, frechet_distance,
                                      frechet_distance_from_stats, kernel_distance, mean_pairwise_distance, psnr, ssim,
                                      ssim_window)
from benchmark.rewards import load_state_dict
from benchmark.rewards.encoders import TinyCLIP, load_lpips
from benchmark.tasks.digits import load_images
from tests.reward_fixture import FIXTURES


def reference_ssim(X: np.ndarray, Y: np.ndarray, L: float, window: tuple[int, float]) -> float:
    """Wang et al.'s SSIM of two 2-D arrays, window by window (valid windows only), constants
    C1 = (0.01 L)^2, C2 = (0.03 L)^2, biased local moments under a normalised Gaussian window."""
    size, sigma = window
    k = np.arange(size) - (size - 1) / 2
    w = np.exp(-k ** 2 / (2 * sigma ** 2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    values = []
    for i in range(X.shape[0] - size + 1):
        for j in range(X.shape[1] - size + 1):
            px, py = X[i:i + size, j:j + size], Y[i:i + size, j:j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def noisy_digits(n: int, sigma: float = 0.3, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) digits in [-1, 1] [n, 1, 8, 8] (or upsampled to size x size), noise clipped."""
    x = load_images()[0][:n].double()
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)).clamp(-1, 1)
    return x, y


# --- Frechet distance ------------------------------------------------------------------------------

def test_fd_of_a_set_with_itself_is_zero(device):
    f = torch.randn(50, 16, generator=torch.Generator().manual_seed(0)).to(device)
    assert abs(frechet_distance(f, f)) < 1e-8
    assert frechet_distance(f, f + 1.0) == pytest.approx(16.0, rel=1e-8)   # ||mu1 - mu2||^2 only


def test_fd_closed_forms(device):
    # diagonal covariances: FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0], device=device), torch.tensor([4.0, 1.0, 1.0], device=device)
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], device=device), torch.tensor([1.0, 1.0, 0.0], device=device)
    expected = 5.0 + (1 + 1 + 4)
    assert frechet_distance_from_stats(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)
    # non-commuting covariances: against scipy's general matrix square root
    import scipy.linalg
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    S1, S2 = A @ A.T + 0.1 * torch.eye(4, dtype=torch.float64), B @ B.T + 0.1 * torch.eye(4, dtype=torch.float64)
    tr_sqrt = np.trace(scipy.linalg.sqrtm(S1.numpy() @ S2.numpy())).real          # on the CPU
    expected = float(S1.trace() + S2.trace()) - 2 * tr_sqrt
    zero = torch.zeros(4, device=device)
    assert frechet_distance_from_stats(zero, S1.to(device), zero, S2.to(device)) == pytest.approx(expected, rel=1e-8)


def test_fd_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples per set, got 1"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))


# --- PSNR ------------------------------------------------------------------------------------------

def test_psnr_known_values_on_zero_one(device):
    x = torch.zeros(2, 1, 8, 8, device=device)
    # an offset of 0.1 in [-1, 1] is 0.05 in [0, 1]: MSE 0.0025, PSNR 10 log10(1 / 0.0025) = 26.02 dB
    assert torch.allclose(psnr(x + 0.1, x).cpu(), torch.full((2,), 10 * math.log10(1 / 0.0025)))
    assert torch.equal(psnr(x, x).cpu(), torch.full((2,), PSNR_CAP))       # identical: capped at 100 dB
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    mse01 = (((a - b) / 2) ** 2).flatten(1).mean(-1)                        # the formula on [0, 1], on the CPU
    a, b = a.to(device), b.to(device)
    assert torch.allclose(psnr(a, b).cpu(), 10 * torch.log10(1 / mse01), rtol=1e-5)
    assert torch.allclose(psnr((a + 1) / 2, (b + 1) / 2, value_range=(0, 1)).cpu(), psnr(a, b).cpu(), rtol=1e-6)


def test_value_range_must_be_increasing():
    with pytest.raises(ValueError, match="value_range must be \\(lo, hi\\) with hi > lo"):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), value_range=(1, 1))


# --- SSIM ------------------------------------------------------------------------------------------

def test_ssim_of_an_image_with_itself_is_one(device):
    x = (torch.rand(3, 1, 8, 8) * 2 - 1).to(device)
    assert torch.allclose(ssim(x, x).cpu(), torch.ones(3), atol=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term_on_zero_one(device):
    """Constant a vs b in [-1, 1] are u = (a + 1) / 2, v = (b + 1) / 2 in [0, 1]: no variance, so
    SSIM = (2uv + C1) / (u^2 + v^2 + C1), C1 = 0.01^2."""
    a, b, c1 = 0.5, -0.25, 0.01 ** 2
    u, v = (a + 1) / 2, (b + 1) / 2
    x, y = torch.full((1, 1, 8, 8), a, device=device), torch.full((1, 1, 8, 8), b, device=device)
    assert ssim(x, y)[0].item() == pytest.approx((2 * u * v + c1) / (u * u + v * v + c1), rel=1e-6)


def test_ssim_windows():
    assert ssim_window(8, 8) == SMALL_WINDOW == (5, 1.0)                    # digits: 4x4 valid windows
    assert ssim_window(32, 32) == ssim_window(11, 64) == WANG_WINDOW == (11, 1.5)


def test_ssim_is_measured_on_zero_one_not_on_minus_one_one(device):
    """Noisy digits (noise 0.3 in [-1, 1], clipped): the usual SSIM on [0, 1] with L = 1 is about 0.93;
    the same formula on the raw [-1, 1] values with L = 2 gives about 0.72, because the luminance term
    (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) is not shift-invariant (the blank background sits at
    -1, not 0). Ours is the former, window by window."""
    x, y = noisy_digits(40)                                                 # on the CPU, for numpy
    xd, yd = x.to(device), y.to(device)
    ours = ssim(yd, xd).cpu()
    on_unit = [reference_ssim((y[i, 0].numpy() + 1) / 2, (x[i, 0].numpy() + 1) / 2, 1.0, SMALL_WINDOW)
               for i in range(len(x))]
    on_raw = [reference_ssim(y[i, 0].numpy(), x[i, 0].numpy(), 2.0, SMALL_WINDOW) for i in range(len(x))]
    assert torch.allclose(ours, torch.tensor(on_unit, dtype=ours.dtype), rtol=1e-6, atol=1e-7)
    assert 0.9 < float(ours.mean()) < 0.95 and 0.65 < np.mean(on_raw) < 0.8    # 0.933 vs 0.719
    assert float(ssim(yd, xd, value_range=(0, 2)).mean()) == pytest.approx(np.mean(on_raw), rel=1e-6)  # x / 2, L = 1


def test_ssim_matches_scikit_image_on_zero_one(device):
    """32x32 noisy digits, grey and colour: equal to skimage's structural_similarity with Wang et al.'s
    Gaussian window (sigma 1.5, 11x11), population moments, data_range 1, on the images mapped to [0, 1]."""
    metrics = pytest.importorskip("skimage.metrics")
    x, y = noisy_digits(6, size=32)
    colour = lambda a: torch.cat([a, a.flip(-1), -a], 1)                  # three different channels
    for a, b in ((x, y), (colour(x), colour(y))):                          # a, b on the CPU, for numpy
        ad, bd = a.to(device), b.to(device)
        ours = ssim(bd, ad).cpu()
        theirs = [metrics.structural_similarity(((b[i] + 1) / 2).numpy(), ((a[i] + 1) / 2).numpy(),
                                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                data_range=1.0, channel_axis=0)
                  for i in range(len(a))]
        assert torch.allclose(ours, torch.tensor(theirs, dtype=ours.dtype), rtol=1e-6, atol=1e-7)
        psnr_theirs = [metrics.peak_signal_noise_ratio(((a[i] + 1) / 2).numpy(), ((b[i] + 1) / 2).numpy(),
                                                       data_range=1.0) for i in range(len(a))]
        assert torch.allclose(psnr(bd, ad).cpu(), torch.tensor(psnr_theirs, dtype=ours.dtype), rtol=1e-6)


def test_ssim_rejects_mismatched_or_small_images():
    with pytest.raises(ValueError, match="two \\[B, C, H, W\\] tensors of one shape"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="larger than the image"):
        ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_mean_pairwise_distance(device):
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]], device=device)
    assert mean_pairwise_distance(x) == pytest.approx((5 + 4 + 3) / 3)
    assert math.isnan(mean_pairwise_distance(x[:1]))


# --- standard metrics on local networks, against torchmetrics (issue 26) -------------------------------------

CLIP = str(FIXTURES / "tiny_clip.safetensors")
LPIPS_FILE = str(FIXTURES / "tiny_lpips.safetensors")


def _images(B, seed, C=3, size=16):
    return torch.rand(B, C, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def encoder(device):
    return TinyCLIP.from_state(load_state_dict(CLIP)).eval().to(device)


def test_fd_equals_torchmetrics_fid_on_the_same_features(encoder, device):
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _images(40, 0).to(device), (_images(40, 1) * 0.3 + 0.5).to(device)
    # its constructor runs the network on a CPU dummy image: built on a CPU copy of the encoder, then moved
    fid = FrechetInceptionDistance(feature=copy.deepcopy(encoder).cpu(), normalize=True,
                                   input_img_size=(3, 16, 16)).to(device)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    with torch.no_grad():
        ours = frechet_distance(encoder(fake), encoder(real))
    assert ours > 1e-3 and abs(float(fid.compute()) - ours) < 1e-4 * ours


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_equals_torchmetrics_kid_with_one_subset_of_all_samples(encoder, device):
    from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

    real, fake = _images(30, 2).to(device), (_images(30, 3) * 0.5).to(device)
    kid = KernelInceptionDistance(feature=encoder, subsets=1, subset_size=30).to(device)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.no_grad():
        f_fake, f_real = encoder(fake), encoder(real)
    ours = kernel_distance(f_fake, f_real)
    assert abs(float(kid.compute()[0]) - ours) < 1e-5 * max(1.0, abs(ours))
    assert abs(float(poly_mmd(f_real.double(), f_fake.double())) - ours) < 1e-10
    # unequal sizes: the same estimator, by definition (within-set U-statistics, cross mean)
    a, b = f_fake[:12].double(), f_real.double()
    k = lambda u, v: (u @ v.T / u.shape[1] + 1) ** 3                           # noqa: E731
    want = ((k(a, a).sum() - k(a, a).trace()) / (12 * 11) + (k(b, b).sum() - k(b, b).trace()) / (30 * 29)
            - 2 * k(a, b).mean())
    assert abs(kernel_distance(f_fake[:12], f_real) - float(want)) < 1e-10


def test_sample_size_bias_fd_upward_kid_unbiased():
    """Two independent samples of one Gaussian: FD's expectation is > 0 and falls with n (biased upward);
    KID's is 0 at every n (unbiased)."""
    g = torch.Generator().manual_seed(0)
    d, reps = 8, 60

    def draws(n):
        fd, kid = [], []
        for _ in range(reps):
            a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
            fd.append(frechet_distance(a, b))
            kid.append(kernel_distance(a, b))
        return torch.tensor(fd, dtype=torch.float64), torch.tensor(kid, dtype=torch.float64)

    fd16, kid16 = draws(16)
    fd128, kid128 = draws(128)
    assert fd16.mean() > 3 * fd128.mean() > 0 and fd16.mean() > 1.0             # ~ 2 tr(S) / n and more
    for kid in (kid16, kid128):
        assert abs(float(kid.mean())) < 3 * float(kid.std()) / reps ** 0.5      # mean 0 within 3 standard errors
    assert kid16.std() > kid128.std()                                           # only its variance grows


def _torchmetrics_lpips(ours: LPIPS):
    """torchmetrics' own _LPIPS.forward on our backbone and heads (its constructor needs torchvision), on our device."""
    from torchmetrics.functional.image.lpips import _LPIPS, NetLinLayer, ScalingLayer

    ref = _LPIPS.__new__(_LPIPS)
    nn.Module.__init__(ref)
    ref.scaling_layer, ref.net, ref.spatial, ref.resize, ref.L = ScalingLayer(), ours.net, False, None, len(ours.lins)
    lins = []
    for w in ours.lins:
        lin = NetLinLayer(w.shape[1], use_dropout=False)
        lin.model[0].weight.data.copy_(w)
        lins.append(lin)
    ref.lins = nn.ModuleList(lins)
    return ref.eval().to(ours.shift.device)


def test_lpips_equals_torchmetrics_lpips_on_the_same_network(device):
    ours, digest = load_lpips(LPIPS_FILE)
    ours = ours.to(device)
    x, y = _images(5, 4).to(device), _images(5, 5).to(device)
    with torch.no_grad():
        d = ours(x, y).cpu()
        ref = _torchmetrics_lpips(ours)(x, y).flatten().cpu()
    assert d.shape == (5,) and (d - ref).abs().max() < 1e-6 and (d > 0).all()
    assert len(digest) == 64
    with torch.no_grad():
        assert ours(x, x).abs().max() < 1e-6 and torch.allclose(ours(y, x).cpu(), d)    # 0 on itself, symmetric
        assert torch.allclose(ours(x[:, :1], y[:, :1]).cpu(), ours(x[:, :1].expand(-1, 3, -1, -1),
                                                                   y[:, :1].expand(-1, 3, -1, -1)).cpu())


def test_clip_score_equals_torchmetrics_update_on_the_same_encoder(encoder, device):
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    class Model(nn.Module):                              # CLIPModel's interface, over TinyCLIP
        config = object()

        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def get_image_features(self, pixel_values):
            return self.enc.encode_image(pixel_values)

        def get_text_features(self, input_ids, attention_mask):
            return self.enc.encode_tokens(input_ids, attention_mask)

    def processor(images=None, text=None, return_tensors="pt", padding=True):
        # torchmetrics hands the images over on the CPU and moves what this returns to the images' device
        if images is not None:
            return {"pixel_values": torch.stack(images)}
        ids, mask = encoder.tokens(text)
        return {"input_ids": ids, "attention_mask": mask}

    x = _images(4, 6).to(device)
    texts = ["a red square", "a dog", "two cats", "a red square"]
    with torch.no_grad():
        ref, n = _clip_score_update(list(x), texts, Model(encoder), processor)
        ref, ours = ref.cpu(), clip_score(encoder.encode_image(x), encoder.encode_text(texts)).cpu()
    assert n == 4 and (ours - ref.clamp_min(0)).abs().max() < 1e-4 and ours.shape == (4,)
    assert (ours >= 0).all() and (ours <= 100).all()
