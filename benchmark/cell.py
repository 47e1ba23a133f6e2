"""One cell of a sweep: build (task, denoiser, objective, method) from names, run the rounds,
measure every round, and write one Parquet file, whatever happens (and for an image task a PNG
gallery of the last round's samples beside it: the same path with suffix .png).

Errors in the cell's *specification* (unknown names, impossible combinations, a missing or damaged
checkpoint) raise ValueError before anything runs and nothing is written. Errors *while running*
(an exception, samples that turn NaN/inf) are recorded: the rows measured so far plus the failing
round, every row carrying the status ('diverged' / 'failed') and the error text, so a sweep shows
the gap instead of dying.

A cell is identified by its specification and the content of the network files it loads
(`CellSpec.checkpoint_sha256`): another checkpoint under the same name is another run_id.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import resource
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.denoisers import DENOISERS, load_checkpoint, network_metadata
from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, Sampler, make_schedule
from benchmark.gallery import gallery_path, save_gallery
from benchmark.methods import make_method
from benchmark.metrics import sample_measures
from benchmark.optimize import RoundsConfig, run_rounds
from benchmark.results import provenance, to_table, write_atomic
from benchmark.tasks import TASKS, make_task


@dataclass(frozen=True)
class CellSpec:
    task: str
    objective: str
    method: str
    strength: float = 0.0
    seed: int = 0
    rounds: int = 50
    samples: int = 32
    denoiser: str = "oracle"
    checkpoint: str | None = None      # required for denoiser 'trained'
    steps: int | None = None           # sampling steps (default: every step of the schedule)
    eta: float = 1.0
    schedule: str = "cosine"           # oracle only; a trained denoiser brings its own
    T: int = 200                       # oracle only
    algorithm: str = "alg1"
    linearise: str = "per_sample"
    finetune_start: int = 50
    finetune_lr: float = 1e-6
    finetune_steps: int = 1
    task_seed: int = 0
    device: str = "auto"
    params: dict = field(default_factory=dict)   # the method's own hyper-parameters
    objective_params: dict = field(default_factory=dict)  # e.g. the target class of digits' 'label'
    models_dir: str | None = None      # pre-trained classifiers of tasks that load them (digits)

    def run_id(self) -> str:
        """A hash of the specification (less where it runs and where its files lie) and of the content
        of the network files it loads: another checkpoint under the same path is another cell."""
        blob = dataclasses.asdict(self) | {"device": None, "checkpoint": None, "models_dir": None}
        sha = self.checkpoint_sha256()
        if sha is not None:  # the oracle's cells keep the ids they had before checkpoints were hashed
            blob["checkpoint_sha256"] = sha
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def network_files(self) -> dict[str, Path]:
        """{kind: file} of every network file the cell loads: the denoiser checkpoint (denoiser
        'trained') and the pre-trained networks its task loads for its objective (digits' classifiers)."""
        files = {"denoiser": Path(self.checkpoint)} if self.denoiser != "oracle" and self.checkpoint else {}
        if self.task in TASKS:
            files |= TASKS[self.task].network_files(self.objective, self.models_dir)
        return files

    def checkpoint_sha256(self) -> str | None:
        """sha256 of the one network file the cell loads (its weights, architecture and metadata less
        the training report: see _file_sha256), or of the lines `<kind> <sha256>` of several (digits);
        None when it loads none (the oracle)."""
        digests = {kind: file_sha256(path) for kind, path in self.network_files().items()}
        if len(digests) <= 1:
            return next(iter(digests.values()), None)
        return hashlib.sha256("".join(f"{k} {d}\n" for k, d in sorted(digests.items())).encode()).hexdigest()

    def checkpoint_info(self) -> str | None:
        """JSON: per network file loaded, its path, sha256 and training figures (the scalar entries of
        the report embedded in the checkpoint: epochs, held-out / validation / test loss, parameters...;
        not where, when and how fast it trained, which differ between bit-identical trainings)."""
        info = {}
        for kind, path in self.network_files().items():
            report = network_metadata(path, kind)["report"]
            figures = {k: v for k, v in report.items() if (v is None or isinstance(v, (bool, int, float, str)))
                       and not _RUN_FACT.search(k)}
            info[kind] = {"file": str(path), "sha256": file_sha256(path)} | figures
        return json.dumps(info, sort_keys=True) if info else None


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
    """The built components of a cell (raises ValueError on an impossible specification)."""

    def __init__(self, spec: CellSpec):
        self.spec = spec
        self.device = resolve_device(spec.device)
        if spec.denoiser not in DENOISERS:
            raise ValueError(f"unknown denoiser {spec.denoiser!r}; allowed: {list(DENOISERS)}")
        self.task = make_task(spec.task, spec.task_seed, models_dir=spec.models_dir)
        self.method = make_method(spec.method, spec.strength, **spec.params)
        self.config = RoundsConfig(rounds=spec.rounds, samples=spec.samples, algorithm=spec.algorithm,
                                   linearise=spec.linearise, finetune_start=spec.finetune_start,
                                   finetune_lr=spec.finetune_lr, finetune_steps=spec.finetune_steps)
        self.objective = (self.task.objective(spec.objective, spec.objective_params)
                          .for_chains(spec.samples).to(self.device))
        self.trainable = None
        if spec.denoiser == "oracle":
            if spec.algorithm == "alg2":
                raise ValueError("algorithm 'alg2' fine-tunes the score network: use denoiser 'trained'")
            schedule = make_schedule(spec.schedule, spec.T)
            model = self.task.oracle(schedule)
        else:
            if not spec.checkpoint:
                raise ValueError("denoiser 'trained' needs --checkpoint (made by `python -m benchmark pretrain`)")
            model, schedule, report = load_checkpoint(spec.checkpoint, self.device)
            if report.get("task") != spec.task or report.get("task_seed") != spec.task_seed:
                raise ValueError(f"checkpoint {spec.checkpoint} was trained on task {report.get('task')!r} "
                                 f"(task_seed {report.get('task_seed')}), not {spec.task!r} ({spec.task_seed})")
            model.requires_grad_(False)
            self.trainable = model
        if getattr(self.method, "uses_noisy_log_prob", False):
            self._check_noisy_classifier(schedule)
        self.costs = Costs()
        self.sampler = Sampler(CountingDenoiser(model.to(self.device), self.costs), schedule,
                               steps=spec.steps, eta=spec.eta)
        self.schedule = schedule

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
                          denoiser_name=self.spec.denoiser, device=self.device, trainable=self.trainable)


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_cell(spec: CellSpec, progress: bool | None = None, gallery: str | Path | None = None) -> list[dict]:
    """Run the cell and return its rows (status recorded on every row).

    gallery: for an image task, where to write the last round's samples as a PNG grid (written
    whatever the status: a cell with no samples gets a tile saying so)."""
    cell = Cell(spec)
    spec_params = cell.method.params() | {
        "algorithm": spec.algorithm, "linearise": spec.linearise, "rounds": spec.rounds,
        "denoiser": spec.denoiser, "schedule": cell.schedule.name, "T": cell.schedule.T,
        "finetune_start": spec.finetune_start, "finetune_lr": spec.finetune_lr,
        "finetune_steps": spec.finetune_steps, "task_seed": spec.task_seed,
        "objective_params": cell.objective.params(),
    }
    base = {
        "run_id": spec.run_id(), "task": spec.task, "objective": spec.objective, "denoiser": spec.denoiser,
        "method": spec.method, "strength": float(spec.strength), "seed": spec.seed,
        "algorithm": spec.algorithm, "linearise": spec.linearise, "samples": spec.samples,
        "steps": len(cell.sampler.steps), "eta": spec.eta, "schedule": cell.schedule.name,
        "params_json": json.dumps(spec_params, sort_keys=True),
        "checkpoint_sha256": spec.checkpoint_sha256(), "checkpoint_info": spec.checkpoint_info(),
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
        iterator = tqdm(iterator, total=spec.rounds + 1, desc=f"{spec.method} {spec.objective}", unit="round")
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


def write_cell(spec: CellSpec, out: str | Path, progress: bool | None = None) -> list[dict]:
    """Run the cell and write its Parquet file; for an image task its gallery first (`gallery_path(out)`,
    the same path with suffix .png), so a cell whose Parquet file exists has its gallery too."""
    rows = run_cell(spec, progress=progress, gallery=gallery_path(out))
    write_atomic(to_table(rows), out)
    return rows
