"""The one checkpoint format of every network the suite trains: a safetensors file (tensors only, no
pickle) whose string metadata carries the network kind, its architecture, the architecture's
constructor arguments (`model.config`) and the training report.

`save_network` writes atomically (a temporary name, then a rename: an interrupted write leaves no
half-written file under the final name); `load_network` rebuilds the architecture named in the file
from the caller's table and loads the tensors. A missing file raises FileNotFoundError, a damaged one
CheckpointError; both name the file and the command that rebuilds it. Denoisers
(benchmark.denoisers.pretrain) and classifiers (benchmark.classifiers.pretrain) wrap these two.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from benchmark.results import atomic_path


class CheckpointError(ValueError):
    """A network file that is not a valid checkpoint (empty, truncated, random bytes, wrong tensors):
    one line naming the file and the command that rebuilds it."""


def invalid_checkpoint(path: str | Path, exc: BaseException | str, network: str = "denoiser") -> CheckpointError:
    """The error for a damaged checkpoint; the task is read from the workflow's file name
    `<task>_<network>.safetensors` (TASK when the name does not follow it)."""
    path = Path(path)
    reason = exc if isinstance(exc, str) else (
        f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}".rstrip(": "))
    task = _task_of(path, network)
    return CheckpointError(f"{path} is not a valid checkpoint ({reason}); rebuild it: rm {path} and rerun "
                           f"`snakemake --cores all`, or `python -m benchmark pretrain --task {task} "
                           f"--network {network} --out {path}`")


def _task_of(path: Path, network: str) -> str:
    """The task in the workflow's file name `<task>_<network>.safetensors` (TASK when it does not follow it)."""
    suffix = f"_{network}.safetensors"
    return path.name[:-len(suffix)] if path.name.endswith(suffix) and len(path.name) > len(suffix) else "TASK"


def network_metadata(path: str | Path, network: str = "denoiser") -> dict:
    """A checkpoint's string metadata {network, arch, config, report} (config and report parsed), read
    without loading its tensors; a file that is not a valid checkpoint raises CheckpointError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        kind = meta.get("network", "denoiser" if meta.get("arch") else None)
        return {"network": kind, "arch": meta["arch"], "config": json.loads(meta["config"]),
                "report": json.loads(meta["report"])}
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors, json and a missing key each raise their own type
        raise invalid_checkpoint(path, exc, network) from None


def load_weights(model: torch.nn.Module, path: str | Path, network: str = "denoiser") -> None:
    """Load the checkpoint's tensors into `model`; damaged or mismatched tensors raise CheckpointError."""
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:
        raise invalid_checkpoint(path, exc, network) from None


def save_network(path: str | Path, model: torch.nn.Module, network: str, report: dict,
                 architectures: dict[str, type]) -> None:
    """Atomic write of `model` (one of `architectures`, by class name) as a `network` checkpoint."""
    arch = type(model).__name__
    if architectures.get(arch) is not type(model):
        raise ValueError(f"cannot save a {arch} as a {network!r} checkpoint; allowed: {sorted(architectures)}")
    meta = {"network": network, "arch": arch, "config": json.dumps(model.config), "report": json.dumps(report)}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


def load_network(path: str | Path, network: str, architectures: dict[str, type],
                 device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, metadata) of a `network` checkpoint whose architecture is one of
    `architectures` (class name -> class); nothing is unpickled."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; make it with `python -m benchmark pretrain "
                                f"--task {_task_of(path, network)} --network {network} --out {path}` (or the "
                                "workflow's pretrain rule)")
    meta = network_metadata(path, network)
    if meta["network"] != network:
        raise ValueError(f"{path} is a {meta['network']!r} checkpoint; expected {network!r}")
    if meta["arch"] not in architectures:
        raise ValueError(f"{path}: architecture {meta['arch']!r} is not one of the {network}'s "
                         f"{sorted(architectures)}")
    try:
        model = architectures[meta["arch"]](**meta["config"])
    except Exception as exc:
        raise invalid_checkpoint(path, exc, network) from None
    load_weights(model, path, network)
    return model.to(device).eval(), meta
