"""benchmark/tasks/images/task.py: the `images` task on a folder of PNG digits (tests/images_fixture.py): loading,
channels and sizes, the objectives it offers and their defaults, its per-sample metrics, and the standard metrics on
local networks (issue 26: off by default, on with local weights). The objectives themselves:
tests/tasks/images/test_objectives.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.images.metrics import PSNR_CAP, frechet_distance, kernel_distance
from benchmark.rewards.encoders import load_lpips
from benchmark.tasks.images.task import METRIC_DIRECTIONS, ImagesTask
from tests.images.test_metrics import CLIP, LPIPS_FILE, _images, encoder  # noqa: F401 (encoder: a fixture)
from tests.images_fixture import digit_pixels, write_digit_folder

N = 6


@pytest.fixture(scope="module")
def grey_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grey")
    write_digit_folder(folder, N, channels=1)
    (folder / "notes.txt").write_text("not an image")                        # ignored
    return folder


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour")
    write_digit_folder(folder, N, channels=3)
    return folder


@pytest.fixture(scope="module")
def task(colour_dir):
    return ImagesTask(folder=colour_dir)


# --- loading ---------------------------------------------------------------------------------------

def test_loading_sizes_ranges_and_order(grey_dir):
    t = ImagesTask(folder=grey_dir)
    assert t.shape == (1, 32, 32) and t.images.shape == (N, 1, 32, 32) and t.is_image and not t.has_oracle
    assert t.files == [f"digit_{i:03d}.png" for i in range(N)]               # sorted by name, .txt ignored
    assert t.images.min() == -1 and t.images.max() <= 1
    expected = torch.tensor(digit_pixels(N), dtype=torch.float32) / 255 * 2 - 1
    assert torch.allclose(t.images[:, 0], expected)                          # x = pixel / 255 * 2 - 1
    assert t.sample_data(4, torch.Generator().manual_seed(0)).shape == (4, 1, 32, 32)


def test_channel_conversion(grey_dir, colour_dir):
    assert ImagesTask(folder=colour_dir).shape == (3, 32, 32)                # inferred: colour files
    rgb = ImagesTask(folder=colour_dir, channels=3).images
    v = torch.tensor(digit_pixels(N), dtype=torch.float32)
    assert torch.allclose(rgb[:, 2], (255 - v) / 255 * 2 - 1)               # B = 255 - v
    grey = ImagesTask(folder=colour_dir, channels=1).images                  # PIL's L = (299 R + 587 G + 114 B) / 1000
    L = np.asarray(Image.open(colour_dir / "digit_000.png").convert("L"), dtype=np.float32)
    assert grey.shape == (N, 1, 32, 32) and torch.allclose(grey[0, 0], torch.from_numpy(L) / 255 * 2 - 1)
    three = ImagesTask(folder=grey_dir, channels=3).images                   # grey to RGB: three equal channels
    assert three.shape == (N, 3, 32, 32) and torch.equal(three[:, 0], three[:, 2])
    with pytest.raises(ValueError, match="channels must be 1 \\(grey\\) or 3 \\(RGB\\), got 2"):
        ImagesTask(folder=grey_dir, channels=2)


def test_jpeg_and_resolution(tmp_path):
    Image.fromarray(np.zeros((16, 24), dtype=np.uint8)).save(tmp_path / "a.JPG")
    t = ImagesTask(folder=tmp_path, resolution=(16, 24))
    assert t.shape == (1, 16, 24) and torch.allclose(t.images, -torch.ones(1, 1, 16, 24), atol=0.02)


def test_size_mismatch_names_the_file(grey_dir, tmp_path):
    with pytest.raises(ValueError, match=r"digit_000\.png is 32x32 \(width x height\), expected 64x64"):
        ImagesTask(folder=grey_dir, resolution=64)
    write_digit_folder(tmp_path, 2)
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png is 16x16 \(width x height\), expected 32x32"):
        ImagesTask(folder=tmp_path)                                         # resolution from the first file


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        ImagesTask(folder=tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        ImagesTask(folder=tmp_path / "missing")
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        ImagesTask(resolution=0, channels=1)


def test_without_a_folder_only_the_reward_objective(tmp_path):
    t = ImagesTask(resolution=32, channels=3)
    assert t.shape == (3, 32, 32)
    assert t.objective("reward", {"fn": "images_fixture:brightness"})(torch.zeros(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="has no images: give folder="):
        t.objective("inpaint")
    with pytest.raises(ValueError, match="needs folder= .* or resolution= and channels="):
        ImagesTask().shape


# --- objectives --------------------------------------------------------------------------------------

def test_defaults_are_documented():
    """The objectives and their parameters' defaults (as the module docstring states), read off the registered
    classes' constructors."""
    assert ImagesTask.objectives == ("inpaint", "superres", "deblur", "reward", "reward_model")
    assert ImagesTask.objective_params == {
        "inpaint": {"image": "all", "sigma_y": 0.05, "mask": "centre", "size": 0.5},
        "superres": {"image": "all", "sigma_y": 0.05, "factor": 4},
        "deblur": {"image": "all", "sigma_y": 0.05, "blur_sigma": 3.0, "kernel_size": None},
        "reward": {"fn": None},
        "reward_model": {"model": None, "weights": None, "encoder": None, "prompt": None, "sha256": None}}


