"""Standard image metrics on local networks (issue 26): FID, KID, LPIPS and CLIP score beside our FD / SSIM,
each against torchmetrics 1.8.2 on the same tiny random networks (tests/reward_fixture.py), their sample-size
bias, and the images task's optional metrics (off by default, on with local weights)."""

import pytest
import torch
from torch import nn

from benchmark.images.metrics import LPIPS, clip_score, frechet_distance, kernel_distance
from benchmark.rewards import load_state_dict
from benchmark.rewards.encoders import TinyCLIP, load_lpips
from benchmark.tasks.images import ImagesTask
from tests.images_fixture import write_digit_folder
from tests.reward_fixture import FIXTURES

CLIP = str(FIXTURES / "tiny_clip.safetensors")
LPIPS_FILE = str(FIXTURES / "tiny_lpips.safetensors")


def _images(B, seed, C=3, size=16):
    return torch.rand(B, C, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def encoder():
    return TinyCLIP.from_state(load_state_dict(CLIP)).eval()


def test_fd_equals_torchmetrics_fid_on_the_same_features(encoder):
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _images(40, 0), _images(40, 1) * 0.3 + 0.5
    fid = FrechetInceptionDistance(feature=encoder, normalize=True, input_img_size=(3, 16, 16))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    with torch.no_grad():
        ours = frechet_distance(encoder(fake), encoder(real))
    assert ours > 1e-3 and abs(float(fid.compute()) - ours) < 1e-4 * ours


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_equals_torchmetrics_kid_with_one_subset_of_all_samples(encoder):
    from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

    real, fake = _images(30, 2), _images(30, 3) * 0.5
    kid = KernelInceptionDistance(feature=encoder, subsets=1, subset_size=30)
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
    """torchmetrics' own _LPIPS.forward on our backbone and heads (its constructor needs torchvision)."""
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
    return ref.eval()


def test_lpips_equals_torchmetrics_lpips_on_the_same_network():
    ours, digest = load_lpips(LPIPS_FILE)
    x, y = _images(5, 4), _images(5, 5)
    with torch.no_grad():
        d = ours(x, y)
        ref = _torchmetrics_lpips(ours)(x, y).flatten()
    assert d.shape == (5,) and (d - ref).abs().max() < 1e-6 and (d > 0).all()
    assert len(digest) == 64
    with torch.no_grad():
        assert ours(x, x).abs().max() < 1e-6 and torch.allclose(ours(y, x), d)    # 0 on itself, symmetric
        assert torch.allclose(ours(x[:, :1], y[:, :1]), ours(x[:, :1].expand(-1, 3, -1, -1),
                                                             y[:, :1].expand(-1, 3, -1, -1)))


def test_clip_score_equals_torchmetrics_update_on_the_same_encoder(encoder):
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
        if images is not None:
            return {"pixel_values": torch.stack(images)}
        ids, mask = encoder.tokens(text)
        return {"input_ids": ids, "attention_mask": mask}

    x = _images(4, 6)
    texts = ["a red square", "a dog", "two cats", "a red square"]
    with torch.no_grad():
        ref, n = _clip_score_update(list(x), texts, Model(encoder), processor)
        ours = clip_score(encoder.encode_image(x), encoder.encode_text(texts))
    assert n == 4 and (ours - ref.clamp_min(0)).abs().max() < 1e-4 and ours.shape == (4,)
    assert (ours >= 0).all() and (ours <= 100).all()


# --- the images task: off by default, on with local weights ------------------------------------------------

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
