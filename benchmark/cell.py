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

import hashlib
import json
import logging
import math
import resource
import sys
import traceback
from pathlib import Path

import torch

from benchmark.checkpoints import network_record
from benchmark.denoisers import DENOISERS
from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, Sampler
from benchmark.images.gallery import gallery_path, save_gallery
from benchmark.methods import make_method
from benchmark.metrics import sample_measures
from benchmark.optimize import run_rounds
from benchmark.results import provenance, to_table, write_atomic
from benchmark.spec import CellSpec
from benchmark.tasks import make_task

log = logging.getLogger(__name__)


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
        self._denoiser_networks = dict(loaded.networks)
        for kind, path in type(self.task).network_files(spec.objective, spec.models_dir).items():
            self.networks[kind] = network_record(path, kind)
        skipped, why = self.method.skip(self.objective)   # what the method says it cannot guide
        if skipped:
            raise ValueError(f"method {why}; objective {spec.objective!r} of task {spec.task!r} has none")
        if getattr(self.method, "uses_noisy_log_prob", False):
            self._check_noisy_classifier(schedule)
        self.costs = Costs()
        self.sampler = Sampler(CountingDenoiser(loaded.model.to(self.device), self.costs), schedule,
                               steps=spec.sampling.steps, eta=spec.sampling.eta,
                               clip_x0=self.task.data_range if spec.sampling.clip_x0 else None)
        self.schedule = schedule
        if hasattr(self.objective, "bind_sampler"):  # calibration also against the sampler's own unguided law
            self.objective.bind_sampler(self.sampler)

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

    def run_id(self, spec: CellSpec | None = None) -> str:
        """A hash of the specification (less where its files lie) and of the content of the network
        files it loads: another checkpoint under the same path is another cell. `spec`: another cell of
        this one's group (benchmark.batch), which loads the same networks."""
        blob = {"spec": (spec or self.spec).identity(), "checkpoint_sha256": self.checkpoint_sha256()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def settings(self, spec: CellSpec | None = None) -> dict:
        """The run settings the results record (settings_json): the spec's, with the schedule the
        denoiser actually samples with and the objective's parameters with their defaults."""
        settings = (spec or self.spec).settings()
        settings["sampling"] |= {"schedule": self.schedule.name, "T": self.schedule.T,
                                 "steps": len(self.sampler.steps)}
        settings["objective_params"] = self.objective.params()
        return settings

    def _check_noisy_classifier(self, schedule) -> None:
        """Classifier guidance needs log p(c | x_t, t) trained on the sampler's own timesteps."""
        trained_on = tuple(self.objective.noise_schedule)
        if trained_on != (schedule.name, schedule.T):
            raise ValueError(f"the noise-conditional classifier was trained on schedule {trained_on[0]!r} with "
                             f"T={trained_on[1]}, the denoiser samples with {schedule.name!r}, T={schedule.T}; "
                             "pre-train them with the same --schedule and --T")

    def round0_key(self) -> str:
        """What a round-0 (unguided) batch depends on: task, denoiser (and the content of its files), sampling,
        batch size, device, where files lie; not the method, strength or objective (benchmark.optimize reuses
        it by this key), unless its loader's model reads them (`DenoiserLoader.reads`, a plug-in's by default)."""
        d = self.spec.to_dict()
        keep = ["task", "task_seed", "task_params", "denoiser", "sampling", "models_dir",
                *DENOISERS[self.spec.denoiser.loader].reads]
        return json.dumps({k: d[k] for k in keep}
                          | {"samples": self.config.samples, "device": self.device,
                             "networks": {k: r.get("sha256") for k, r in self._denoiser_networks.items()}},
                          sort_keys=True)

    def rounds(self, specs: list[CellSpec] | None = None, alive: list[bool] | None = None,
               resume: dict | None = None, round0: dict | None = None):
        """The rounds of this cell, or of one sampling pass of `specs` (cells of its group that share a
        pass, benchmark.batch.passes), each on its own seed and strength; `round0`: the job's round-0
        batches, shared by its passes (benchmark.optimize.run_rounds)."""
        specs = specs or [self.spec]
        counted = CountingObjective(self.objective, self.costs)
        return run_rounds(task=self.task, objective=counted, method=self.method, sampler=self.sampler,
                          costs=self.costs, config=self.config, seed=[s.seed for s in specs],
                          strengths=[float(s.strength) for s in specs], alive=alive, resume=resume,
                          denoiser_name=self.spec.denoiser.name, device=self.device, trainable=self.trainable,
                          round0=round0, round0_key=self.round0_key())


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_cell(spec: CellSpec, device: str = "auto", progress: bool | None = None,
             gallery: str | Path | None = None) -> list[dict]:
    """Run the cell and return its rows (status recorded on every row); one log line per round.

    gallery: for an image task, where to write the last round's samples as a PNG grid (written
    whatever the status: a cell with no samples gets a tile saying so)."""
    return run_cells([spec], device, progress, galleries=None if gallery is None else [gallery])[0]


def write_cell(spec: CellSpec, out: str | Path, device: str = "auto", progress: bool | None = None) -> list[dict]:
    """Run the cell and write its Parquet file; for an image task its gallery first (`gallery_path(out)`,
    the same path with suffix .png), so a cell whose Parquet file exists has its gallery too."""
    return write_cells([spec], [out], device, progress)[0]


def write_cells(specs: list[CellSpec], outs: list[str | Path], device: str = "auto", progress: bool | None = None,
                checkpoint_every: int = 0) -> list[list[dict]]:
    """Run cells (`run_cells`: each group of them, specs equal but for strength and seed, in batched passes)
    and write each cell's Parquet file (and gallery) atomically as soon as the cell is done.

    checkpoint_every = k > 0: every k rounds each cell saves a round checkpoint beside its file
    (`resume_path`), and a finished cell keeps its final one until the whole group is written; a rerun
    of the killed group resumes each cell from its own (rows equal to an uninterrupted run's)."""
    if len(specs) != len(outs) or len({str(o) for o in outs}) != len(outs):
        raise ValueError(f"{len(specs)} cells need {len(specs)} distinct output files, got {len(outs)}")
    galleries = [gallery_path(o) for o in outs]

    def done(i: int, rows: list[dict]) -> None:
        write_atomic(to_table(rows), outs[i])

    results = run_cells(specs, device, progress, galleries=galleries, on_done=done,
                        resume_paths=[resume_path(o) for o in outs] if checkpoint_every else None,
                        checkpoint_every=checkpoint_every)
    for o in outs:
        resume_path(o).unlink(missing_ok=True)
    return results


def resume_path(out: str | Path) -> Path:
    """Where the cell written to `out` keeps its round checkpoint: beside it, suffix .resume.pt."""
    return Path(out).with_suffix(".resume.pt")


def run_cells(specs: list[CellSpec], device: str = "auto", progress: bool | None = None,
              galleries: list | None = None, on_done=None, resume_paths: list | None = None,
              checkpoint_every: int = 0) -> list[list[dict]]:
    """Run cells and return each one's rows: per group (cells that differ only in strength and seed,
    benchmark.batch.group_key) every sampling pass (benchmark.batch.passes) as one batch, each cell's rows as
    a solo run of it would give them; one log line per cell and round. `on_done(i, rows)` is called as soon
    as cell i is done."""
    from benchmark.batch import check_group, group_key, passes

    by_group: dict[str, list[CellSpec]] = {}
    for spec in specs:
        by_group.setdefault(group_key(spec), []).append(spec)
    for group in by_group.values():
        check_group(group)
    results: list[list[dict] | None] = [None] * len(specs)
    cell, round0 = None, {}           # round 0 of a seed: sampled once, reused by every pass it belongs to
    for members in passes(specs):
        spec = specs[members[0]]
        # one Cell per group; each Algorithm-2 pass fine-tunes a freshly loaded network
        if cell is None or group_key(cell.spec) != group_key(spec) or cell.config.algorithm == "alg2":
            cell = Cell(spec, device)
        _run_pass(cell, specs, members, results, progress, galleries, on_done, resume_paths, checkpoint_every, round0)
    return results


def _base_row(cell: Cell, spec: CellSpec, batch_cells: int, facts: dict) -> dict:
    r = spec.rounds
    method = make_method(spec.method, spec.strength, **spec.params)
    return {
        "run_id": cell.run_id(spec), "task": spec.task, "objective": spec.objective, "denoiser": spec.denoiser.name,
        "method": spec.method, "strength": float(spec.strength), "seed": spec.seed,
        "algorithm": r.algorithm, "linearise": r.linearise, "samples": r.samples,
        "steps": len(cell.sampler.steps), "eta": spec.sampling.eta, "schedule": cell.schedule.name,
        "params_json": json.dumps(method.params(), sort_keys=True),
        "settings_json": json.dumps(cell.settings(spec), sort_keys=True),
        "checkpoint_sha256": cell.checkpoint_sha256(), "checkpoint_info": cell.checkpoint_info(),
        "batch_cells": batch_cells,
    } | facts


def _share(costs, n: int) -> dict:
    """A cell's share of a round's counted cost, n cells' worth of chains sampled: every chain of a pass pays
    the same (their declared formulas agree, benchmark.batch), so 1/n of each count; in round 0, sampled
    once per distinct seed and shared, what the cell alone would have spent."""
    return {f"cost_{k}": v // n if v % n == 0 else round(v / n) for k, v in costs.as_dict().items()}


def _code_version() -> dict:
    """The code a round checkpoint was made by: a checkpoint of other code is not resumed."""
    from benchmark import __version__
    from benchmark.results import _git_commit

    return {"package_version": __version__, "git_commit": _git_commit()}


def _stamped(state: dict) -> dict:
    return state | _code_version()


def _load_resume(path: Path, run_id: str) -> dict | None:
    """A cell's round checkpoint, if one exists, is this cell's and was made by this code (a damaged,
    foreign or older one is ignored, with a warning)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a half-written or damaged file: start afresh
        log.warning("ignoring the round checkpoint %s: %s", path, exc)
        return None
    if not isinstance(state, dict) or state.get("run_id") != run_id:
        return None
    made_by = {k: state.get(k) for k in _code_version()}
    if made_by != _code_version():
        log.warning("ignoring the round checkpoint %s: made by other code (%s), this is %s", path, made_by,
                    _code_version())
        return None
    try:
        state["rows"] = json.loads(state["rows"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring the round checkpoint %s: its rows are unreadable (%s)", path, exc)
        return None
    return state


def _save_resume(path: Path, state: dict) -> None:
    """The rows go in as one JSON string (exact for Python's floats, NaN included): pickled, their thousands
    of objects made a vector job's checkpoints cost 8 % of its time."""
    from benchmark.results import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state | {"rows": json.dumps(state["rows"])}, tmp)


def _run_pass(cell: Cell, specs, members, results, progress, galleries, on_done, resume_paths, checkpoint_every,
              round0: dict | None = None):
    """One sampling pass over the cells `members` (indices into specs), resumed from their checkpoints."""
    n, B, r = len(members), cell.config.samples, cell.config
    facts = provenance(cell.device)                  # where and with what: the same for the pass's cells
    bases = [_base_row(cell, specs[i], n, facts) for i in members]
    rows: list[list[dict]] = [[] for _ in members]
    finished = [False] * n
    status: list[tuple[str, str | None]] = [("ok", None)] * n
    last: list = [None] * n
    paths = [Path(resume_paths[i]) for i in members] if resume_paths else None
    resume = None
    if paths:
        saved = [_load_resume(p, b["run_id"]) for p, b in zip(paths, bases)]
        for j, st in enumerate(saved):
            if st is not None and st["finished"]:
                rows[j], finished[j], status[j] = st["rows"], True, (st["status"], st["error"])
                last[j] = st.get("z")
        running = [j for j in range(n) if not finished[j]]
        rounds_at = {saved[j]["round"] if saved[j] is not None else None for j in running}
        if running and len(rounds_at) == 1 and None not in rounds_at:   # all at the same round: resume there
            state = {"round": rounds_at.pop(), "cells": running,
                     "z": torch.cat([saved[j]["z"] for j in running])}
            for key in ("trainable", "optimizer", "ft_gen"):
                if key in saved[running[0]]:
                    state[key] = saved[running[0]][key]
            resume = state
            for j in running:
                rows[j] = saved[j]["rows"]
            log.info("resuming %d cell(s) after round %d from %s", len(running), state["round"], paths[running[0]])
    alive = [not f for f in finished]

    def deliver(j: int) -> None:
        """Cell j is done: its gallery, its rows to the caller (who writes its file)."""
        i = members[j]
        if galleries is not None and galleries[i] is not None and cell.task.is_image:
            save_gallery(last[j], galleries[i])
        results[i] = rows[j]
        if on_done is not None:
            on_done(i, rows[j])

    def finish(j: int) -> None:
        finished[j], alive[j] = True, False
        peak = _peak_memory_mb(cell.device)
        for row in rows[j]:
            row.update(status=status[j][0], error=status[j][1], peak_memory_mb=peak)
        if paths:
            z = last[j].detach().cpu().clone() if last[j] is not None else None   # the cell's rows only
            _save_resume(paths[j], _stamped({"run_id": bases[j]["run_id"], "finished": True,
                                             "rows": [dict(r) for r in rows[j]], "status": status[j][0],
                                             "error": status[j][1], "z": z,
                                             "round": rows[j][-1]["round"] if rows[j] else -1}))
        deliver(j)

    for j in range(n):                       # finished before a kill: rows from the checkpoint, not run again
        if finished[j]:
            deliver(j)
    if not any(alive):
        return
    if cell.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    iterator = cell.rounds([specs[i] for i in members], alive=alive, resume=resume, round0=round0)
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm import tqdm
        head = specs[members[0]]
        iterator = tqdm(iterator, total=r.rounds + 1 - (resume["round"] + 1 if resume else 0),
                        desc=f"{head.method} {head.objective} x{n}", unit="round")
    iterator = iter(iterator)
    while any(alive):
        ended: list[int] = []            # cells done in this round: written after it, outside the recording
        try:
            rnd = next(iterator, None)
            if rnd is None:
                break
            share = _share(rnd.costs, rnd.computed)          # what each cell's chains cost
            wall = rnd.wall_seconds / len(rnd.cells)
            measured: dict = {}                              # round 0: cells of one seed share their samples
            for pos, j in enumerate(rnd.cells):
                z = rnd.z[pos * B:(pos + 1) * B]
                last[j] = z
                finite = bool(torch.isfinite(z).all())
                seed = specs[members[j]].seed
                if finite and rnd.index == 0 and seed in measured:
                    metrics, per_sample = measured[seed]
                else:
                    try:                         # one cell's failing measure fails that cell only
                        metrics, per_sample = (sample_measures(z, cell.objective, cell.task) if finite
                                               else ({"reward_mean": math.nan}, {}))
                    except torch.cuda.OutOfMemoryError:
                        raise
                    except Exception as exc:
                        rows[j].append(_failure_row(bases[j], rnd.index))
                        status[j], alive[j] = ("failed", "".join(traceback.format_exception_only(exc)).strip()), False
                        ended.append(j)
                        continue
                    measured[seed] = (metrics, per_sample)
                for name, value in metrics.items():
                    rows[j].append(bases[j] | share | {"round": rnd.index, "metric": name, "value": float(value),
                                                       "per_sample": per_sample.get(name), "wall_seconds": wall})
                spec = specs[members[j]]
                log.info("seed %d strength %g round %d/%d: reward %.4g%s, %.2f s", spec.seed, spec.strength,
                         rnd.index, r.rounds, metrics.get("reward_mean", math.nan),
                         "".join(f", {k} {v:.4g}" for k, v in metrics.items() if k != "reward_mean")[:200], wall)
                if not finite:
                    status[j] = ("diverged", f"non-finite samples in round {rnd.index}")
                if not finite or rnd.index == r.rounds:
                    alive[j] = False             # it leaves the pass before the next round
                    ended.append(j)
        except torch.cuda.OutOfMemoryError:  # the job fails: Snakemake retries it with more memory
            raise
        except Exception as exc:  # recorded, not raised: the sweep must go on
            error = "".join(traceback.format_exception_only(exc)).strip()
            for j in range(n):
                if alive[j] and j not in ended:
                    rows[j].append(_failure_row(bases[j], (rows[j][-1]["round"] + 1) if rows[j] else 0))
                    status[j], alive[j] = ("failed", error), False
                    ended.append(j)
            rnd = None
        for j in ended:                       # its file (and gallery): an I/O error here stops the job
            finish(j)
        if rnd is not None and paths and checkpoint_every and rnd.index % checkpoint_every == 0:
            for pos, j in enumerate(rnd.cells):
                if alive[j]:
                    _save_resume(paths[j], _stamped(_cell_state(rnd, pos, B, bases[j]["run_id"], rows[j])))
    for j in range(n):                       # a pass that ended early (every cell left it) finishes the rest
        if not finished[j]:
            finish(j)


def _failure_row(base: dict, round_index: int) -> dict:
    """The row of the round in which a cell failed: NaN reward, nothing counted."""
    return base | {f"cost_{k}": 0 for k in Costs().as_dict()} | {
        "round": round_index, "metric": "reward_mean", "value": math.nan, "per_sample": None, "wall_seconds": 0.0}


def _cell_state(rnd, pos: int, B: int, run_id: str, rows: list[dict]) -> dict:
    """Cell `pos` of a round's pass as its own round checkpoint: its rows so far, its samples and linear
    target, and (Algorithm 2, one cell per pass) the fine-tuned weights, optimiser and RNG states."""
    rows_slice = slice(pos * B, (pos + 1) * B)
    state = {"run_id": run_id, "finished": False, "round": rnd.index, "rows": [dict(r) for r in rows],
             "z": rnd.z[rows_slice].detach().cpu().clone()}
    if rnd.target is not None:
        state["target_g"] = rnd.target.g[rows_slice].detach().cpu().clone()
        state["target_y"] = rnd.target.y[rows_slice].detach().cpu().clone()
    for key in ("trainable", "optimizer", "ft_gen"):
        if key in rnd.state:
            state[key] = rnd.state[key]
    return state
