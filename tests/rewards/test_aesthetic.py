"""benchmark/rewards/aesthetic.py: the LAION aesthetic predictor on the tiny random stand-ins (tests/reward_fixture.py):
the published head (linear layers, no nonlinearity) on normalised CLIP embeddings, computed by hand; the published
.pth format; layer sizes and order read from the file; a head of more than one output refused. The value tests run
on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from benchmark.rewards import load_reward, load_state_dict
from benchmark.rewards.aesthetic import AestheticPredictor
from benchmark.rewards.encoders import CLIP_MEAN, CLIP_STD, TinyCLIP
from tests.reward_fixture import aesthetic_head_state
from tests.rewards.test_encoders import CLIP, HEAD, _images, _sha


def test_aesthetic_is_the_published_head_on_normalised_embeddings(device):
    """r = W5(W4(W3(W2(W1 e + b1) + b2) + b3) + b4) + b5, e = E(x)/||E(x)||, no nonlinearity (published MLP)."""
    x = _images().to(device)
    r = load_reward("aesthetic", HEAD, encoder=CLIP).to(device)(x).cpu()
    enc = TinyCLIP.from_state(load_state_dict(CLIP)).to(device)
    # the encoder by hand: CLIP preprocessing (bicubic to 16 px: identity here, mean/std), two convs, pool, proj
    mean, std = (torch.tensor(c, device=device).view(1, 3, 1, 1) for c in (CLIP_MEAN, CLIP_STD))
    u = ((x + 1) / 2 - mean) / std
    h = F.gelu(enc.image["conv2"](F.gelu(enc.image["conv1"](u))))
    e = enc.image["proj"](h.mean((-2, -1)))
    h = e / e.norm(dim=-1, keepdim=True)
    state = {k: v.to(device) for k, v in aesthetic_head_state().items()}
    for i in (0, 2, 4, 6, 7):
        h = h @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    assert r.shape == (4,) and (r - h[:, 0].cpu()).abs().max() < 1e-5
    assert (r[1:] - r[0]).abs().max() > 1e-4                                    # depends on the image


def test_aesthetic_reads_a_torch_state_dict_like_the_published_pth(tmp_path, device):
    pth = tmp_path / "head.pth"
    torch.save(aesthetic_head_state(), pth)                                     # the published file's format
    x = _images().to(device)
    a = load_reward("aesthetic", str(pth), encoder=CLIP).to(device)
    want = load_reward("aesthetic", HEAD, encoder=CLIP).to(device)(x).cpu()
    assert torch.allclose(a(x).cpu(), want, atol=1e-6)
    assert a.files["weights"] == _sha(pth)


def test_layers_are_applied_in_numeric_order_of_their_index(tmp_path, device):
    """Keys layers.2 and layers.10 (sorted as numbers, not as text: 10 after 2): r = W10 (W2 e + b2) + b10."""
    enc = TinyCLIP.from_state(load_state_dict(CLIP)).to(device)
    x = _images().to(device)
    e = enc.encode_image(x)
    e = e / e.norm(dim=-1, keepdim=True)
    g = torch.Generator().manual_seed(3)
    state = {"layers.2.weight": torch.randn(5, e.shape[-1], generator=g), "layers.2.bias": torch.randn(5, generator=g),
             "layers.10.weight": torch.randn(1, 5, generator=g), "layers.10.bias": torch.randn(1, generator=g)}
    save_file(state, str(tmp_path / "two.safetensors"))                       # from the CPU
    r = AestheticPredictor(str(tmp_path / "two.safetensors"), CLIP).to(device)(x).cpu()
    state = {k: v.to(device) for k, v in state.items()}
    want = (e @ state["layers.2.weight"].T + state["layers.2.bias"]) @ state["layers.10.weight"].T + state["layers.10.bias"]
    assert r.shape == (4,) and (r - want[:, 0].cpu()).abs().max() < 1e-5


def test_a_head_of_more_than_one_output_is_refused(tmp_path):
    state = aesthetic_head_state()
    state["layers.7.weight"], state["layers.7.bias"] = state["layers.7.weight"].repeat(2, 1), state["layers.7.bias"].repeat(2)
    save_file(state, str(tmp_path / "two_outputs.safetensors"))
    with pytest.raises(ValueError, match="the head's last layer has 2 outputs, expected 1 \\(one score per image\\)"):
        AestheticPredictor(str(tmp_path / "two_outputs.safetensors"), CLIP)
