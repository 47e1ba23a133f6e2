"""benchmark/tasks/images/objectives.py: the images task's objectives on a folder of PNG digits
(tests/images_fixture.py): inpaint, superres and deblur (reward 0 at the ground truth, finite gradients, observations
and masks fixed by the task seed, their operators, parameter errors before any job and when built, chain i restoring
image i mod N), a user's reward function, and `reward_model` (a learned reward model from local weights: what it
records, a pinned version, checks before any file exists, gradients)."""

import json
import math

import pytest
import torch
from torch.nn import functional as F

from benchmark.objectives import Inpaint, SuperRes
from benchmark.objectives.deblur import Deblur
from benchmark.tasks import TASKS
from benchmark.tasks.images.objectives import FactorSuperRes, ImagesDeblur, MaskInpaint, UserReward
from benchmark.tasks.images.task import ImagesTask
from tests.rewards.test_encoders import CLIP, HEAD, _images, _sha
from tests.tasks.images.test_task import N, colour_dir, task  # noqa: F401 (fixtures)

INVERSE = ("inpaint", "superres", "deblur")


# --- inverse objectives ----------------------------------------------------------------------------

def test_the_images_task_builds_this_modules_classes(task):
    """The images task's objectives are this module's classes (the shared Inpaint / SuperRes / Deblur with the
    folder's ground truths and the images task's parameters), not the digits task's."""
    assert {name: type(task.objective(name)) for name in INVERSE} == {
        "inpaint": MaskInpaint, "superres": FactorSuperRes, "deblur": ImagesDeblur}
    assert type(task.objective("reward", {"fn": "images_fixture:brightness"})) is UserReward


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


# --- ground truths ---------------------------------------------------------------------------------

def test_chain_i_restores_image_i_mod_n(task):
    r = task.objective("deblur")
    assert torch.equal(r.ground_truth(10, "cpu"), task.images[torch.arange(10) % N])
    r.for_chains(4)                                                          # 2 stacked copies of 4 chains
    assert torch.equal(r.ground_truth(8, "cpu"), task.images[torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])])
    one = task.objective("superres", {"image": 2})
    assert torch.equal(one.ground_truth(5, "cpu"), task.images[[2] * 5])


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


# --- reward_model: a learned reward model (benchmark.rewards) ----------------------------------------------

def _task(channels=3):
    return ImagesTask(resolution=16, channels=channels)


def test_reward_model_objective_records_name_and_version():
    task = _task()
    assert "reward_model" in ImagesTask.objectives
    obj = task.objective("reward_model", {"model": "aesthetic", "weights": HEAD, "encoder": CLIP})
    x = _images()
    assert torch.allclose(obj(x), obj.reward(x))
    p = obj.params()
    assert set(p) == set(type(obj).param_defaults())                           # the registry's convention
    assert p["model"] == "aesthetic" and p["sha256"] == obj.reward.version and len(p["sha256"]) == 64
    assert json.loads(json.dumps(p)) == p                                      # what settings_json records
    c = task.objective("reward_model", {"model": "clip_score", "weights": CLIP, "prompt": "a cat"}).params()
    assert c["sha256"] == _sha(CLIP) and c["prompt"] == "a cat"


def test_a_pinned_version_must_match():
    task = _task()
    params = {"model": "clip_score", "weights": CLIP, "prompt": "a cat"}
    assert task.objective("reward_model", params | {"sha256": _sha(CLIP)}).sha256 == _sha(CLIP)
    with pytest.raises(ValueError, match="not the 0000"):
        task.objective("reward_model", params | {"sha256": "0" * 64})
    with pytest.raises(ValueError, match="64 lower-case hex"):
        task.objective("reward_model", params | {"sha256": "abc"})


def test_parameters_are_checked_before_any_file_exists():
    check = TASKS["images"].check_objective
    check("reward_model", {"model": "aesthetic", "weights": "models/not_yet.pth", "encoder": "models/clip"})
    with pytest.raises(ValueError, match="needs model"):
        check("reward_model", {"weights": HEAD})
    with pytest.raises(ValueError, match="needs weights"):
        check("reward_model", {"model": "aesthetic", "encoder": CLIP})
    with pytest.raises(ValueError, match=r"needs option\(s\) \['encoder'\]"):
        check("reward_model", {"model": "aesthetic", "weights": HEAD})


def test_guidance_gradients_flow_through_the_objective():
    task = _task(channels=1)                                                   # a grey model's images
    obj = task.objective("reward_model", {"model": "aesthetic", "weights": HEAD, "encoder": CLIP})
    x = _images(2, C=1).requires_grad_()
    (g,) = torch.autograd.grad(obj(x).sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
