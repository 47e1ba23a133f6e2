"""benchmark/denoisers/unet.py: the U-Net noise predictor of image tasks: its shapes and its v-parametrisation
behind the eps interface. (The classifiers' tests are in tests/classifiers/, the U-Net's pre-training in
tests/denoisers/test_pretrain_images.py.)"""

import pytest
import torch

from benchmark.denoisers.unet import UNet
from benchmark.diffusion import make_schedule
from benchmark.tasks import make_task
from benchmark.tasks.digits import MODEL_FILES


def test_network_shapes():
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([1, 10, 50, 100, 200])
    unet = UNet(200, channels=8)
    assert unet(x, t).shape == unet.velocity(x, t).shape == (5, 1, 8, 8)
    rgb = UNet(200, channels=8, in_channels=3)
    assert rgb(torch.randn(2, 3, 16, 16), t[:2]).shape == (2, 3, 16, 16)
    assert rgb.config == dict(T=200, schedule="cosine", channels=8, in_channels=3, t_dim=64)


def test_unet_is_a_v_parametrised_eps_model():
    """eps = sqrt(1 - ab) x + sqrt(ab) v, so Tweedie gives x0h = sqrt(ab) x - sqrt(1 - ab) v."""
    unet = UNet(50, channels=4)
    torch.nn.init.normal_(unet.out[-1].weight)                               # not the zero start
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 25, 40])
    with torch.no_grad():
        e, v = unet(x, t), unet.velocity(x, t)
    ab = make_schedule("cosine", 50).ab[t].float().view(-1, 1, 1, 1)
    x0h = (x - (1 - ab).sqrt() * e) / ab.sqrt()
    assert torch.allclose(x0h, ab.sqrt() * x - (1 - ab).sqrt() * v, atol=1e-4)


def test_unet_starts_as_v_zero():
    """The output layer starts at zero (DDPM's zero-initialised output): v = 0, so eps = sqrt(1 - ab_t) x_t."""
    unet = UNet(50, channels=4)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 50])
    with torch.no_grad():
        assert torch.equal(unet.velocity(x, t), torch.zeros_like(x))
        ab = make_schedule("cosine", 50).ab[t].float().view(-1, 1, 1, 1)
        assert torch.allclose(unet(x, t), (1 - ab).sqrt() * x)


def test_a_network_of_another_task_seed_is_refused(digits_models, tmp_path):
    import shutil
    for name in MODEL_FILES.values():
        shutil.copy(digits_models / name, tmp_path / name)
    task = make_task("digits", task_seed=3, models_dir=tmp_path)
    with pytest.raises(ValueError, match="was trained on task 'digits' \\(task_seed 0\\), not 'digits' \\(3\\)"):
        task.objective("label")
