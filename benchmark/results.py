"""The results schema: one tidy Parquet file per cell (one row per round x metric).

Columns (explicit pyarrow schema, SCHEMA below):
- identity: run_id, task, objective, denoiser, method, strength, seed, round
- the main run settings as columns (algorithm, linearise, samples, steps, eta, schedule); the
  method's own hyper-parameters as JSON (params_json) and every run setting of the cell spec as JSON
  (settings_json: task seed and parameters, objective parameters with their defaults, denoiser,
  sampling, rounds; benchmark.spec), kept apart so no setting can shadow a hyper-parameter
- metric, value
- cost of the round, summed over the chains: cost_denoiser_forwards, cost_denoiser_vjps,
  cost_objective_evals, cost_objective_grads, cost_finetune_samples (Algorithm 2's training
  steps), wall_seconds; peak_memory_mb of the cell; batch_cells, the cells that shared its sampling pass
  (benchmark.batch; 1: it ran alone): their costs and wall time split evenly, each records its share (a
  round 0 reused from an earlier pass of the job counts the forwards and seconds it took when sampled)
- status ('ok' | 'diverged' | 'failed') and error text, the same on every row of a cell
- provenance: package_version, git_commit, torch_version, device, hostname, started_at, slurm_job_id,
  and on a GPU its model, the CUDA version and the driver version (gpu_model, cuda_version,
  driver_version; null on the CPU)
- the networks the cell loaded: checkpoint_sha256 (sha256 of the denoiser's safetensors file, its
  training report left out: its timings differ between bit-identical trainings; for a
  cell that loads several network files, as digits does, the sha256 of their `<kind> <sha256>`
  lines; null for the oracle) and checkpoint_info (JSON: per network its file, sha256 and training
  figures: epochs, held-out / validation / test loss, parameters ...)
- per_sample: on the reward_mean row of every round the per-chain rewards (chain i at index i), on
  a fidelity row the task measures per sample (r_off, norm_error) its per-chain values; null
  elsewhere. All methods share the per-chain noise streams, so chain i of two methods is a pair.

Files are written to a temporary name in the same folder and renamed, so an interrupted run
never leaves a half-written file under the final name. Every file carries a checksum of its data
in its Parquet key-value metadata (CHECKSUM_KEY, see `table_checksum`); `read_cell` refuses a
file that is empty, truncated, unreadable, lacks columns, has no checksum (written before
checksums were recorded: recompute it) or whose data no longer match it (e.g. a flipped byte that
still decodes). `aggregate` and `verify` check every file and name all bad ones at once, with the
one command that removes them so that the normal run recomputes exactly those cells.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STATUSES = ("ok", "diverged", "failed")

IDENTITY = [("run_id", pa.string()), ("task", pa.string()), ("objective", pa.string()),
            ("denoiser", pa.string()), ("method", pa.string()), ("strength", pa.float64()),
            ("seed", pa.int64()), ("round", pa.int64())]
PARAMS = [("algorithm", pa.string()), ("linearise", pa.string()), ("samples", pa.int64()),
          ("steps", pa.int64()), ("eta", pa.float64()), ("schedule", pa.string()),
          ("params_json", pa.string()), ("settings_json", pa.string())]
MEASURE = [("metric", pa.string()), ("value", pa.float64()), ("per_sample", pa.list_(pa.float64()))]
COST = [("cost_denoiser_forwards", pa.int64()), ("cost_denoiser_vjps", pa.int64()),
        ("cost_objective_evals", pa.int64()), ("cost_objective_grads", pa.int64()),
        ("cost_finetune_samples", pa.int64()), ("wall_seconds", pa.float64()), ("peak_memory_mb", pa.float64()),
        ("batch_cells", pa.int64())]
STATUS = [("status", pa.string()), ("error", pa.string())]
PROVENANCE = [("package_version", pa.string()), ("git_commit", pa.string()), ("torch_version", pa.string()),
              ("device", pa.string()), ("hostname", pa.string()), ("started_at", pa.string()),
              ("slurm_job_id", pa.string()), ("gpu_model", pa.string()), ("cuda_version", pa.string()),
              ("driver_version", pa.string())]
NETWORK_FILES = [("checkpoint_sha256", pa.string()), ("checkpoint_info", pa.string())]

SCHEMA = pa.schema([pa.field(n, t) for n, t in IDENTITY + PARAMS + MEASURE + COST + STATUS + PROVENANCE
                    + NETWORK_FILES])
COLUMNS = SCHEMA.names
#: The Parquet key-value metadata key of a file's checksum (sha256 hex of `table_checksum`).
CHECKSUM_KEY = b"guidebench.sha256"
#: Columns that differ between two runs of the same cell (timing, memory, where and when it ran);
#: two files with one run_id are the same cell only if everything else is equal.
RUN_COLUMNS = ["wall_seconds", "peak_memory_mb", "batch_cells"] + [n for n, _ in PROVENANCE]


class ResultsFileError(ValueError):
    """A results file that cannot be used; `reason` says why, the message names the file."""

    def __init__(self, path, reason: str):
        super().__init__(f"results file {path}: {reason}")
        self.path, self.reason = str(path), reason


class BadResultsError(ValueError):
    """Some cell files are bad: `problems` maps each bad file to why; the message lists them all."""

    def __init__(self, problems: dict[str, str], total: int, results_dir: str):
        self.problems = problems
        lines = [f"  {path}: {reason}" for path, reason in problems.items()]
        super().__init__(
            f"{len(problems)} of {total} cell files are bad; nothing was written:\n" + "\n".join(lines)
            + f"\nremove them and recompute exactly those cells: {fix_command(results_dir)}")


def fix_command(results_dir: str | Path) -> str:
    return f"`python -m benchmark verify {results_dir} --remove-bad`, then `snakemake --cores all`"


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The package's git commit (once per process: every cell and round checkpoint records it)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str) -> dict:
    """Where and with what a cell ran; recorded on every row."""
    import torch

    from benchmark import __version__

    return {
        "package_version": __version__,
        "git_commit": _git_commit(),
        "torch_version": str(torch.__version__),  # a plain str (TorchVersion cannot be loaded weights_only)
        "device": device,
        "hostname": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    } | gpu_facts(device)


def gpu_facts(device: str) -> dict:
    """On a CUDA device: its model, the CUDA version torch was built with and the NVIDIA driver version
    (from nvidia-smi; None where it cannot be read); all None on the CPU."""
    import torch

    facts = {"gpu_model": None, "cuda_version": None, "driver_version": None}
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return facts
    index = torch.device(device).index or 0
    facts |= {"gpu_model": torch.cuda.get_device_name(index), "cuda_version": torch.version.cuda}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
                             capture_output=True, text=True, timeout=10)
        facts["driver_version"] = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with every column of SCHEMA) -> a table with exactly SCHEMA."""
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    return pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA)


