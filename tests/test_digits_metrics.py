"""Image metrics against known values, the digits task's sample metrics, and sample galleries."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.gallery import gallery_path, grid_image, save_gallery
from benchmark.image_metrics import (SSIM_WINDOW, frechet_distance, frechet_distance_from_stats,
                                     mean_pairwise_distance, psnr, ssim)
from benchmark.tasks import make_task


def test_fd_of_a_set_with_itself_is_zero():
    f = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(f, f)) < 1e-8
    assert frechet_distance(f, f + 1.0) == pytest.approx(16.0, rel=1e-8)   # ||mu1 - mu2||^2 only


def test_fd_closed_forms():
    # diagonal covariances: FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = 5.0 + (1 + 1 + 4)
    assert frechet_distance_from_stats(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)
    # non-commuting covariances: against scipy's general matrix square root
    import scipy.linalg
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    S1, S2 = A @ A.T + 0.1 * torch.eye(4, dtype=torch.float64), B @ B.T + 0.1 * torch.eye(4, dtype=torch.float64)
    tr_sqrt = np.trace(scipy.linalg.sqrtm(S1.numpy() @ S2.numpy())).real
    expected = float(S1.trace() + S2.trace()) - 2 * tr_sqrt
    zero = torch.zeros(4)
    assert frechet_distance_from_stats(zero, S1, zero, S2) == pytest.approx(expected, rel=1e-8)


def test_fd_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples per set, got 1"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))


def test_psnr_known_value():
    x = torch.zeros(2, 1, 8, 8)
    assert torch.allclose(psnr(x + 0.1, x), torch.full((2,), 10 * math.log10(4 / 0.01)))   # 26.02 dB
    assert psnr(x, x)[0] == pytest.approx(10 * math.log10(4 / 1e-10))                      # floored MSE


def test_ssim_of_an_image_with_itself_is_one():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term():
    """Constant a vs b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 2)^2."""
    a, b, c1 = 0.5, -0.25, 0.02 ** 2
    x, y = torch.full((1, 1, 8, 8), a), torch.full((1, 1, 8, 8), b)
    assert ssim(x, y)[0] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_matches_a_direct_window_by_window_computation():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64)).clamp(-1, 1)
    size, sigma = SSIM_WINDOW
    k = np.arange(size) - (size - 1) / 2
    w = np.exp(-k ** 2 / (2 * sigma ** 2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    X, Y = x[0, 0].numpy(), y[0, 0].numpy()
    values = []
    for i in range(8 - size + 1):
        for j in range(8 - size + 1):
            px, py = X[i:i + size, j:j + size], Y[i:i + size, j:j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    assert float(ssim(x, y)[0]) == pytest.approx(float(np.mean(values)), rel=1e-6)


def test_ssim_rejects_mismatched_or_small_images():
    with pytest.raises(ValueError, match="two \\[B, C, H, W\\] tensors of one shape"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="larger than the image"):
        ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_mean_pairwise_distance():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    assert mean_pairwise_distance(x) == pytest.approx((5 + 4 + 3) / 3)
    assert math.isnan(mean_pairwise_distance(x[:1]))


# --- the task's sample metrics ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(digits_models):
    return make_task("digits", models_dir=digits_models)


def test_label_metrics(loaded):
    r = loaded.objective("label")
    x = loaded.split("test")[0][:20]
    m = loaded.sample_metrics(x, r)
    assert set(m) == {"digit_confidence", "eval_accuracy", "guide_accuracy", "fd", "diversity"}
    evaluator = loaded.network("evaluator")
    c = torch.arange(20) % 10
    with torch.no_grad():
        assert m["eval_accuracy"] == pytest.approx(float((evaluator(x).argmax(-1) == c).double().mean()))
        assert m["digit_confidence"] == pytest.approx(float(evaluator(x).softmax(-1).max(-1).values.mean()), rel=1e-6)
    assert 0 <= m["guide_accuracy"] <= 1 and m["fd"] >= 0 and m["diversity"] > 0


def test_inverse_problem_metrics_at_the_ground_truth(loaded):
    x = loaded.split("test")[0][:6]
    for name in ("inpaint", "superres"):
        m = loaded.sample_metrics(x, loaded.objective(name, {"sigma_y": 0.0}))
        assert set(m) == {"digit_confidence", "psnr", "ssim", "meas_error"}
        assert m["ssim"] == pytest.approx(1.0) and m["psnr"] > 100 and m["meas_error"] == pytest.approx(0, abs=1e-5)


def test_reward_metrics_and_clipping(loaded):
    x = loaded.split("test")[0][:10]
    m = loaded.sample_metrics(x, loaded.objective("reward"))
    assert set(m) == {"digit_confidence", "fd", "diversity"}
    assert loaded.sample_metrics(x * 3, loaded.objective("reward")) == loaded.sample_metrics(
        (x * 3).clamp(-1, 1), loaded.objective("reward"))                   # measured as saved: clipped


# --- galleries -------------------------------------------------------------------------------------

def test_gallery_grid_and_atomic_write(tmp_path):
    x = torch.linspace(-1, 1, 110 * 64).view(110, 1, 8, 8)
    path = save_gallery(x, gallery_path(tmp_path / "cell.parquet"), scale=2)
    assert path == tmp_path / "cell.png" and sorted(p.name for p in tmp_path.iterdir()) == ["cell.png"]
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (10 * 17 + 1, 10 * 17 + 1)   # 10 x 10 tiles at most
    a = np.array(grid_image(x[:40], scale=1))
    assert a.shape == (4 * 9 + 1, 10 * 9 + 1)            # 10 per row: chain i (class i mod 10) in column i mod 10
    assert a[1 + 9, 1 + 3 * 9] == round((float(x[13, 0, 0, 0]) + 1) * 127.5)
    a = np.array(grid_image(x[:3], scale=1))
    assert a.shape == (1 * 9 + 1, 3 * 9 + 1)                                 # one row of three
    assert a[1, 1] == 0 and a[8, 8] == round((float(x[0, 0, 7, 7]) + 1) * 127.5)
    assert np.array(grid_image(None)).shape == (24, 96)                     # a cell with no samples
