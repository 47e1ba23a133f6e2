"""One cell of a sweep: build (task, denoiser, objective, method) from its spec (benchmark.spec), run the rounds,
measure every round, and write one Parquet file, whatever happens (and for an image task a PNG
gallery of the last round's samples beside it: the same path with suffix .png).

Errors in the cell's *specification* (unknown names, impossible combinations, a missing or damaged
checkpoint) raise ValueError before anything runs and nothing is written. Errors *while running*
(an exception, samples that turn NaN/inf) are recorded: the rows measured so far plus the failing
round, every row carrying the status ('diverged' / 'failed') and the error text, so a sweep shows
the gap instead of dying.

A cell is identified by its specification and the content of the network files it loads
(`Cell.run_id`, `Cell.checkpoint_sha256`): another checkpoint under the same name is another run_id.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import resource
import sys
import traceback
from pathlib import Path

import torch

from benchmark.denoisers import DENOISERS, network_metadata
from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, Sampler
from benchmark.images.gallery import gallery_path, save_gallery
from benchmark.methods import make_method
from benchmark.metrics import sample_measures
from benchmark.optimize import run_rounds
from benchmark.results import provenance, to_table, write_atomic
from benchmark.spec import CellSpec
from benchmark.tasks import make_task
from benchmark.tasks.networks import jacobian_summary

log = logging.getLogger(__name__)


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


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use 'cpu' or 'auto'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
    return device


class Cell:
    """The built components of a cell. The spec was validated when it was made (benchmark.spec); what
    only the built components can tell (a missing or damaged network file, a checkpoint of another
    task, a classifier on another schedule) raises ValueError here, before anything runs."""

    def __init__(self, spec: CellSpec, device: str = "auto"):
        self.spec = spec
        self.device = resolve_device(device)
        self.task = make_task(spec.task, spec.task_seed, models_dir=spec.models_dir, **spec.task_params)
        self.method = make_method(spec.method, spec.strength, **spec.params)
        self.config = spec.rounds
        self.objective = (self.task.objective(spec.objective, spec.objective_params)
                          .for_chains(spec.rounds.samples).to(self.device))
        loaded = DENOISERS[spec.denoiser.loader].load(spec, self.task, self.device)
        self.trainable = loaded.trainable
        schedule = loaded.schedule
        self.networks = dict(loaded.networks)
        for kind, path in type(self.task).network_files(spec.objective, spec.models_dir).items():
            self.networks[kind] = network_record(path, kind)
        if getattr(self.method, "uses_noisy_log_prob", False):
            self._check_noisy_classifier(schedule)
        self.costs = Costs()
        self.sampler = Sampler(CountingDenoiser(loaded.model.to(self.device), self.costs), schedule,
                               steps=spec.sampling.steps, eta=spec.sampling.eta)
        self.schedule = schedule

    def checkpoint_sha256(self) -> str | None:
        """sha256 of the one network file the cell loads, or of the lines `<kind> <sha256>` of several
        (digits); None when it loads none (the oracle)."""
        digests = {kind: rec["sha256"] for kind, rec in self.networks.items() if rec.get("sha256")}
        if len(digests) <= 1:
            return next(iter(digests.values()), None)
        return hashlib.sha256("".join(f"{k} {d}\n" for k, d in sorted(digests.items())).encode()).hexdigest()

    def checkpoint_info(self) -> str | None:
        """JSON: per network file loaded, its path, sha256 and training figures (`network_record`)."""
        return json.dumps(self.networks, sort_keys=True) if self.networks else None

    def run_id(self) -> str:
        """A hash of the specification (less where its files lie) and of the content of the network
        files it loads: another checkpoint under the same path is another cell."""
        blob = {"spec": self.spec.identity(), "checkpoint_sha256": self.checkpoint_sha256()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def settings(self) -> dict:
        """The run settings the results record (settings_json): the spec's, with the schedule the
        denoiser actually samples with and the objective's parameters with their defaults."""
        settings = self.spec.settings()
        settings["sampling"] |= {"schedule": self.schedule.name, "T": self.schedule.T,
                                 "steps": len(self.sampler.steps)}
        settings["objective_params"] = self.objective.params()
        return settings

    def _check_noisy_classifier(self, schedule) -> None:
        """Classifier guidance needs log p(c | x_t, t) trained on the sampler's own timesteps."""
        if not hasattr(self.objective, "noisy_log_prob"):
            raise ValueError(f"method {self.spec.method!r} needs an objective with a noise-conditional classifier "
                             f"(noisy_log_prob); objective {self.spec.objective!r} of task {self.spec.task!r} has none")
        trained_on = tuple(self.objective.noise_schedule)
        if trained_on != (schedule.name, schedule.T):
            raise ValueError(f"the noise-conditional classifier was trained on schedule {trained_on[0]!r} with "
                             f"T={trained_on[1]}, the denoiser samples with {schedule.name!r}, T={schedule.T}; "
                             "pre-train them with the same --schedule and --T")

    def rounds(self):
        counted = CountingObjective(self.objective, self.costs)
        return run_rounds(task=self.task, objective=counted, method=self.method, sampler=self.sampler,
                          costs=self.costs, config=self.config, seed=self.spec.seed,
                          denoiser_name=self.spec.denoiser.name, device=self.device, trainable=self.trainable)


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_cell(spec: CellSpec, device: str = "auto", progress: bool | None = None,
             gallery: str | Path | None = None) -> list[dict]:
    """Run the cell and return its rows (status recorded on every row); one log line per round.

    gallery: for an image task, where to write the last round's samples as a PNG grid (written
    whatever the status: a cell with no samples gets a tile saying so)."""
    cell = Cell(spec, device)
    r = spec.rounds
    base = {
        "run_id": cell.run_id(), "task": spec.task, "objective": spec.objective, "denoiser": spec.denoiser.name,
        "method": spec.method, "strength": float(spec.strength), "seed": spec.seed,
        "algorithm": r.algorithm, "linearise": r.linearise, "samples": r.samples,
        "steps": len(cell.sampler.steps), "eta": spec.sampling.eta, "schedule": cell.schedule.name,
        "params_json": json.dumps(cell.method.params(), sort_keys=True),
        "settings_json": json.dumps(cell.settings(), sort_keys=True),
        "checkpoint_sha256": cell.checkpoint_sha256(), "checkpoint_info": cell.checkpoint_info(),
    } | provenance(cell.device)
    if cell.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rows: list[dict] = []
    status, error = "ok", None
    iterator = cell.rounds()
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, total=r.rounds + 1, desc=f"{spec.method} {spec.objective}", unit="round")
    last = None
    try:
        for rnd in iterator:
            last = rnd.z
            finite = bool(torch.isfinite(rnd.z).all())
            metrics, per_sample = (sample_measures(rnd.z, cell.objective, cell.task) if finite
                                   else ({"reward_mean": math.nan}, {}))
            cost = {f"cost_{k}": v for k, v in rnd.costs.as_dict().items()}
            for name, value in metrics.items():
                rows.append(base | cost | {"round": rnd.index, "metric": name, "value": float(value),
                                           "per_sample": per_sample.get(name), "wall_seconds": rnd.wall_seconds})
            log.info("seed %d round %d/%d: reward %.4g%s, %.2f s", spec.seed, rnd.index, r.rounds,
                     metrics.get("reward_mean", math.nan),
                     "".join(f", {k} {v:.4g}" for k, v in metrics.items() if k != "reward_mean")[:200],
                     rnd.wall_seconds)
            if not finite:
                status, error = "diverged", f"non-finite samples in round {rnd.index}"
                break
    except Exception as exc:  # recorded, not raised: the sweep must go on
        status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
        rows.append(base | {f"cost_{k}": 0 for k in Costs().as_dict()} | {
            "round": (rows[-1]["round"] + 1) if rows else 0, "metric": "reward_mean", "value": math.nan,
            "per_sample": None, "wall_seconds": 0.0})
    peak = _peak_memory_mb(cell.device)
    for r in rows:
        r.update(status=status, error=error, peak_memory_mb=peak)
    if gallery is not None and cell.task.is_image:
        save_gallery(last, gallery)
    return rows


def write_cell(spec: CellSpec, out: str | Path, device: str = "auto", progress: bool | None = None) -> list[dict]:
    """Run the cell and write its Parquet file; for an image task its gallery first (`gallery_path(out)`,
    the same path with suffix .png), so a cell whose Parquet file exists has its gallery too."""
    rows = run_cell(spec, device, progress=progress, gallery=gallery_path(out))
    write_atomic(to_table(rows), out)
    return rows
