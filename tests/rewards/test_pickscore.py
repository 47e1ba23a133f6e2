"""benchmark/rewards/pickscore.py: PickScore, exp(s) cos(E_I(x), E_T(c)) with the encoder's learned logit scale
s (Kirstain et al. 2023; their inference code), on a tiny random TinyCLIP stand-in with a `logit_scale` entry. The
value and gradient tests run on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import math

import pytest
import torch

from benchmark.rewards import load_reward, reward_names
from benchmark.rewards.encoders import TinyCLIP
from benchmark.rewards.pickscore import PickScore

S = math.log(100.0) - 0.3      # a learned log-temperature, not torchmetrics' 100


@pytest.fixture
def weights(tmp_path):
    clip = TinyCLIP.random(seed=3)
    clip.logit_scale = S
    path = tmp_path / "pickscore_tiny.safetensors"
    clip.save(path)
    return path, clip


def test_is_the_learned_scale_times_the_cosine(weights, device):
    path, clip = weights
    clip = clip.to(device)
    x = (torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    r = load_reward("pickscore", path, prompt="a cat").to(device)(x).detach().cpu()
    e_i, e_t = clip.encode_image(x).detach(), clip.encode_text(["a cat"]).detach()
    expected = math.exp(S) * torch.nn.functional.cosine_similarity(e_i, e_t.expand_as(e_i), dim=-1)
    torch.testing.assert_close(r, expected.cpu(), rtol=1e-5, atol=1e-5)
    assert r.abs().max() <= math.exp(S) + 1e-4


def test_preference_and_gradient_are_those_of_the_formula(weights, device):
    """Their README's preference of one image over another, softmax(scores), and the reward's input gradient,
    against exp(S) cos(E_I(x), E_T(c)) written out here (text embedding held fixed)."""
    path, clip = weights
    model = load_reward("pickscore", path, prompt="a cat").to(device)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x = x0.clone().to(device).requires_grad_()
    r = model(x)
    (g,) = torch.autograd.grad(r.sum(), x)
    y = x0.clone().requires_grad_()
    e_i, e_t = clip.encode_image(y), clip.encode_text(["a cat"]).detach()
    hand = math.exp(S) * torch.nn.functional.cosine_similarity(e_i, e_t.expand_as(e_i), dim=-1)
    (g_hand,) = torch.autograd.grad(hand.sum(), y)
    torch.testing.assert_close(torch.softmax(r.detach().cpu(), 0), torch.softmax(hand.detach(), 0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g.cpu(), g_hand, rtol=1e-4, atol=1e-6)
    assert g.abs().sum() > 0


def test_refuses_weights_without_a_learned_scale_and_an_empty_prompt(tmp_path):
    path = tmp_path / "plain.safetensors"
    TinyCLIP.random(seed=3).save(path)
    with pytest.raises(ValueError, match="reward model 'pickscore': .* has no learned logit_scale"):
        PickScore(str(path), prompt="a cat")
    with pytest.raises(ValueError, match="reward model 'pickscore' needs prompt: a non-empty text, got ''"):
        PickScore(str(path), prompt="")


def test_registered_with_its_name_and_version(weights):
    path, _ = weights
    assert "pickscore" in reward_names()
    model = load_reward("pickscore", path, prompt="a cat")
    from benchmark.rewards import sha256_file

    assert model.name == "pickscore" and model.version == sha256_file(path)


def test_logit_scale_round_trips_through_the_file(weights):
    path, _ = weights
    from benchmark.rewards import load_state_dict

    assert float(load_state_dict(path)["logit_scale"]) == pytest.approx(S)
