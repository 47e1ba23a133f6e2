"""The report's numbers, as plain pandas: DataFrame in, DataFrame out, no plotting.

Input is the tidy results table (benchmark.results.SCHEMA: one row per cell x round x metric).
A cell is one run_id; a panel is one (task, objective, denoiser), the unit that is compared.
Confidence intervals are t-intervals over seeds: mean ± t_{(1+level)/2, n-1} · sd / sqrt(n).
Values that are not finite (a diverged or failed cell) are left out of means and counted apart.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.report.directions import (  # noqa: F401  (re-exported: the report's names live here too)
    DERIVED_METRICS, HIGHER, LOWER, check_direction, declared_directions, direction_arrow, direction_text,
    fidelity_candidates, metric_direction, panel_directions, report_fidelity_candidates, _panel_ids)
from benchmark.results import COLUMNS, STATUSES, read_cell

REWARD_METRIC = "reward_mean"
PANEL_KEYS = ["task", "objective", "denoiser"]
GROUP_KEYS = ["method", "strength"]
CELL_KEYS = ["run_id", *PANEL_KEYS, "method", "strength", "seed"]
UNGUIDED = "none"
#: What fixes a cell's sampling cost besides its method: its unguided reference runs on the same grid.
GRID_KEYS = ["steps", "eta"]
# Every counted cost column of the schema, reported per sample under its name without "cost_".
COSTS_PER_SAMPLE = {c: c.removeprefix("cost_") for c in COLUMNS if c.startswith("cost_")}

def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided t quantile t_{(1+level)/2, df}; NaN for df < 1 (scipy imported on first use: 0.5 s)."""
    if df < 1:
        return math.nan
    return _t_ppf((1 + level) / 2, float(df))


