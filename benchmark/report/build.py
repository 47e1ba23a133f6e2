"""build_report: the aggregated results file -> one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import shutil
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from benchmark.report import aggregate as agg
from benchmark.report import figures as figs
from benchmark.report import verdict as vd
from benchmark.report.galleries import find_galleries, panel_galleries
from benchmark.report.html import render, write_text_atomic
from benchmark.report.score_axis import score_axes
from benchmark.results import atomic_path


def _label(value) -> str:
    return "—" if value is None or (isinstance(value, float) and value != value) else str(value)


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", "_".join(_label(p) for p in parts)).strip("-") or "panel"


def _records(df: pd.DataFrame) -> list[dict]:
    return df.to_dict("records")


def _panel(index: int, key: tuple, rows: pd.DataFrame, palette: dict, fidelity_metrics: Sequence[str],
           level: float, figures_dir: Path | None, galleries: dict[str, Path]) -> dict:
    task, objective, denoiser = (_label(k) for k in key)
    title = f"{task} · {objective} · {denoiser}"
    slug = f"{index:02d}_{_slug(*key)}"
    fidelity = agg.fidelity_metric(rows, fidelity_metrics)
    extra = agg.panel_metrics(rows, fidelity)
    directions = {m: agg.metric_direction(m, task, objective) for m in [agg.REWARD_METRIC, *extra]}
    if fidelity is not None:
        directions[fidelity] = agg.metric_direction(fidelity, task, objective)
    board = agg.leaderboard(rows, fidelity, level, extra=extra)
    strengths = agg.best_strengths(board)

    def png(kind: str) -> Path | None:
        return figures_dir / f"{slug}_{kind}.png" if figures_dir is not None else None

    figures = [{
        "title": f"Convergence: {agg.REWARD_METRIC} per round",
        "caption": f"Mean over seeds with a {level:.0%} t-interval band; each method at its best strength; "
                   "ok cells only.",
        "png": figs.curves_figure(agg.curves(rows, agg.REWARD_METRIC, level), strengths, agg.REWARD_METRIC,
                                  palette, title=title, save_to=png("reward")),
    }]
    tradeoff = None
    if fidelity is not None:
        figures.append({
            "title": f"Fidelity: {fidelity} per round ({agg.direction_text(directions[fidelity])})",
            "caption": f"Mean over seeds with a {level:.0%} t-interval band; each method at its best strength.",
            "png": figs.curves_figure(agg.curves(rows, fidelity, level), strengths, fidelity, palette,
                                      title=title, save_to=png("fidelity")),
        })
        tradeoff = agg.tradeoff(board)
        chain = vd.chain_cis(rows, [agg.REWARD_METRIC, fidelity], level)
        pts = tradeoff.merge(chain, on=["method", "strength"], how="left")
        tradeoff["pareto"] = vd.ci_pareto(pts.rename(columns={f"{agg.REWARD_METRIC}_ci": "reward_ci",
                                                              f"{fidelity}_ci": "fidelity_ci"})).to_numpy()
        figures.append({
            "title": f"Trade-off across strengths: {agg.REWARD_METRIC} vs {fidelity}",
            "caption": "Final round, mean over seeds; one point per (method, strength), labelled with the "
                       "strength; ringed points are not dominated: no other point is better in reward or in "
                       + fidelity + " beyond the two points' combined CI over chains without being worse beyond "
                       "it in the other (differences inside the CIs are ties).",
            "png": figs.tradeoff_figure(tradeoff, fidelity, agg.REWARD_METRIC, palette, title=title,
                                        save_to=png("tradeoff"), fidelity_direction=directions[fidelity],
                                        reward_direction=directions[agg.REWARD_METRIC]),
        })
    costs = agg.cost_table(rows)
    return {
        "id": f"panel-{index}", "title": title, "task": task, "objective": objective, "denoiser": denoiser,
        "fidelity": fidelity,
        "extra_metrics": [{"name": m, "direction": directions[m], "arrow": agg.direction_arrow(directions[m])}
                          for m in extra],
        "direction_legend": _legend(directions[m] for m in extra), "metric_notes": _metric_notes(task, extra),
        "leaderboard": _records(board), "figures": figures, "galleries": panel_galleries(rows, galleries),
        "pareto": _records(tradeoff[tradeoff["pareto"]]) if tradeoff is not None else [],
        "costs": _records(costs), "has_unguided": bool(agg.is_unguided(costs["method"]).any()),
    }


def _legend(directions) -> str:
    """The arrows' key under a leaderboard: ↑ and ↓ always, a target's and 'no arrow' when shown."""
    directions = list(directions)
    parts = ["↑ higher is better", "↓ lower is better"]
    parts += [f"{agg.direction_arrow(d)} {agg.direction_text(d)}"
              for d in dict.fromkeys(d for d in directions if d not in (agg.HIGHER, agg.LOWER, None))]
    if any(d is None for d in directions):
        parts.append("no arrow: no declared direction")
    return ", ".join(parts)


def _metric_notes(task: str, metrics) -> list[str]:
    """What the task says its metrics are measured against (its `metric_notes`, e.g. subspace's calibration
    metrics: the data posterior, or the sampler's): one line per note, naming the shown metrics it covers."""
    from benchmark.tasks import TASKS

    notes = getattr(TASKS.get(task), "metric_notes", None) or {}
    grouped: dict[str, list[str]] = {}
    for m in metrics:
        if m in notes:
            grouped.setdefault(notes[m], []).append(m)
    return [f"{', '.join(ms)}: {note}" for note, ms in grouped.items()]


def _panel_rows(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    return df[(df["task"] == key[0]) & (df["objective"] == key[1]) & (df["denoiser"] == key[2])]


def _verdict_context(df: pd.DataFrame, header: dict, selections: list[dict], palette: dict, level: float,
                     figures_dir: Path | None, panel_ids: dict) -> dict:
    """The report's first screen: per panel the held-out, gated, compute-matched verdict, then the
    summary across panels (see benchmark.report.verdict)."""
    level = float(header.get("level", level))
    panels = vd.verdict(df, header, selections)
    resamples = int(header.get("bootstrap", 2000))
    tuning = df[df["seed"].isin(header["seeds"]["tuning"])]
    out = []
    for i, p in enumerate(panels, 1):
        key = (p["panel"]["task"], p["panel"]["objective"], p["panel"]["denoiser"])
        title = " · ".join(_label(k) for k in key)
        png = figures_dir / f"verdict_{i:02d}_{_slug(*key)}_compute.png" if figures_dir is not None else None
        settings = [{k: v for k, v in r.items() if k != "cells"} for r in p["settings"]]
        hv = _hypervolumes(tuning, key, p, selections)
        for m in p["methods"]:
            m["hypervolume"] = hv.get(m["label"], hv.get(m["method"]))
        metrics = [m for m in [*agg.panel_metrics(_panel_rows(df, key)), "cost_per_success"]
                   if any(m in r for r in p["methods"])]
        out.append({
            "title": title, "anchor": panel_ids.get(key), "gate": p["gate"], "methods": p["methods"],
            "settings": sorted(settings, key=lambda r: (r["method"], r[vd.COMPUTE])),
            "excluded": p["excluded"], "budgets": p["budgets"], "equal_compute": p["equal_compute"],
            "metrics": metrics, "metric_notes": _metric_notes(key[0], metrics),
            "unguided_reward": next((r["reward"] for r in p["methods"] if r["method"] == vd.UNGUIDED), None),
            "figure": figs.compute_figure(settings, palette, title=title, save_to=png),
        })
    return {"protocol": header, "panels": out, "summary": vd.summary(panels, level, resamples), "level": level}


def _hypervolumes(tuning: pd.DataFrame, key: tuple, panel: dict, selections: list[dict]) -> dict[str, float]:
    """Per method label (tuning seeds, every strength): the hypervolume of its reward-vs-fidelity
    points, reference: unguided reward and the gate's worst admissible value of the fidelity metric."""
    rows = tuning[(tuning["task"] == key[0]) & (tuning["objective"] == key[1]) & (tuning["denoiser"] == key[2])]
    fidelity = agg.fidelity_metric(rows)
    if fidelity is None or rows.empty:
        return {}
    board = agg.leaderboard(rows, fidelity)
    none = board[agg.is_unguided(board["method"])]
    if none.empty:
        return {}
    rule = next((g for g in panel["gate"] if g["metric"] == fidelity), None)
    f_ref = vd.threshold(rule, float(none["fidelity"].mean())) if rule else float(board["fidelity"].max())
    r_ref = float(none["reward"].mean())
    return {m: vd.hypervolume(pts, f_ref, r_ref) for m, pts in board.groupby("method")}


@contextlib.contextmanager
def _pool(workers: int, tasks: int):
    """A pool of `workers` forked processes on Linux (None, nothing in parallel, for fewer than 1 worker or no
    task, or elsewhere: macOS forks unsafely, and spawning would re-import the plotting stack): the figures
    are drawn the same in any process."""
    if workers < 1 or tasks < 1 or not sys.platform.startswith("linux"):
        yield None
        return
    with warnings.catch_warnings():
        # Python >= 3.12 warns when a process with threads (Arrow's) forks; the children only draw figures
        warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)
        with ProcessPoolExecutor(min(workers, tasks), mp_context=multiprocessing.get_context("fork")) as pool:
            yield pool


def build_context(df: pd.DataFrame, source: str = "", models_dir: str | Path | None = None,
                  figures_dir: str | Path | None = None, galleries: dict[str, Path] | None = None,
                  fidelity_metrics: Sequence[str] | None = None, level: float = 0.95,
                  selected: str | Path | None = None, download: str | None = None, workers: int = 1) -> dict:
    """Everything the template shows, computed from the tidy results `df`.

    galleries: {run_id: PNG} of the cells that have a sample gallery (galleries.find_galleries).
    selected: the protocol's selection folder; with it the page opens with the verdict (evaluation
        seeds) and the drill-down panels show the tuning seeds (every setting).
    fidelity_metrics: the metrics tried, in order, as each panel's fidelity metric; default: its task's
        (aggregate.fidelity_candidates: the declared lower-is-better metrics in declaration order).
    workers: processes drawing figures (the drill-down panels in the others while this one does the verdict)."""
    counts, bad = agg.status_summary(df)
    palette = figs.method_palette(df["method"].dropna().unique())
    figures_dir = Path(figures_dir) if figures_dir is not None else None
    verdict = None
    drill = df
    if selected is not None:
        header, selections = vd.read_selection(selected)
        drill = df[df["seed"].isin(header["seeds"]["tuning"])]
    panel_list = agg.panels(drill)
    panel_ids = {tuple(key): f"panel-{i}" for i, (key, _) in enumerate(panel_list, 1)}
    score = []
    jobs = [(i, key, rows, palette, fidelity_metrics, level, figures_dir, galleries or {})
            for i, (key, rows) in enumerate(panel_list, 1)]
    with _pool(workers - 1 if selected is not None else workers * (workers > 1), len(jobs)) as pool:
        # the drill-down panels (most of the figures) in `workers` - 1 processes beside the verdict here
        pending = [pool.submit(_panel, *job) for job in jobs] if pool is not None else None
        if selected is not None:
            verdict = _verdict_context(df, header, selections, palette, level, figures_dir, panel_ids)
            score = score_axes(df, header["seeds"]["evaluation"], palette, figures_dir)
        panels = [f.result() for f in pending] if pending is not None else [_panel(*job) for job in jobs]
    models = None
    if models_dir is not None:
        m = agg.model_reports(models_dir)
        # One column per model file, one row per entry: the reports of different networks share few keys.
        entries = [c for c in m.columns if c != "file"]
        models = {"files": list(m["file"]) if "file" in m else [], "folder": str(models_dir),
                  "rows": [{"entry": c, "values": list(m[c])} for c in entries]}
    return {
        "source": source, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "level": level, "counts": counts, "bad_cells": _records(bad), "panels": panels,
        "fidelity_metrics": list(fidelity_metrics) if fidelity_metrics is not None
        else agg.report_fidelity_candidates(drill), "reward_metric": agg.REWARD_METRIC,
        "models": models, "provenance": agg.provenance_summary(df), "verdict": verdict, "download": download,
        "score_axes": score,
    }


def build_report(results_path: str | Path, out_html_path: str | Path, models_dir: str | Path | None = None,
                 figures_dir: str | Path | None = None, cells_dir: str | Path | None = None,
                 selected: str | Path | None = None, workers: int = 1) -> Path:
    """Write the HTML comparison report of `results_path` to `out_html_path` (atomically), and the
    results file beside it (same name, suffix .parquet) for download.

    models_dir: a folder of pre-training reports (*.json) shown as a table.
    figures_dir: also save every figure there as a PNG (for `snakemake --report`).
    cells_dir: where the cells' Parquet files and sample galleries lie (default: the folder `cells`
        beside `results_path`, the workflow's layout); image tasks' galleries are shown from there.
    selected: the protocol's selection folder (the workflow's results/selected): the verdict first.
    workers: processes that draw the figures (the same page whatever the number).
    """
    df = agg.load_results(results_path)
    cells_dir = Path(results_path).parent / "cells" if cells_dir is None else Path(cells_dir)
    galleries = find_galleries(cells_dir, tasks=sorted(df["task"].dropna().unique()))
    out = Path(out_html_path)
    download = out.with_suffix(".parquet")
    context = build_context(df, source=Path(results_path).name, models_dir=models_dir, figures_dir=figures_dir,
                            galleries=galleries, selected=selected, download=download.name, workers=workers)
    with atomic_path(download) as tmp:
        shutil.copyfile(results_path, tmp)
    write_text_atomic(render(context), out)
    return out
