"""The `images` task on a folder of PNG digits (tests/images_fixture.py): loading, objectives (reward 0 at
the ground truth, finite gradients, parameter errors), ground-truth assignment, metrics, user rewards, galleries."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from benchmark.images.gallery import grid_image, save_gallery
from benchmark.images.metrics import PSNR_CAP
from benchmark.objectives import Inpaint, SuperRes
from benchmark.objectives.deblur import Deblur
from benchmark.tasks.images import METRIC_DIRECTIONS, ImagesTask
from tests.images_fixture import digit_pixels, write_digit_folder

N = 6
INVERSE = ("inpaint", "superres", "deblur")


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


# --- inverse objectives ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", INVERSE)
def test_reward_is_zero_at_the_ground_truth_with_finite_gradients(task, name):
    r = task.objective(name, {"sigma_y": 0.0})
    gt = r.ground_truth(N, "cpu")
    assert isinstance(r, {"inpaint": Inpaint, "superres": SuperRes, "deblur": Deblur}[name]) and r.optimum == 0
    noisy = gt + 0.2 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))
    for x, at_optimum in ((gt, True), (noisy, False)):
        x = x.clone().requires_grad_()
        value = r(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
        assert value.shape == (N,) and torch.isfinite(grad).all()
        assert torch.allclose(value, torch.zeros(N), atol=1e-5) if at_optimum else (value < -1e-3).all()
    # with measurement noise the ground truth sits at about -sigma_y sqrt(m)
    r = task.objective(name, {"sigma_y": 0.05})
    m = r.y[0].numel() if name != "inpaint" else int(r.mask.sum())
    assert float(-r(gt).mean()) == pytest.approx(0.05 * math.sqrt(m), rel=0.1)


def test_observations_are_fixed_by_the_task_seed(colour_dir, task):
    for name in INVERSE:
        a, b = task.objective(name), ImagesTask(folder=colour_dir).objective(name)
        c = ImagesTask(task_seed=1, folder=colour_dir).objective(name)
        assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
        one = task.objective(name, {"image": 3})
        assert torch.equal(one.y[0], a.y[3])                                 # the same draw per image


def test_inpaint_masks(colour_dir, task):
    centre = task.objective("inpaint", {"size": 0.25}).mask
    assert centre.shape == (3, 32, 32) and int((centre == 0).sum()) == 3 * 8 * 8
    assert (centre[:, 12:20, 12:20] == 0).all() and torch.equal(centre[0], centre[2])
    rnd = task.objective("inpaint", {"mask": "random", "size": 0.3}).mask
    assert abs(float((rnd[0] == 0).double().mean()) - 0.3) < 0.06 and torch.equal(rnd[0], rnd[1])
    again = ImagesTask(folder=colour_dir).objective("inpaint", {"mask": "random", "size": 0.3}).mask
    other = ImagesTask(task_seed=1, folder=colour_dir).objective("inpaint", {"mask": "random", "size": 0.3}).mask
    assert torch.equal(rnd, again) and not torch.equal(rnd, other)
    r = task.objective("inpaint", {"mask": "random", "size": 0.3})
    assert r.params() == {"image": "all", "sigma_y": 0.05, "mask": "random", "size": 0.3}
    assert (r.y * (1 - r.mask) == 0).all()                                   # no noise on hidden pixels


def test_superres_and_deblur_operators(task):
    r = task.objective("superres", {"factor": 8})
    assert r.y.shape == (N, 3, 4, 4) and r.params()["factor"] == 8
    assert torch.allclose(r.operator(task.images), F.avg_pool2d(task.images, 8))
    d = task.objective("deblur", {"blur_sigma": 1.5, "kernel_size": 7})
    assert d.params() == {"image": "all", "sigma_y": 0.05, "blur_sigma": 1.5, "kernel_size": 7}
    k = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / (2 * 1.5 ** 2))
    k2 = torch.outer(k, k) / torch.outer(k, k).sum()                         # the 2-D kernel, reflection-padded
    direct = F.conv2d(F.pad(task.images, (3, 3, 3, 3), mode="reflect"), k2.expand(3, 1, 7, 7), groups=3)
    assert torch.allclose(d.operator(task.images), direct, atol=1e-6)
    assert torch.allclose(d.operator(torch.full((1, 3, 32, 32), 0.3)), torch.full((1, 3, 32, 32), 0.3))
    assert task.objective("deblur").kernel_size == 19                        # 2 ceil(3 * 3.0) + 1


@pytest.mark.parametrize("name, params, match", [
    ("inpaint", {"sigma_y": -1}, "sigma_y must be a finite number >= 0"),
    ("inpaint", {"mask": "box"}, "unknown mask 'box'; allowed: \\['centre', 'random'\\]"),
    ("inpaint", {"size": 1.0}, "size must be a number in \\(0, 1\\)"),
    ("superres", {"factor": 0}, "factor must be an integer >= 1"),
    ("superres", {"image": -1}, "image must be 'all' or the index"),
    ("deblur", {"blur_sigma": 0}, "blur_sigma must be a finite number > 0"),
    ("deblur", {"kernel_size": 4}, "kernel_size must be None or an odd integer >= 1"),
    ("reward", {}, "needs fn: 'package.module:function'"),
    ("reward", {"fn": "brightness"}, "is not an import path"),
    ("reward", {"fn": "no_such_module:fn"}, "cannot import 'no_such_module'"),
    ("reward", {"fn": "images_fixture:NOT_CALLABLE"}, "is not callable"),
])
def test_parameter_values_are_refused_before_any_job(task, name, params, match):
    with pytest.raises(ValueError, match=match):
        ImagesTask.check_objective_params(name, params)                      # no folder needed
    with pytest.raises(ValueError, match=match):
        task.objective(name, params)


@pytest.mark.parametrize("name, params, match", [
    ("superres", {"factor": 3}, "factor 3 does not divide the image size 32x32"),
    ("deblur", {"kernel_size": 65}, "kernel_size 65 is too large for 32x32 images"),
    ("inpaint", {"image": N}, f"image {N} is out of range: the folder holds {N} images"),
    ("inpaint", {"shape": "box"}, "has no parameter\\(s\\) \\['shape'\\]"),
])
def test_shape_dependent_values_are_refused_when_built(task, name, params, match):
    ImagesTask.check_objective_params(name, {k: v for k, v in params.items() if k != "shape"})
    with pytest.raises(ValueError, match=match):
        task.objective(name, params)


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


# --- ground truths ---------------------------------------------------------------------------------

def test_chain_i_restores_image_i_mod_n(task):
    r = task.objective("deblur")
    assert torch.equal(r.ground_truth(10, "cpu"), task.images[torch.arange(10) % N])
    r.for_chains(4)                                                          # 2 stacked copies of 4 chains
    assert torch.equal(r.ground_truth(8, "cpu"), task.images[torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])])
    one = task.objective("superres", {"image": 2})
    assert torch.equal(one.ground_truth(5, "cpu"), task.images[[2] * 5])


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


# --- user rewards ----------------------------------------------------------------------------------

def test_user_reward(task):
    r = task.objective("reward", {"fn": "images_fixture:brightness"})
    assert r.optimum is None and r.params() == {"fn": "images_fixture:brightness"}
    x = task.images.clone().requires_grad_()
    value = r(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert torch.allclose(value, task.images.flatten(1).mean(-1))
    assert torch.allclose(grad, torch.full_like(x, 1 / x[0].numel()))


def test_user_reward_of_a_wrong_shape_or_without_gradient_is_refused(task):
    with pytest.raises(ValueError, match=r"images_fixture:wrong_shape must return one reward per image, a tensor of "
                                         r"shape \[B\] = \(6,\), got \(6, 1\)"):
        task.objective("reward", {"fn": "images_fixture:wrong_shape"})(task.images)
    r = task.objective("reward", {"fn": "images_fixture:detached"})
    assert r(task.images).shape == (N,)                                      # fine without a gradient
    with pytest.raises(ValueError, match="images_fixture:detached is not differentiable"):
        r(task.images.clone().requires_grad_())


# --- galleries -------------------------------------------------------------------------------------

def test_gallery_of_colour_32px_images(task, tmp_path):
    a = np.array(grid_image(task.images))                                    # default scale: 1 from 32 px
    assert a.shape == (33 + 1, N * 33 + 1, 3)
    expected = ((task.images[1].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert (a[1:33, 34:66] == expected).all()
    assert Image.open(save_gallery(task.images, tmp_path / "g.png")).mode == "RGB"
    assert np.array(grid_image(task.images[:, :1])).shape == (34, N * 33 + 1)  # grey
    assert np.array(grid_image(torch.zeros(2, 1, 8, 8))).shape == (1 * 33 + 1, 2 * 33 + 1)  # digits: scale 4
