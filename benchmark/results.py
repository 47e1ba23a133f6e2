"""The results schema: one tidy Parquet file per cell (one row per round x metric).

Columns (explicit pyarrow schema, SCHEMA below):
- identity: run_id, task, objective, denoiser, method, strength, seed, round
- main hyper-parameters as columns (algorithm, linearise, samples, steps, eta, schedule) and all
  of them as JSON (params_json)
- metric, value
- cost of the round, summed over the chains: cost_denoiser_forwards, cost_denoiser_vjps,
  cost_objective_evals, cost_objective_grads, cost_finetune_samples (Algorithm 2's training
  steps), wall_seconds; peak_memory_mb of the cell
- status ('ok' | 'diverged' | 'failed') and error text, the same on every row of a cell
- provenance: package_version, git_commit, torch_version, device, hostname, started_at, slurm_job_id

Files are written to a temporary name in the same folder and renamed, so an interrupted run
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STATUSES = ("ok", "diverged", "failed")

IDENTITY = [("run_id", pa.string()), ("task", pa.string()), ("objective", pa.string()),
            ("denoiser", pa.string()), ("method", pa.string()), ("strength", pa.float64()),
            ("seed", pa.int64()), ("round", pa.int64())]
PARAMS = [("algorithm", pa.string()), ("linearise", pa.string()), ("samples", pa.int64()),
          ("steps", pa.int64()), ("eta", pa.float64()), ("schedule", pa.string()),
          ("params_json", pa.string())]
MEASURE = [("metric", pa.string()), ("value", pa.float64())]
COST = [("cost_denoiser_forwards", pa.int64()), ("cost_denoiser_vjps", pa.int64()),
        ("cost_objective_evals", pa.int64()), ("cost_objective_grads", pa.int64()),
        ("cost_finetune_samples", pa.int64()), ("wall_seconds", pa.float64()), ("peak_memory_mb", pa.float64())]
STATUS = [("status", pa.string()), ("error", pa.string())]
PROVENANCE = [("package_version", pa.string()), ("git_commit", pa.string()), ("torch_version", pa.string()),
              ("device", pa.string()), ("hostname", pa.string()), ("started_at", pa.string()),
              ("slurm_job_id", pa.string())]

SCHEMA = pa.schema([pa.field(n, t) for n, t in IDENTITY + PARAMS + MEASURE + COST + STATUS + PROVENANCE])
COLUMNS = SCHEMA.names


def _git_commit() -> str | None:
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
        "torch_version": torch.__version__,
        "device": device,
        "hostname": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with every column of SCHEMA) -> a table with exactly SCHEMA."""
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    return pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary `.<name>.<pid>.tmp` beside `path` to write; on success it is renamed over
    `path` (atomic within one file system), on an error it is removed. Results, checkpoints and
    the report are all written this way, so no reader ever sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically (see atomic_path)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_cell(path: str | Path) -> pa.Table:
    """Read one cell's file, checking it against SCHEMA; errors name the file."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ValueError(f"cannot read results file {path}: {exc}") from exc
    if not set(COLUMNS) <= set(table.column_names):
        raise ValueError(f"results file {path} lacks columns {sorted(set(COLUMNS) - set(table.column_names))}")
    return table.select(COLUMNS).cast(SCHEMA)


def aggregate(paths: list[str | Path], out: str | Path) -> pa.Table:
    """Concatenate cell files into one Parquet file; any unreadable file stops it, named."""
    if not paths:
        raise ValueError("aggregate: no cell files given")
    tables = [read_cell(p) for p in sorted(map(str, paths))]
    table = pa.concat_tables(tables)
    write_atomic(table, out)
    return table
