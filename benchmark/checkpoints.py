"""The one checkpoint format of every network the suite trains: a safetensors file (tensors only, no
pickle) whose string metadata carries the network kind, its architecture, the architecture's
constructor arguments (`model.config`) and the training report.

`save_network` writes atomically (a temporary name, then a rename: an interrupted write leaves no
half-written file under the final name); `load_network` rebuilds the architecture named in the file
from the caller's table and loads the tensors. A missing file raises FileNotFoundError, a damaged one
CheckpointError; both name the file and the command that rebuilds it. Denoisers
(benchmark.denoisers.pretrain) and classifiers (benchmark.classifiers.pretrain) wrap these two.
`network_record` is what a cell records of a network file it loads (path, content hash, training figures).
Where the workflow puts each checkpoint: benchmark.paths.checkpoint_file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from benchmark.paths import task_of_checkpoint
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
    return task_of_checkpoint(path.name, network) or "TASK"


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


def network_record(path: str | Path, kind: str) -> dict:
    """A network file the cell loads: its path, sha256 and training figures (the scalar entries of the
    report embedded in the checkpoint: epochs, held-out / validation / test loss, parameters...; not
    where, when and how fast it trained, which differ between bit-identical trainings)."""
    report = network_metadata(path, kind)["report"]
    figures = {k: v for k, v in report.items() if (v is None or isinstance(v, (bool, int, float, str)))
               and not _RUN_FACT.search(k)}
    return {"file": str(path), "sha256": file_sha256(path)} | figures | jacobian_summary(report)


#: Report entries about the training run rather than the network (timings, memory, host, device).
_RUN_FACT = re.compile(r"seconds|memory|hostname|started|device|threads")


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, cached while its size and modification time stay the same."""
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """For a safetensors file: sha256 of what determines the network (its tensors, their header and
    the metadata) less the training report, whose wall times differ between two bit-identical
    trainings; for anything else (or a file whose header does not parse) of all its bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = None
        if 0 < n <= min(size - 8, 100 << 20):
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
        if isinstance(header, dict):
            meta = dict(header.pop("__metadata__", None) or {})
            meta.pop("report", None)
            h.update(json.dumps([header, meta], sort_keys=True).encode())
        else:
            f.seek(0)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jacobian_summary(report: dict) -> dict:
    """The Jacobian diagnostics of a checkpoint's report (benchmark.diagnostics), averaged over noise
    levels, as flat entries `jacobian.<objective>.<measure>` (share in span(A), cosine and norm ratio of
    J^T g against the oracle's)."""
    out = {}
    for objective, levels in (report.get("jacobian") or {}).items():
        mean = levels.get("mean") if isinstance(levels, dict) else None
        for measure, value in (mean or {}).items():
            if isinstance(value, (int, float)):
                out[f"jacobian.{objective}.{measure}"] = float(value)
    return out
