"""benchmark/rewards/encoders.py and the reward registry (benchmark/rewards/__init__.py; issue 26): the tiny random
stand-ins (tests/reward_fixture.py) the tests load, the protocol the built-ins follow (frozen, named, versioned by
their files' sha256, differentiable, batch-independent, grey images as RGB), a CLIP folder without transformers,
errors naming what is missing, plug-ins by import path and entry point, and loading that never unpickles code.
Each built-in adapter's own formula: tests/rewards/test_aesthetic.py, tests/rewards/test_clip_score.py; the images
task's `reward_model` objective: tests/tasks/images/test_objectives.py. The gradient and encoder-value tests run on
the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import hashlib
import pickle
import sys
from pathlib import Path

import pytest
import torch

from benchmark.rewards import (REWARDS, RewardModel, builtin_rewards, combined_digest, load_reward, load_state_dict,
                               reward_names)
from benchmark.rewards.encoders import TinyCLIP, load_clip
from benchmark.tasks.images.task import ImagesTask
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
    builtins = ["aesthetic", "clip_score", "pickscore"]
    assert list(builtin_rewards()) == builtins and reward_names()[:3] == builtins
    a = load_reward("aesthetic", HEAD, encoder=CLIP)
    c = load_reward("clip_score", CLIP, prompt="a red square")
    for m in (a, c):
        assert isinstance(m, RewardModel) and not m.training
        assert not any(p.requires_grad for p in m.parameters())                # frozen
    assert a.name == "aesthetic" and a.files == {"weights": _sha(HEAD), "encoder": _sha(CLIP)}
    assert a.version == hashlib.sha256(f"encoder {_sha(CLIP)}\nweights {_sha(HEAD)}\n".encode()).hexdigest()
    assert c.name == "clip_score" and c.version == _sha(CLIP) == combined_digest({"weights": _sha(CLIP)})


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


def test_rewards_are_differentiable_batch_independent_and_grey_ok(device):
    x = _images(3).double().to(device).requires_grad_()
    for m in (load_reward("aesthetic", HEAD, encoder=CLIP), load_reward("clip_score", CLIP, prompt="a cat")):
        m = m.double().to(device)
        (g,) = torch.autograd.grad(m(x).sum(), x)
        v, h = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype).to(device), 1e-6
        with torch.no_grad():                                                  # central difference along v
            fd = (m(x + h * v).sum() - m(x - h * v).sum()) / (2 * h)
        assert g.abs().sum() > 0 and abs(float((g * v).sum() - fd)) < 1e-6 * max(1.0, abs(float(fd)))
        assert torch.allclose(m(x[1:2]).cpu(), m(x)[1:2].cpu())                # one image's reward alone
        grey = x[:, :1].detach()
        assert torch.allclose(m(grey).cpu(), m(grey.expand(-1, 3, -1, -1)).cpu())   # grey = repeated to RGB


def test_load_clip_reads_a_tinyclip_file_and_names_its_owner(tmp_path, device):
    enc, digest = load_clip(CLIP, "reward model 'x'")
    assert isinstance(enc, TinyCLIP) and digest == _sha(CLIP)
    enc, grey = enc.to(device), _images(2, C=1).to(device)
    assert torch.allclose(enc.encode_image(grey).cpu(), enc.encode_image(grey.expand(-1, 3, -1, -1)).cpu())   # as RGB
    with pytest.raises(ValueError, match=r"images must have 1 or 3 channels, got 2"):
        enc.encode_image(_images(2, C=2).to(device))
    with pytest.raises(ValueError, match=r"^reward model 'x': encoder '.*none.safetensors' does not exist"):
        load_clip(str(tmp_path / "none.safetensors"), "reward model 'x'")


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


# --- plug-ins: one class, named by import path or entry point ------------------------------------------

@pytest.fixture
def scale_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "scale.safetensors"
    save_file({"scale": torch.tensor(2.0)}, str(path))
    return str(path)


def test_a_plugin_by_import_path_is_config_only(scale_file):
    obj = ImagesTask(resolution=16, channels=3).objective("reward_model", {"model": "reward_fixture:Brightness",
                                                                           "weights": scale_file})
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
