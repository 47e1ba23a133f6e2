"""Reward models as plug-ins (issue 26, benchmark.rewards): the protocol, the built-in adapters (aesthetic
predictor, CLIP score) on tiny random stand-ins (tests/reward_fixture.py), the `reward_model` objective of the
images task and what it records (the reward model's name and version), plug-ins by import path and entry point,
and loading that never unpickles code."""

import hashlib
import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from benchmark.rewards import (REWARDS, RewardModel, builtin_rewards, combined_digest, load_reward, load_state_dict,
                               reward_names)
from benchmark.rewards.encoders import CLIP_MEAN, CLIP_STD, TinyCLIP
from benchmark.tasks import TASKS
from benchmark.tasks.images import ImagesTask
from tests.reward_fixture import FIXTURES, NoVersion, aesthetic_head_state, write_reward_weights

CLIP = str(FIXTURES / "tiny_clip.safetensors")
HEAD = str(FIXTURES / "aesthetic_head.safetensors")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _images(B=4, C=3, size=16, seed=0):
    return torch.rand(B, C, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_committed_stand_ins_are_the_generated_ones(tmp_path):
    written = write_reward_weights(tmp_path)
    for path in written.values():
        assert (FIXTURES / path.name).read_bytes() == path.read_bytes(), path.name


def test_builtins_and_protocol():
    assert list(builtin_rewards()) == ["aesthetic", "clip_score"] and reward_names()[:2] == ["aesthetic", "clip_score"]
    a = load_reward("aesthetic", HEAD, encoder=CLIP)
    c = load_reward("clip_score", CLIP, prompt="a red square")
    for m in (a, c):
        assert isinstance(m, RewardModel) and not m.training
        assert not any(p.requires_grad for p in m.parameters())                # frozen
    assert a.name == "aesthetic" and a.files == {"weights": _sha(HEAD), "encoder": _sha(CLIP)}
    assert a.version == hashlib.sha256(f"encoder {_sha(CLIP)}\nweights {_sha(HEAD)}\n".encode()).hexdigest()
    assert c.name == "clip_score" and c.version == _sha(CLIP) == combined_digest({"weights": _sha(CLIP)})


def test_aesthetic_is_the_published_head_on_normalised_embeddings():
    """r = W5(W4(W3(W2(W1 e + b1) + b2) + b3) + b4) + b5, e = E(x)/||E(x)||, no nonlinearity (published MLP)."""
    x = _images()
    r = load_reward("aesthetic", HEAD, encoder=CLIP)(x)
    enc = TinyCLIP.from_state(load_state_dict(CLIP))
    # the encoder by hand: CLIP preprocessing (bicubic to 16 px: identity here, mean/std), two convs, pool, proj
    u = ((x + 1) / 2 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    h = F.gelu(enc.image["conv2"](F.gelu(enc.image["conv1"](u))))
    e = enc.image["proj"](h.mean((-2, -1)))
    h = e / e.norm(dim=-1, keepdim=True)
    state = aesthetic_head_state()
    for i in (0, 2, 4, 6, 7):
        h = h @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    assert r.shape == (4,) and (r - h[:, 0]).abs().max() < 1e-5
    assert (r[1:] - r[0]).abs().max() > 1e-4                                    # depends on the image


def test_aesthetic_reads_a_torch_state_dict_like_the_published_pth(tmp_path):
    pth = tmp_path / "head.pth"
    torch.save(aesthetic_head_state(), pth)                                     # the published file's format
    x = _images()
    a = load_reward("aesthetic", str(pth), encoder=CLIP)
    assert torch.allclose(a(x), load_reward("aesthetic", HEAD, encoder=CLIP)(x), atol=1e-6)
    assert a.files["weights"] == _sha(pth)


class _Touch:
    """Unpickling this runs Path.touch: what weights_only=True must refuse."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_loading_never_unpickles_code(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "head.pth"
    torch.save(aesthetic_head_state() | {"x": _Touch(marker)}, bad)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(bad)
    assert not marker.exists()


def test_rewards_are_differentiable_batch_independent_and_grey_ok():
    x = _images(3).double().requires_grad_()
    for m in (load_reward("aesthetic", HEAD, encoder=CLIP), load_reward("clip_score", CLIP, prompt="a cat")):
        m = m.double()
        (g,) = torch.autograd.grad(m(x).sum(), x)
        v, h = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype), 1e-6
        with torch.no_grad():                                                  # central difference along v
            fd = (m(x + h * v).sum() - m(x - h * v).sum()) / (2 * h)
        assert g.abs().sum() > 0 and abs(float((g * v).sum() - fd)) < 1e-6 * max(1.0, abs(float(fd)))
        assert torch.allclose(m(x[1:2]), m(x)[1:2])                            # one image's reward alone
        grey = x[:, :1].detach()
        assert torch.allclose(m(grey), m(grey.expand(-1, 3, -1, -1)))          # grey = repeated to RGB


def test_clip_score_is_100_cosine_with_the_prompt():
    x = _images()
    enc = TinyCLIP.from_state(load_state_dict(CLIP))
    r = load_reward("clip_score", CLIP, prompt="a red square")(x)
    e_i, e_t = enc.encode_image(x), enc.encode_text(["a red square"])
    assert (r - 100 * F.cosine_similarity(e_i, e_t)).abs().max() < 1e-4
    other = load_reward("clip_score", CLIP, prompt="a blue circle")(x)
    assert (other - r).abs().max() > 1e-3                                       # the prompt matters


def test_a_clip_folder_without_transformers_names_what_to_install(tmp_path, monkeypatch):
    folder = tmp_path / "clip-vit-large-patch14"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)                    # import transformers fails
    for name, kw in (("clip_score", {"prompt": "a dog"}), ("aesthetic", {"encoder": str(folder)})):
        weights = str(folder) if name == "clip_score" else HEAD
        with pytest.raises(ValueError, match=r"pip install transformers") as err:
            load_reward(name, weights, **kw)
        assert str(folder) in str(err.value) and "TinyCLIP" in str(err.value)


def test_missing_weights_and_bad_options_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist \(nothing is downloaded"):
        load_reward("aesthetic", str(tmp_path / "none.safetensors"), encoder=CLIP)
    with pytest.raises(ValueError, match=r"unknown reward model 'nope'; allowed: \['aesthetic', 'clip_score'"):
        load_reward("nope", HEAD)
    with pytest.raises(ValueError, match=r"'aesthetic' takes no option\(s\) \['prompt'\]"):
        load_reward("aesthetic", HEAD, encoder=CLIP, prompt="x")
    with pytest.raises(ValueError, match=r"'clip_score' needs option\(s\) \['prompt'\]"):
        load_reward("clip_score", CLIP)
    with pytest.raises(ValueError, match=r"no keys layers.<i>.weight"):
        load_reward("aesthetic", CLIP, encoder=CLIP)


# --- the images task's objective ---------------------------------------------------------------------

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


# --- plug-ins: one class, named by import path or entry point ------------------------------------------

@pytest.fixture
def scale_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "scale.safetensors"
    save_file({"scale": torch.tensor(2.0)}, str(path))
    return str(path)


def test_a_plugin_by_import_path_is_config_only(scale_file):
    obj = _task().objective("reward_model", {"model": "reward_fixture:Brightness", "weights": scale_file})
    x = _images()
    assert torch.allclose(obj(x), 2 * x.flatten(1).mean(-1))
    assert obj.params()["sha256"] == _sha(scale_file) and obj.reward.name == "brightness"


def test_a_plugin_by_entry_point(scale_file, monkeypatch):
    from reward_fixture import Brightness

    monkeypatch.setattr(REWARDS, "_plugins", {"bright": Brightness, "broken": NoVersion})
    assert "bright" in reward_names()
    assert load_reward("bright", scale_file).version == _sha(scale_file)
    with pytest.raises(ValueError, match="string attributes `name` and `version`"):
        load_reward("broken", scale_file)
