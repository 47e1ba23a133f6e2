"""Reward models: differentiable learned image rewards loaded from local weights, as plug-ins.

The protocol (`RewardModel`): a torch module built as `cls(weights, **options)` from a local weights path (a
file or a folder; nothing is downloaded), called on images [B, C, H, W] in the task's range [-1, 1] and
returning one differentiable reward per image, [B]; its `name` says what it is and `version` is a digest of
every weights file it loaded (sha256, `weights_digest`), so that the results name the reward model and its
version (the `reward_model` objective records both in settings_json's objective_params). Options are the
constructor's keywords after `weights` (the objective passes `encoder` and `prompt` to those that take them).

Weights are read only as tensors: safetensors, or torch.load(weights_only=True) for a `.pt` / `.pth` / `.bin`
state dict (`load_state_dict`), never unpickling code.

BUILTIN_REWARDS lists the built-in adapters, one line each (`module:Class`, imported on first use); REWARDS
holds the plug-ins: entry points of group `guidebench.rewards` (the entry point's name is the reward model's)
or `package.module:Class` import paths written in a config. Adding a reward model is one file (a class) plus
one entry-point line, or an import path in the config alone.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from benchmark.registry import Registry, import_path

#: The built-in reward models, one line each: `module:Class` of a class with a `name`, built as cls(weights, ...).
BUILTIN_REWARDS: tuple[str, ...] = (
    "benchmark.rewards.aesthetic:AestheticPredictor",
    "benchmark.rewards.clip_score:ClipScore",
    "benchmark.rewards.pickscore:PickScore",
)

REWARDS: Registry[type] = Registry("reward model", "guidebench.rewards", {})

#: Suffixes of state dicts read with torch.load(weights_only=True); anything else must be safetensors.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@runtime_checkable
class RewardModel(Protocol):
    """A differentiable image reward: images [B, C, H, W] in [-1, 1] -> rewards [B] (to maximise)."""

    #: What the reward model is (e.g. "aesthetic"), recorded with the results.
    name: str
    #: A digest of the weights it loaded (sha256 of the file, or of several files' `<role> <sha256>` lines).
    version: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_digest(path: str | Path) -> str:
    """sha256 of a weights file, or of a folder's lines `<relative path> <sha256>` over its files, sorted."""
    path = Path(path)
    if path.is_dir():
        lines = "".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n"
                        for p in sorted(path.rglob("*")) if p.is_file())
        return hashlib.sha256(lines.encode()).hexdigest()
    return sha256_file(path)


def combined_digest(files: dict[str, str]) -> str:
    """One digest of several weights: the file's own for one, else sha256 of the lines `<role> <sha256>`."""
    if len(files) == 1:
        return next(iter(files.values()))
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def local_path(owner: str, path, what: str = "weights") -> Path:
    """`path` as an existing local file or folder; ValueError naming `owner` and what is missing."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"{owner}: {what} must be a local file or folder path, got {path!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{owner}: {what} {str(p)!r} does not exist (nothing is downloaded: put the weights "
                         "there beforehand)")
    return p


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from safetensors, or from a torch file with torch.load(weights_only=True)."""
    path = Path(path)
    if path.suffix.lower() in TORCH_SUFFIXES:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{str(path)!r} is not a state dict of tensors")
        return state
    from safetensors.torch import load_file

    return load_file(str(path))


def builtin_rewards() -> dict[str, type]:
    """name -> class of the built-in reward models (BUILTIN_REWARDS), in order."""
    out = {}
    for path in BUILTIN_REWARDS:
        cls = import_path(path)
        if not (isinstance(cls, type) and getattr(cls, "name", "")):
            raise ValueError(f"built-in reward model {path!r} must be a class with a class attribute `name`")
        out[cls.name] = cls
    return out


def reward_names() -> list[str]:
    """The built-in reward models' names, then the plug-ins' (entry points of `guidebench.rewards`)."""
    own = builtin_rewards()
    return list(own) + [n for n in REWARDS if n not in own]


def reward_class(name: str) -> type:
    """The class reward model `name` is built from: a built-in, a plug-in's entry point, or an import path
    'package.module:Class'; ValueError naming the allowed names."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward model must be a name, one of {reward_names()} or 'package.module:Class', "
                         f"got {name!r}")
    own = builtin_rewards()
    if name in own:
        return own[name]
    cls = REWARDS.get(name) if ":" not in name else REWARDS[name]    # an import path says why it failed
    if cls is None:
        raise ValueError(f"unknown reward model {name!r}; allowed: {reward_names()} (or an import path "
                         "'package.module:Class', or a plug-in's entry point in group 'guidebench.rewards')")
    if not isinstance(cls, type):
        raise ValueError(f"reward model {name!r} resolves to {cls!r}, not a class built as cls(weights, ...)")
    return cls


def reward_options(cls: type) -> dict:
    """{keyword: default} of the reward model's constructor after `weights` (inspect.Parameter.empty: required)."""
    params = list(inspect.signature(cls).parameters.values())[1:]
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_reward(name: str, weights, options: dict) -> type:
    """The class of reward model `name`, after checking (without loading anything) that `weights` is a path
    and that `options` (the non-None ones) are keywords its constructor takes, its required ones given."""
    cls = reward_class(name)
    if not isinstance(weights, (str, Path)) or not str(weights):
        raise ValueError(f"reward model {name!r} needs weights: the local path of its weights file or folder, "
                         f"got {weights!r}")
    takes = reward_options(cls)
    given = {k for k, v in options.items() if v is not None}
    unknown = sorted(given - set(takes))
    if unknown:
        raise ValueError(f"reward model {name!r} takes no option(s) {unknown}; it takes {sorted(takes) or 'none'}")
    missing = sorted(k for k, d in takes.items() if d is inspect.Parameter.empty and k not in given)
    if missing:
        raise ValueError(f"reward model {name!r} needs option(s) {missing}")
    return cls


def load_reward(name: str, weights, **options) -> torch.nn.Module:
    """Reward model `name` built from its local `weights` with `options` (None ones dropped), frozen, eval mode;
    ValueError when it does not follow the protocol (a `name` and a `version`)."""
    options = {k: v for k, v in options.items() if v is not None}
    cls = check_reward(name, weights, options)
    model = cls(str(weights), **options)
    if not (isinstance(getattr(model, "name", None), str) and isinstance(getattr(model, "version", None), str)
            and callable(model)):
        raise ValueError(f"reward model {name!r} ({cls.__module__}.{cls.__qualname__}) must be callable and have "
                         "string attributes `name` and `version` (the digest of its weights)")
    if isinstance(model, torch.nn.Module):
        model.eval().requires_grad_(False)
    return model


__all__ = ["BUILTIN_REWARDS", "REWARDS", "RewardModel", "builtin_rewards", "check_reward", "combined_digest",
           "load_reward", "load_state_dict", "local_path", "reward_class", "reward_names", "sha256_file",
           "weights_digest"]