def table_checksum(table: pa.Table) -> str:
    """sha256 of a canonical serialisation of the table's data, independent of chunking and of the
    file's encoding: per column its name and type, its null mask, then its values (fixed-width types
    as little-endian bytes with nulls as 0, any other type as JSON of its Python values, floats
    written exactly)."""
    h = hashlib.sha256()
    for field, column in zip(table.schema, table.columns):
        h.update(f"{field.name}:{_type_name(field.type)}:{len(column)}\n".encode())
        col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        h.update(np.asarray(col.is_null(), dtype=bool).tobytes())
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            values = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
            h.update(values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes())
        else:
            h.update(json.dumps(col.to_pylist(), default=str).encode())
    return h.hexdigest()


def _type_name(t: pa.DataType) -> str:
    """The type without the list item's field name (Parquet renames it: item -> element)."""
    return f"list<{_type_name(t.value_type)}>" if pa.types.is_list(t) or pa.types.is_large_list(t) else str(t)


def with_checksum(table: pa.Table) -> pa.Table:
    """The table with its checksum in the schema metadata (written into the Parquet file)."""
    meta = dict(table.schema.metadata or {}) | {CHECKSUM_KEY: table_checksum(table).encode()}
    return table.replace_schema_metadata(meta)


class DiskError(OSError):
    """Writing a file failed (full disk, read-only or missing folder ...): one line naming the path."""