# --- metrics ---------------------------------------------------------------------------------------

def test_metrics_per_sample_and_their_directions(task):
    r = task.objective("inpaint", {"sigma_y": 0.0})
    gt = r.ground_truth(N, "cpu")
    m = task.sample_metrics(gt, r)
    assert set(m) == {"psnr", "ssim", "meas_error"} <= set(METRIC_DIRECTIONS)
    assert all(v.shape == (N,) for v in m.values())
    assert torch.equal(m["psnr"], torch.full((N,), PSNR_CAP))               # identical: capped at 100 dB
    assert torch.allclose(m["ssim"], torch.ones(N)) and torch.allclose(m["meas_error"], torch.zeros(N), atol=1e-6)
    # a known pair: gt - 0.2 everywhere (clipped at -1); PSNR from the formula on [0, 1]
    x = gt - 0.2
    mse01 = (((x.clamp(-1, 1) - gt) / 2) ** 2).flatten(1).mean(-1)
    m = task.sample_metrics(x, r)
    assert torch.allclose(m["psnr"], 10 * torch.log10(1 / mse01), rtol=1e-5) and (m["ssim"] < 1).all()
    assert set(task.sample_metrics(gt, task.objective("reward", {"fn": "images_fixture:brightness"}))) == {"diversity"}
    assert set(METRIC_DIRECTIONS.values()) == {"higher", "lower"} and ImagesTask.metric_directions is METRIC_DIRECTIONS


# --- standard metrics on local networks: off by default, on with local weights ----------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = tmp_path_factory.mktemp("std_metrics")
    write_digit_folder(f, 6, channels=3, size=16)
    return f


STANDARD = {"fid", "kid", "lpips", "clip_score"}


def test_off_by_default(folder):
    task = ImagesTask(folder=folder)
    for name in ("inpaint", "reward"):
        params = {"fn": "images_fixture:brightness"} if name == "reward" else {}
        assert not STANDARD & set(task.sample_metrics(task.images, task.objective(name, params)))


def test_on_with_local_weights(folder, encoder):
    task = ImagesTask(folder=folder, metric_features=CLIP, metric_lpips=LPIPS_FILE, metric_clip=CLIP,
                      metric_prompt="a digit")
    inpaint = task.objective("inpaint")
    x = _images(6, 7)
    m = task.sample_metrics(x, inpaint)
    assert STANDARD <= set(m) and m["lpips"].shape == (6,) and m["clip_score"].shape == (6,)
    with torch.no_grad():
        f_x, f_real = encoder(x), encoder(task.images)
        assert abs(m["fid"] - frechet_distance(f_x, f_real)) < 1e-9
        assert abs(m["kid"] - kernel_distance(f_x, f_real)) < 1e-9
        lp, _ = load_lpips(LPIPS_FILE)
        assert torch.allclose(m["lpips"], lp(x, task.images))
    at_truth = task.sample_metrics(task.images, inpaint)                          # the ground truths themselves
    assert at_truth["lpips"].abs().max() < 1e-6 and abs(at_truth["fid"]) < 1e-6 and at_truth["fid"] < m["fid"]
    reward = task.objective("reward", {"fn": "images_fixture:brightness"})
    assert "lpips" not in task.sample_metrics(x, reward) and "fid" in task.sample_metrics(x, reward)


def test_clip_score_takes_the_reward_models_prompt(folder):
    task = ImagesTask(folder=folder, metric_clip=CLIP)
    obj = task.objective("reward_model", {"model": "clip_score", "weights": CLIP, "prompt": "a digit"})
    x = _images(3, 8)
    m = task.sample_metrics(x, obj)
    assert torch.allclose(m["clip_score"], obj(x).clamp_min(0), atol=1e-4)
    assert "clip_score" not in task.sample_metrics(x, task.objective("inpaint"))   # no prompt: not measured


def test_bad_metric_weights_are_named(folder, tmp_path):
    with pytest.raises(ValueError, match="metric_lpips must be a local weights path"):
        ImagesTask(folder=folder, metric_lpips=3)
    task = ImagesTask(folder=folder, metric_features=str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match=r"task 'images': metric_features: encoder .* does not exist"):
        task.sample_metrics(_images(6, 9), task.objective("inpaint"))
