"""The digits task's sample metrics and sample galleries (the metrics themselves: test_image_metrics.py)."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.images.gallery import gallery_path, grid_image, save_gallery
from benchmark.images.metrics import PSNR_CAP
from benchmark.tasks import make_task
from benchmark.tasks.digits import METRIC_DIRECTIONS


# --- the task's sample metrics ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(digits_models):
    return make_task("digits", models_dir=digits_models)


def test_label_metrics(loaded):
    r = loaded.objective("label")
    x = loaded.split("test")[0][:20]
    m = loaded.sample_metrics(x, r)
    assert set(m) == {"digit_confidence", "eval_accuracy", "guide_accuracy", "fd", "diversity"}
    assert set(m) <= set(METRIC_DIRECTIONS) and set(METRIC_DIRECTIONS.values()) == {"higher", "lower"}
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
        assert set(m) == {"digit_confidence", "psnr", "ssim", "meas_error"} and set(m) <= set(METRIC_DIRECTIONS)
        assert m["ssim"] == pytest.approx(1.0) and m["psnr"] == PSNR_CAP                 # identical: capped
        assert m["meas_error"] == pytest.approx(0, abs=1e-5)


def test_reward_metrics_and_clipping(loaded):
    x = loaded.split("test")[0][:10]
    m = loaded.sample_metrics(x, loaded.objective("reward"))
    assert set(m) == {"digit_confidence", "fd", "diversity"} and set(m) <= set(METRIC_DIRECTIONS)
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