def _disk_error(path: Path, exc: OSError) -> DiskError:
    reason = os.strerror(exc.errno) if exc.errno else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    error = DiskError(f"cannot write {path}: {reason}")
    error.errno = exc.errno or errno.EIO
    return error


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary `.<name>.<pid>.tmp` beside `path` to write; on success it is renamed over
    `path` (atomic within one file system), on an error it is removed. Results, checkpoints and
    the report are all written this way, so no reader ever sees a half-written file, and a failed
    write leaves the previous `path` as it was.

    An OSError while writing (no space left, read-only folder ...) is raised as a DiskError naming
    `path`; cleaning up the temporary file after an error never replaces that first error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # the first error is the one to report
            raise
    except DiskError:
        raise
    except OSError as exc:
        raise _disk_error(path, exc) from exc


def write_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically (see atomic_path), with its checksum (see table_checksum)."""
    table = with_checksum(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_cell(path: str | Path) -> pa.Table:
    """Read one results file and check it: readable, every column of SCHEMA, and its data equal to
    the checksum it was written with. Raises ResultsFileError naming the file and why."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ResultsFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    if size == 0:
        raise ResultsFileError(path, "empty (0 bytes)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = reason.replace(f"Could not open Parquet input source '{path}': ", "")
        raise ResultsFileError(path, f"unreadable: truncated or damaged ({reason})") from None
    missing = sorted(set(COLUMNS) - set(table.column_names))
    if missing:
        raise ResultsFileError(path, f"lacks columns {missing} (written by an older version: recompute it)")
    stored = (table.schema.metadata or {}).get(CHECKSUM_KEY)
    if stored is None:
        raise ResultsFileError(path, "has no checksum (written before checksums were recorded: recompute it)")
    if stored.decode(errors="replace") != table_checksum(table.replace_schema_metadata(None)):
        raise ResultsFileError(path, "checksum mismatch: its data changed after it was written (damaged file)")
    try:
        checked = table.select(COLUMNS).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ResultsFileError(path, f"columns of the wrong type: {exc}") from None
    for name in table.column_names:  # columns added downstream (the aggregate's `cell`) stay
        if name not in SCHEMA.names:
            checked = checked.append_column(table.schema.field(name), table.column(name))
    return checked


def cell_files(results_dir: str | Path) -> list[Path]:
    """The cell files under `<results_dir>/cells` (or under `results_dir` if it has no cells folder),
    sorted; temporary files of writes in progress (hidden names) are not cells."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    base = root / "cells" if (root / "cells").is_dir() else root
    return sorted(p for p in base.rglob("*.parquet")
                  if not any(part.startswith(".") for part in p.relative_to(base).parts))


def results_dir_of(paths) -> str:
    """The results folder of cell files `<results_dir>/cells/...` (for the message's command)."""
    for p in paths:
        parts = Path(p).parts
        if "cells" in parts[:-1]:
            i = len(parts) - 1 - parts[::-1].index("cells")
            return str(Path(*parts[:i])) if i else "."
    return str(Path(next(iter(paths))).parent) if paths else "results"


def check_cells(paths) -> tuple[dict[str, pa.Table], dict[str, str], list[str]]:
    """Check every file: (tables of the good ones, {bad file: why}, notes on duplicates dropped).

    Two files holding the same run_id are the same cell twice: with equal values (everything but
    RUN_COLUMNS) the later one's rows of it are dropped and noted; with different values both files
    are bad (which one is right is unknown)."""
    tables: dict[str, pa.Table] = {}
    problems: dict[str, str] = {}
    for p in sorted(set(map(str, paths))):
        try:
            tables[p] = read_cell(p)
        except ResultsFileError as exc:
            problems[p] = exc.reason
    owner: dict[str, str] = {}
    notes: list[str] = []
    for p, table in list(tables.items()):
        for run_id in pc.unique(table.column("run_id")).to_pylist():
            first = owner.setdefault(run_id, p)
            if first == p:
                continue
            if _cell_values(tables[first], run_id) == _cell_values(table, run_id):
                tables[p] = table.filter(pc.not_equal(table.column("run_id"), run_id))
                notes.append(f"dropped duplicate cell {run_id} of {p}: the same values as {first}")
            else:
                reason = f"holds run_id {run_id} with other values than {{}} (which is right is unknown)"
                problems[p] = reason.format(first)
                problems.setdefault(first, reason.format(p))
    for p in problems:
        tables.pop(p, None)
    return tables, dict(sorted(problems.items())), notes


def _cell_values(table: pa.Table, run_id: str) -> str:
    rows = table.filter(pc.equal(table.column("run_id"), run_id))
    return table_checksum(rows.drop_columns(RUN_COLUMNS))


def read_cells_checked(paths, log: Callable[[str], None] | None = None,
                       root: str | Path | None = None) -> dict[str, pa.Table]:
    """{file: table} of cell files, each cell once (see check_cells; dropped duplicates go to `log`);
    any bad file raises BadResultsError listing every bad one and the command that clears them. With
    `root` (the cells folder) every row also gets `cell`, its file's path below `root` less the
    suffix (the cell id)."""
    tables, problems, notes = check_cells(paths)
    if problems:
        raise BadResultsError(problems, len(set(map(str, paths))), results_dir_of(problems))
    for note in notes:
        (log or (lambda _: None))(note)
    if root is not None:
        tables = {p: t.append_column("cell", pa.array([str(Path(p).relative_to(root).with_suffix(""))] * t.num_rows,
                                                      pa.string()))
                  for p, t in tables.items()}
    return tables


def aggregate(paths: list[str | Path], out: str | Path, root: str | Path | None = None,
              log: Callable[[str], None] | None = None) -> pa.Table:
    """Concatenate cell files into one Parquet file, each cell once; with `root` (the cells folder)
    every row also gets `cell`, its file's path below `root` less the suffix (the cell id).

    Every file is checked first; any bad one stops it with BadResultsError listing all bad files
    and the command that clears them (nothing is written then). Exact duplicates of a cell are
    dropped and reported through `log`."""
    if not paths:
        raise ValueError("aggregate: no cell files given")
    tables = read_cells_checked(paths, log=log, root=root)
    table = pa.concat_tables(tables.values())
    write_atomic(table, out)
    return table


@contextmanager
def retract(stale: list[str | Path]) -> Iterator[None]:
    """On an error inside the block remove `stale` (a report and figures built from earlier results,
    which would no longer match them), then re-raise: no report outlives its results."""
    import shutil

    try:
        yield
    except BaseException:
        for path in map(Path, stale):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def aggregate_or_retract(paths: list[str | Path], out: str | Path, stale: list[str | Path],
                         root: str | Path | None = None, log: Callable[[str], None] | None = None) -> pa.Table:
    """`aggregate`, and when it fails remove `stale` (the report and figures built from the previous
    results, which no longer match them) before re-raising: no report outlives its results."""
    with retract(stale):
        return aggregate(paths, out, root=root, log=log)


def verify(results_dir: str | Path, remove_bad: bool = False) -> tuple[list[Path], dict[str, str], list[str]]:
    """Check every cell file under `results_dir` as `aggregate` does: (files checked, {bad file: why},
    files removed). With `remove_bad` each bad file is deleted with its gallery (the .png beside it),
    so the workflow's normal run (`snakemake --cores all`) recomputes exactly those cells."""
    files = cell_files(results_dir)
    _, problems, _ = check_cells(files)
    removed: list[str] = []
    if remove_bad:
        for p in problems:
            for f in (Path(p), Path(p).with_suffix(".png")):
                if f.exists():
                    f.unlink()
                    removed.append(str(f))
    return files, problems, removed
