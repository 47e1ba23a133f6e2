"""benchmark/tasks/digits.py: the digits task's split, scaling, augmentation, objectives (signs, values, per-sample
independence) and their parameter errors, and its sample metrics (label, inverse problems, reward)."""

import re

import pytest
import torch

from benchmark.diffusion import Costs, CountingObjective
from benchmark.images.metrics import PSNR_CAP
from benchmark.tasks import make_task
from benchmark.tasks.digits import METRIC_DIRECTIONS, load_images


@pytest.fixture(scope="module")
def digits():
    return make_task("digits")


@pytest.fixture(scope="module")
def loaded(digits_models):
    return make_task("digits", models_dir=digits_models)


def test_images_are_scaled_to_minus_one_one():
    x, y = load_images()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert x.min() == -1 and x.max() == 1
    assert sorted(y.unique().tolist()) == list(range(10))


def test_images_are_scikit_learns_digits_read_without_importing_it():
    """load_images reads scikit-learn's CSV itself (importing scikit-learn costs every digits job 1.5 s):
    the same images and labels as `load_digits()`, bit for bit, and scikit-learn not imported."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    x, y = load_images()
    ref = load_digits()
    assert torch.equal(x, torch.tensor(ref.images, dtype=torch.float32)[:, None] / 16 * 2 - 1)
    assert torch.equal(y, torch.tensor(ref.target, dtype=torch.long))
    code = ("import sys; from benchmark.tasks.digits import load_images; load_images(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_split_is_disjoint_complete_stratified_and_seeded(digits):
    sizes = {s: len(digits._index[s]) for s in ("train", "validation", "test")}
    assert sum(sizes.values()) == 1797 and sizes["train"] == 1258
    everything = torch.cat([digits._index[s] for s in sizes])
    assert len(everything.unique()) == 1797                                    # disjoint and complete
    _, y_all = load_images()
    for s, frac in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        counts = torch.bincount(digits.split(s)[1], minlength=10)
        expected = frac * torch.bincount(y_all, minlength=10)
        assert ((counts - expected).abs() <= 1).all(), s                      # stratified
    again = make_task("digits")
    assert all(torch.equal(digits._index[s], again._index[s]) for s in sizes)  # deterministic
    other = make_task("digits", task_seed=1)
    assert not torch.equal(digits._index["test"], other._index["test"])
    x, _ = digits.split("train+validation")
    assert len(x) == sizes["train"] + sizes["validation"]
    with pytest.raises(ValueError, match=r"unknown split 'tset'; allowed: \['train', 'validation', 'test'\]"):
        digits.split("tset")


def test_shape_and_sample_data(digits):
    assert digits.shape == (1, 8, 8) and digits.is_image and not digits.has_oracle
    x = digits.sample_data(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="no exact \\(oracle\\) denoiser"):
        digits.oracle(None)


# --- augmentation ----------------------------------------------------------------------------------

def test_augment_batch_equals_samples_one_by_one(digits):
    x = digits.split("test")[0][:8]
    z = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    batch = digits.augment(x, z)
    single = torch.cat([digits.augment(x[i:i + 1], z[i:i + 1]) for i in range(8)])
    assert torch.equal(batch, single)
    assert not torch.equal(batch, x)
    assert torch.equal(digits.augment(x, z), batch)                          # a function of (x, z) only


def test_augment_at_z_zero_is_the_centre_cutout_only(digits):
    """z = 0 gives u = 1/2: contrast 1, brightness 0, shift 0, a 3x3 cutout centred on pixel (4, 4)."""
    x = digits.split("test")[0][:2]
    out = digits.augment(x, torch.zeros_like(x))
    hole = torch.zeros(8, 8, dtype=torch.bool)
    hole[3:6, 3:6] = True
    assert (out[:, :, hole] == -1).all()
    assert torch.allclose(out[:, :, ~hole], x[:, :, ~hole], atol=1e-6)


def test_augment_translation_moves_content_and_fills_blank(digits):
    """A z with u = (1/2, 1/2, ~1, ~0, ...) shifts by (dy, dx) = (+1, -1); cutout is put in a corner."""
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    z = torch.zeros(1, 1, 8, 8)
    z.view(-1)[2], z.view(-1)[3] = 3.0, -3.0                                   # dy = +1, dx = -1
    z.view(-1)[4], z.view(-1)[5] = -5.0, -5.0                                  # cutout centred at (0, 0)
    out = digits.augment(x, z)[0, 0]
    assert (out[0, :] == -1).all() and (out[:, 7] == -1).all()                # vacated row / column
    assert torch.allclose(out[2:, 1:7], x[0, 0, 1:7, 2:8], atol=1e-6)        # moved down 1, left 1


def test_augment_is_differentiable_in_x(digits):
    x = (digits.split("test")[0][:3].double()).requires_grad_(True)
    z = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: digits.augment(a, z), (x,))
    (g,) = torch.autograd.grad(digits.augment(x, z).sum(), x)
    assert torch.isfinite(g).all() and (g != 0).any()


# --- objectives ------------------------------------------------------------------------------------

def test_objectives_need_the_models_folder(digits, tmp_path):
    with pytest.raises(ValueError, match="task 'digits' needs --models-dir.*digits_classifier.safetensors"):
        digits.objective("label")
    empty = make_task("digits", models_dir=tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'digits_classifier.safetensors'} does not exist; "
                                                   "make it with `python -m benchmark pretrain --task digits "
                                                   "--network classifier")):
        empty.objective("label")


def test_objective_parameter_errors(loaded, subspace):
    with pytest.raises(ValueError, match=r"objective 'label' of task 'digits' has no parameter\(s\) \['targte'\]; "
                                         r"allowed: \['target'\]"):
        loaded.objective("label", {"targte": 3})
    with pytest.raises(ValueError, match="target must be an integer class 0..9 or 'all', got 10"):
        loaded.objective("label", {"target": 10})
    with pytest.raises(ValueError, match="target must be an integer class 0..9 or 'all', got True"):
        loaded.objective("label", {"target": True})
    with pytest.raises(ValueError, match="image must be 'all' or an index 0..269 of the test split, got 270"):
        loaded.objective("inpaint", {"image": 270})
    with pytest.raises(ValueError, match=r"unknown mask 'top'; allowed: \['centre', 'lower_half'\]"):
        loaded.objective("inpaint", {"mask": "top"})
    with pytest.raises(ValueError, match="sigma_y must be a finite number >= 0, got -0.1"):
        loaded.objective("superres", {"sigma_y": -0.1})
    with pytest.raises(ValueError, match="sigma_y must be a finite number >= 0, got nan"):
        loaded.objective("inpaint", {"sigma_y": float("nan")})
    with pytest.raises(ValueError, match="head must be an integer"):
        loaded.objective("reward", {"head": "x"})
    with pytest.raises(ValueError, match="has no parameter\\(s\\) \\['target'\\]; allowed: none"):
        subspace.objective("quadratic_off", {"target": 1})


def test_label_is_the_guide_log_probability_of_each_chains_target(loaded):
    r = loaded.objective("label")
    x = loaded.split("test")[0][:12]
    logp = torch.log_softmax(loaded.network("classifier")(x), -1)
    c = torch.arange(12) % 10                                                 # chain i targets i mod 10
    assert torch.allclose(r(x), logp[torch.arange(12), c], atol=1e-6)
    assert (r(x) <= 0).all() and r.optimum == 0.0
    fixed = loaded.objective("label", {"target": 7})
    assert torch.allclose(fixed(x), logp[:, 7], atol=1e-6)
    assert fixed.params() == {"target": 7} and r.params() == {"target": "all"}


def test_label_noisy_log_prob_is_counted_as_the_objective(loaded):
    costs = Costs()
    r = CountingObjective(loaded.objective("label"), costs)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    lp = r.noisy_log_prob(x, 20)
    assert lp.shape == (3,) and (lp <= 0).all()
    assert (costs.objective_evals, costs.objective_grads) == (3, 0)
    torch.autograd.grad(lp.sum(), x)
    assert (costs.objective_evals, costs.objective_grads) == (3, 3)
    assert r.noise_schedule == ("cosine", 50)                                 # not counted: not a method


def test_inverse_problems_reward_zero_at_the_truth_without_noise(loaded):
    for name in ("inpaint", "superres"):
        r = loaded.objective(name, {"sigma_y": 0.0})
        x_star = loaded.split("test")[0][:5]
        assert torch.allclose(r(x_star), torch.zeros(5), atol=1e-6), name
        other = x_star.roll(1, 0)                                            # another image each
        assert (r(other) < 0).all()
        assert r.optimum == 0.0 and r.params()["image"] == "all"


def test_inpaint_reward_is_the_unsquared_residual_on_observed_pixels(loaded):
    r = loaded.objective("inpaint", {"image": 4, "sigma_y": 0.0, "mask": "lower_half"})
    x_star = loaded.split("test")[0][4:5]
    x = x_star.clone()
    x[..., 6:, :] += 5.0                                                      # unobserved rows: no effect
    assert torch.allclose(r(x), torch.zeros(1), atol=1e-6)
    x[..., 0, 0] += 0.3
    x[..., 1, 2] -= 0.4
    assert torch.allclose(r(x), torch.tensor([-0.5]), atol=1e-5)             # -sqrt(0.3^2 + 0.4^2)
    centre = loaded.objective("inpaint", {"sigma_y": 0.0})
    assert centre.mask.sum() == 48 and centre.mask[0, 2:6, 2:6].sum() == 0


def test_superres_reward_uses_average_pooling(loaded):
    r = loaded.objective("superres", {"image": 0, "sigma_y": 0.0})
    x_star = loaded.split("test")[0][:1]
    x = x_star.clone()
    x[..., 0, 0] += 0.4
    x[..., 0, 1] -= 0.4                                                      # same 2x2 block: the mean is unchanged
    assert torch.allclose(r(x), torch.zeros(1), atol=1e-6)
    x[..., 0, 0] += 0.8                                                      # that block's mean moves by 0.2
    assert torch.allclose(r(x), torch.tensor([-0.2]), atol=1e-6)


def test_observation_noise_is_fixed_per_test_image(loaded):
    all_images = loaded.objective("inpaint", {"sigma_y": 0.1})
    one = loaded.objective("inpaint", {"sigma_y": 0.1, "image": 9})
    assert torch.equal(all_images.y[9], one.y[0])
    assert torch.equal(loaded.objective("superres").y, loaded.objective("superres").y)


def test_reward_is_standardised_on_the_training_images(loaded):
    r = loaded.objective("reward")
    v = r(loaded.split("train")[0])
    assert abs(float(v.mean())) < 1e-4 and abs(float(v.std()) - 1) < 1e-4
    assert r.optimum is None
    assert not torch.equal(loaded.objective("reward", {"head": 1}).w, r.w)


@pytest.mark.parametrize("name, param", [("label", "target"), ("inpaint", "image"), ("superres", "image"),
                                         ("reward", None)])
def test_every_digits_objective_is_per_sample(loaded, name, param):
    """Row i of a batch (chain i) gives what chain i alone gives, its per-chain parameter made explicit."""
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5
    batch = loaded.objective(name)(x)
    single = torch.cat([loaded.objective(name, {param: i} if param else {})(x[i:i + 1]) for i in range(8)])
    assert batch.shape == (8,)
    assert torch.allclose(batch, single, atol=1e-5)


def test_per_chain_objectives_read_stacked_copies_and_reject_other_batches(loaded):
    r = loaded.objective("label").for_chains(4)
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(r(torch.cat([x, x, x])), r(x).repeat(3), atol=1e-6)
    with pytest.raises(ValueError, match="per-chain parameters for 4 chains; a batch of 3 rows"):
        r(x[:3])
    fixed = loaded.objective("label", {"target": 2}).for_chains(4)
    assert fixed(x[:1]).shape == (1,)                                         # one target: any batch


def test_objective_params_cover_every_objective(digits):
    """The objectives and their parameters' defaults, read off the registered classes' constructors."""
    assert digits.objectives == ("label", "inpaint", "superres", "reward")
    assert digits.objective_params == {"label": {"target": "all"},
                                       "inpaint": {"image": "all", "sigma_y": 0.05, "mask": "centre"},
                                       "superres": {"image": "all", "sigma_y": 0.05}, "reward": {"head": 0}}


# --- the task's sample metrics ---------------------------------------------------------------------

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