@functools.lru_cache(maxsize=None)
def _t_ppf(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """(mean, CI half-width, n) over the finite values; half-width NaN when n < 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), t_quantile(n - 1, level) * float(v.std(ddof=1)) / math.sqrt(n), n


def _summarise(df: pd.DataFrame, keys: list[str], value: str, level: float) -> pd.DataFrame:
    """Per group of `keys`: mean, ci (half-width), lo, hi and n of the finite `value`s."""
    finite = df[np.isfinite(df[value].to_numpy(dtype=float))]
    g = finite.groupby(keys, dropna=False, sort=True)[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    t = np.array([t_quantile(int(n) - 1, level) for n in out["n"]], dtype=float)
    out["ci"] = t * out["sd"].to_numpy(dtype=float) / np.sqrt(out["n"].to_numpy(dtype=float))
    out["lo"], out["hi"] = out["mean"] - out["ci"], out["mean"] + out["ci"]
    return out.drop(columns="sd")


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """The method name tagged with every variant axis it was run under: '+alg2' (Algorithm 2),
    '+batch_mean' (one linearisation per batch), and 'steps=<steps>' / 'eta=<eta>' where these differ
    within a panel, so that no two variants are ever averaged together as if they were seeds."""
    label = df["method"].astype(str)
    label = label.where(df["algorithm"] == "alg1", label + " +" + df["algorithm"].astype(str))
    label = label.where(df["linearise"] == "per_sample", label + " +" + df["linearise"].astype(str))
    for col, tag in (("steps", "steps"), ("eta", "eta")):
        varies = df.groupby(PANEL_KEYS, dropna=False)[col].transform("nunique") > 1
        label = label.where(~varies, label + f" {tag}=" + df[col].map("{:g}".format))
    return label + _param_tags(df)


#: Keys never used as variant tags: the swept strength; of the run settings (settings_json) the seed,
#: the objective's parameters (a panel of their own, see objective_labels) and what variant_labels
#: tags already.
_UNTAGGED = {"strength", "seed", "objective_params", "rounds.algorithm", "rounds.linearise", "sampling.steps",
             "sampling.eta"}


def _flat(blob, prefix: str = "") -> dict:
    """A JSON object flattened to {"part.key": value} (one level: the spec's parts)."""
    try:
        value = json.loads(blob) if isinstance(blob, str) and blob else {}
    except json.JSONDecodeError:
        return {}
    out = {}
    for k, v in (value if isinstance(value, dict) else {}).items():
        if isinstance(v, dict) and k != "objective_params" and prefix:
            out |= {f"{k}.{kk}": vv for kk, vv in v.items()}
        else:
            out[k] = v
    return out


def _param_tags(df: pd.DataFrame) -> pd.Series:
    """' k=v' for every setting that differs between the cells of one method within a panel: its
    hyper-parameters (params_json: e.g. FreeDoM with and without `polyak`, MPGD's two step rules
    `schedule`) and its run settings (settings_json, tagged `part.key`: e.g. two Algorithm-2
    learning rates `rounds.finetune_lr`, two oracle schedules `sampling.schedule`)."""
    if "params_json" not in df.columns or df.empty:
        return pd.Series("", index=df.index)
    settings = df["settings_json"] if "settings_json" in df.columns else pd.Series("", index=df.index)
    keys = list(zip(df["params_json"], settings))
    parsed = {pair: _flat(pair[0]) | {"@" + k: v for k, v in _flat(pair[1], "settings").items()}
              for pair in set(keys)}
    pairs = pd.Series(keys, index=df.index)
    tags = pd.Series("", index=df.index)
    for _, rows in df.groupby([*PANEL_KEYS, "method"], dropna=False, sort=False):
        variants = [parsed[p] for p in pairs.loc[rows.index].unique()]
        if len(variants) < 2:
            continue
        names = sorted({k for v in variants for k in v} - _UNTAGGED - {"@" + u for u in _UNTAGGED})
        varying = [k for k in names if len({json.dumps(v.get(k), sort_keys=True) for v in variants}) > 1]
        if varying:
            tags.loc[rows.index] = pairs.loc[rows.index].map(
                lambda p: "".join(f" {k.lstrip('@')}={parsed[p].get(k)}" for k in varying))
    return tags


def objective_labels(df: pd.DataFrame) -> pd.Series:
    """The objective name tagged with its parameters that differ within a (task, objective, denoiser),
    e.g. 'label target=3' next to 'label target=all', so that each setting is a panel of its own.
    The parameters are those recorded as settings_json's "objective_params"."""
    def params(blob) -> dict:
        try:
            value = json.loads(blob).get("objective_params") if isinstance(blob, str) else None
        except (json.JSONDecodeError, AttributeError):
            return {}
        return value if isinstance(value, dict) else {}

    label = df["objective"].astype(str)
    if "settings_json" not in df.columns or df.empty:
        return label
    parsed = {blob: params(blob) for blob in df["settings_json"].unique()}
    for _, rows in df.groupby(PANEL_KEYS, dropna=False, sort=False):
        settings = [parsed[b] for b in rows["settings_json"].unique()]
        varying = sorted(k for k in set().union(*settings) if len({json.dumps(s.get(k)) for s in settings}) > 1)
        if varying:
            tags = rows["settings_json"].map(lambda b: " ".join(f"{k}={parsed[b].get(k)}" for k in varying))
            label.loc[rows.index] = rows["objective"].astype(str) + " " + tags
    return label


def derived_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the DERIVED_METRICS, computed from the measured rows they derive from."""
    parts = []
    for name, (source, transform) in DERIVED_METRICS.items():
        rows = df[df["metric"] == source].copy()
        if not rows.empty:
            rows["value"] = transform(rows["value"].astype(float))
            rows["metric"] = name
            parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def label_results(df: pd.DataFrame) -> pd.DataFrame:
    """Results rows as the report shows them: `method_name` the registry's name, `method` the
    variant label (see variant_labels), `objective` the objective's setting (see objective_labels),
    plus the DERIVED_METRICS' rows."""
    df = df.copy()
    df["method_name"] = df["method"]
    df["objective"] = objective_labels(df)
    df["method"] = variant_labels(df)
    return pd.concat([df, derived_rows(df)], ignore_index=True)


def load_results(path: str | Path) -> pd.DataFrame:
    """The aggregated results file as a DataFrame, labelled (see label_results); errors name the file."""
    df = read_cell(path).to_pandas()
    if df.empty:
        raise ValueError(f"results file {path} has no rows")
    return label_results(df)


def panels(df: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """[((task, objective, denoiser), rows)], sorted; a missing key stays a panel of its own."""
    return [(tuple(key), rows) for key, rows in df.groupby(PANEL_KEYS, dropna=False, sort=True)]


def fidelity_metric(df: pd.DataFrame, candidates: Sequence[str] | None = None) -> str | None:
    """The first of `candidates` measured in `df`, or None. Default: the fidelity_candidates of the
    task (and objective) of `df`'s panel(s)."""
    if candidates is None:
        candidates = list(dict.fromkeys(m for t, o in _panel_ids(df) for m in fidelity_candidates(t, o)))
    present = set(df["metric"].unique())
    return next((m for m in candidates if m in present), None)


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: identity, status, error, last round reached, peak memory."""
    g = df.groupby("run_id", sort=False)
    out = g[CELL_KEYS[1:] + ["status", "error", "peak_memory_mb"]].first()
    out["last_round"] = g["round"].max()
    return out.reset_index().sort_values(CELL_KEYS[1:] + ["run_id"], na_position="last", ignore_index=True)


def status_summary(df: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """({'cells': n, 'ok': .., 'diverged': .., 'failed': ..}, the non-ok cells with their error)."""
    c = cells(df)
    counts = {"cells": len(c)} | {s: int((c["status"] == s).sum()) for s in STATUSES}
    other = int((~c["status"].isin(STATUSES)).sum())
    if other:
        counts["other"] = other
    bad = c[c["status"] != "ok"][["run_id", *CELL_KEYS[1:], "status", "last_round", "error"]]
    return counts, bad.reset_index(drop=True)


def final_values(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per cell, `metric` at the cell's last round; NaN unless the cell finished ok."""
    c = cells(df)[[*CELL_KEYS, "status", "last_round"]]
    rows = df[df["metric"] == metric][["run_id", "round", "value"]]
    out = c.merge(rows, left_on=["run_id", "last_round"], right_on=["run_id", "round"], how="left")
    out["value"] = out["value"].where(out["status"] == "ok")
    return out.drop(columns="round")


def panel_metrics(df: pd.DataFrame, fidelity: str | None = None) -> list[str]:
    """The further metrics a panel shows: those its task (and plug-in objective) declares, measured in
    `df`, in declaration order; then, by name, measured metrics that nobody declares (shown without a
    direction). Never the reward, `fidelity`, the reward statistics of benchmark.metrics, or the
    DERIVED_METRICS."""
    from benchmark.metrics import METRIC_DIRECTIONS as MEASURED

    present = set(df["metric"].dropna().unique()) - {REWARD_METRIC, fidelity}
    declared = panel_directions(df)
    undeclared = present - set(declared) - set(MEASURED) - set(DERIVED_METRICS)
    return [m for m in declared if m in present] + sorted(undeclared)


def leaderboard(df: pd.DataFrame, fidelity: str | None = None, level: float = 0.95,
                extra: Sequence[str] = ()) -> pd.DataFrame:
    """Per (method, strength) of one panel: final-round reward (and fidelity, and `extra` metrics)
    over seeds.

    Columns: method, strength, final_round, reward, reward_ci, reward_n, [fidelity, fidelity_ci,
    fidelity_n], [<m>, <m>_ci, <m>_n for m in extra], seeds, ok, diverged, failed, best (the
    method's strength of highest final reward). Sorted by final reward, best first; groups without
    a finite reward last.
    """
    c = cells(df)
    out = c.groupby(GROUP_KEYS, sort=True).agg(seeds=("seed", "nunique")).reset_index()
    for s in STATUSES:
        n = c[c["status"] == s].groupby(GROUP_KEYS).size().rename(s)
        out = out.merge(n, left_on=GROUP_KEYS, right_index=True, how="left")
        out[s] = out[s].fillna(0).astype(int)
    final_round = c[c["status"] == "ok"].groupby(GROUP_KEYS)["last_round"].max().rename("final_round")
    out = out.merge(final_round, left_on=GROUP_KEYS, right_index=True, how="left")
    for name, metric in (("reward", REWARD_METRIC), ("fidelity", fidelity), *((m, m) for m in extra)):
        if metric is None:
            continue
        s = _summarise(final_values(df, metric), GROUP_KEYS, "value", level)
        s = s.rename(columns={"mean": name, "ci": f"{name}_ci", "n": f"{name}_n"}).drop(columns=["lo", "hi"])
        out = out.merge(s, on=GROUP_KEYS, how="left")
        out[f"{name}_n"] = out[f"{name}_n"].fillna(0).astype(int)
    best = out.dropna(subset=["reward"]).groupby("method")["reward"].idxmax()
    out["best"] = out.index.isin(best.to_numpy())
    return out.sort_values(["reward", "method", "strength"], ascending=[False, True, True],
                           na_position="last", ignore_index=True)


def best_strengths(board: pd.DataFrame) -> dict[str, float]:
    """{method: its best strength} from a leaderboard."""
    return dict(zip(board.loc[board["best"], "method"], board.loc[board["best"], "strength"]))


def curves(df: pd.DataFrame, metric: str, level: float = 0.95) -> pd.DataFrame:
    """`metric` per (method, strength, round) over the seeds of the ok cells: mean, ci, lo, hi, n."""
    rows = df[(df["metric"] == metric) & (df["status"] == "ok")]
    return _summarise(rows, [*GROUP_KEYS, "round"], "value", level)


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True where a point is not dominated: no other point has x' <= x and y' >= y, one strictly.

    Lower x is better (a fidelity error), higher y is better (a reward). Points with a
    non-finite coordinate are never on the front.
    """
    xs, ys = points[x].to_numpy(dtype=float), points[y].to_numpy(dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    front = np.zeros(len(points), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=points.index, name="pareto")


def tradeoff(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's (method, strength, fidelity, reward) points in strength order, flagged."""
    pts = board[["method", "strength", "fidelity", "reward"]].sort_values(["method", "strength"], ignore_index=True)
    pts["pareto"] = pareto_front(pts, "fidelity", "reward")
    return pts


def is_unguided(methods: pd.Series) -> pd.Series:
    """True where a method label is the unguided baseline: method UNGUIDED whatever its variant tags
    (a label of variant_labels, e.g. 'none steps=50 eta=1', starts with the method's name and a space)."""
    return methods.astype(str).str.split(n=1).str[0] == UNGUIDED


def cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (method, strength): cost per sample per guided round (round >= 1), over non-failed cells.

    Columns: method, strength, cells, denoiser_forwards, denoiser_vjps, objective_evals,
    objective_grads (each divided by `samples`), wall_seconds_per_round, peak_memory_mb, and
    wall_vs_unguided: wall per round / that of the unguided method (`none`, whatever its variant
    tags) on the same sampling grid (GRID_KEYS), or of every unguided cell of the panel when none
    ran on that grid; NaN when the panel has no unguided cell.
    """
    # Costs repeat on every metric row of a round: one row per (cell, round).
    rounds = df[(df["status"] != "failed") & (df["round"] >= 1)].drop_duplicates(["run_id", "round"])
    per = rounds[["run_id", *GROUP_KEYS]].copy()
    samples = rounds["samples"].astype(float).where(rounds["samples"] > 0)
    for col, name in COSTS_PER_SAMPLE.items():
        per[name] = rounds[col].astype(float) / samples
    per["wall_seconds_per_round"] = rounds["wall_seconds"].astype(float)
    per["peak_memory_mb"] = rounds["peak_memory_mb"].astype(float)
    metrics = [*COSTS_PER_SAMPLE.values(), "wall_seconds_per_round", "peak_memory_mb"]
    per_cell = per.groupby(["run_id", *GROUP_KEYS], sort=False)[metrics].mean().reset_index()
    per_cell = per_cell.join(rounds.groupby("run_id", sort=False)[GRID_KEYS].first(), on="run_id")
    base = per_cell[is_unguided(per_cell["method"])]
    same_grid = base.groupby(GRID_KEYS, dropna=False)["wall_seconds_per_round"].mean().rename("unguided_wall")
    unguided = per_cell.join(same_grid, on=GRID_KEYS)["unguided_wall"].fillna(base["wall_seconds_per_round"].mean())
    per_cell["wall_vs_unguided"] = per_cell["wall_seconds_per_round"] / unguided.where(unguided > 0)
    metrics.append("wall_vs_unguided")
    out = per_cell.groupby(GROUP_KEYS, sort=True)[metrics].mean()
    out.insert(0, "cells", per_cell.groupby(GROUP_KEYS, sort=True).size())
    return out.reset_index()


def provenance_summary(df: pd.DataFrame) -> dict[str, object]:
    """Distinct package versions, commits, torch versions, devices, hosts; SLURM jobs counted."""
    def distinct(col: str) -> list[str]:
        return sorted({str(v) for v in df[col].dropna().unique()})

    started = df["started_at"].dropna()
    return {
        "package versions": distinct("package_version"),
        "git commits": distinct("git_commit"),
        "torch versions": distinct("torch_version"),
        "devices": distinct("device"),
        "hostnames": distinct("hostname"),
        "SLURM jobs": len(distinct("slurm_job_id")),
        "started": f"{started.min()} to {started.max()}" if len(started) else None,
    }


def _scalars(d: dict, prefix: str = "") -> dict[str, object]:
    """A report's scalar entries, nested dicts flattened to dotted keys; lists left out."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _scalars(v, f"{prefix}{k}.")
        elif v is None or isinstance(v, (str, int, float, bool)):
            out[f"{prefix}{k}"] = v
    return out


def model_reports(models_dir: str | Path) -> pd.DataFrame:
    """Every *.json in `models_dir` as one row (file name first) of its scalar entries, nested ones
    flattened (a subspace checkpoint's Jacobian diagnostics: `jacobian.<objective>.<level>.<measure>`,
    beside its eps-loss)."""
    rows = []
    for path in sorted(Path(models_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read model report {path}: {exc}") from exc
        rows.append({"file": path.name} | (_scalars(data) if isinstance(data, dict) else {}))
    return pd.DataFrame(rows, dtype=object)  # an integer stays one where another report lacks the entry
