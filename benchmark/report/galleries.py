"""Sample galleries of image tasks: found next to the cells' Parquet files, one shown per group.

A cell of an image task writes its gallery as `X.png` beside its results `X.parquet`
(benchmark.gallery). The report keys each gallery by the run_id read from that Parquet file, so
only cells of the results being reported are shown, wherever the files lie, and a PNG left over
from another sweep never is. Per panel and (method, strength) it shows the lowest seed's gallery.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from benchmark.report.aggregate import GROUP_KEYS, cells, is_unguided


def find_galleries(cells_dir: str | Path, tasks=None) -> dict[str, Path]:
    """{run_id: gallery PNG} of every cell under `cells_dir` (only under `<cells_dir>/<task>` for
    `tasks`, when given) that has both its Parquet file and its gallery; a PNG without a readable
    Parquet file beside it is not a cell's gallery and is skipped."""
    root = Path(cells_dir)
    roots = [root / str(t) for t in tasks] if tasks is not None else [root]
    found: dict[str, Path] = {}
    for base in roots:
        if not base.is_dir():
            continue
        for png in sorted(base.rglob("*.png")):
            parquet = png.with_suffix(".parquet")
            if not parquet.is_file():
                continue
            try:
                run_ids = pq.read_table(parquet, columns=["run_id"]).column("run_id")
            except (OSError, ValueError, KeyError):
                continue
            if len(run_ids):
                found[run_ids[0].as_py()] = png
    return found


def pick_galleries(rows: pd.DataFrame, galleries: dict[str, Path]) -> pd.DataFrame:
    """One gallery per (method, strength) of a panel's `rows`: the lowest seed's (ties: run_id).

    Columns: method, strength, seed, status, run_id, path; the unguided method first, then by
    method and strength. Empty when no cell of the panel has a gallery."""
    c = cells(rows)
    c = c[c["run_id"].isin(galleries.keys())]
    if c.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "seed", "status", "run_id", "path"])
    first = c.sort_values(["seed", "run_id"]).groupby(GROUP_KEYS, sort=False).head(1).copy()
    first["path"] = first["run_id"].map(galleries)
    first["unguided_last"] = ~is_unguided(first["method"])
    first = first.sort_values(["unguided_last", *GROUP_KEYS], ignore_index=True)
    return first[[*GROUP_KEYS, "seed", "status", "run_id", "path"]]


def encode_png(path: str | Path) -> str:
    """The file's bytes as base64 (for a data: URI); errors name the file."""
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError as exc:
        raise ValueError(f"cannot read gallery {path}: {exc}") from exc


def panel_galleries(rows: pd.DataFrame, galleries: dict[str, Path]) -> list[dict]:
    """The template's gallery entries of one panel: method, strength, seed, status, png (base64)."""
    return [{"method": g.method, "strength": g.strength, "seed": int(g.seed), "status": g.status,
             "png": encode_png(g.path)} for g in pick_galleries(rows, galleries).itertuples()]

