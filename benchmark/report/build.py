"""build_report: the aggregated results file -> one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from benchmark.report import aggregate as agg
from benchmark.report import figures as figs
from benchmark.report.galleries import find_galleries, panel_galleries
from benchmark.report.html import render, write_text_atomic


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
            "title": f"Fidelity: {fidelity} per round (lower is better)",
            "caption": f"Mean over seeds with a {level:.0%} t-interval band; each method at its best strength.",
            "png": figs.curves_figure(agg.curves(rows, fidelity, level), strengths, fidelity, palette,
                                      title=title, save_to=png("fidelity")),
        })
        tradeoff = agg.tradeoff(board)
        figures.append({
            "title": f"Trade-off across strengths: {agg.REWARD_METRIC} vs {fidelity}",
            "caption": "Final round, mean over seeds; one point per (method, strength), labelled with the "
                       "strength; ringed points are not dominated (no other point has both higher reward "
                       "and lower " + fidelity + ").",
            "png": figs.tradeoff_figure(tradeoff, fidelity, agg.REWARD_METRIC, palette, title=title,
                                        save_to=png("tradeoff")),
        })
    costs = agg.cost_table(rows)
    return {
        "id": f"panel-{index}", "title": title, "task": task, "objective": objective, "denoiser": denoiser,
        "fidelity": fidelity, "extra_metrics": [{"name": m, "higher_is_better": agg.PANEL_METRICS[m]} for m in extra],
        "leaderboard": _records(board), "figures": figures, "galleries": panel_galleries(rows, galleries),
        "pareto": _records(tradeoff[tradeoff["pareto"]]) if tradeoff is not None else [],
        "costs": _records(costs), "has_unguided": bool((costs["method"] == agg.UNGUIDED).any()),
    }


def build_context(df: pd.DataFrame, source: str = "", models_dir: str | Path | None = None,
                  figures_dir: str | Path | None = None, galleries: dict[str, Path] | None = None,
                  fidelity_metrics: Sequence[str] = agg.FIDELITY_METRICS, level: float = 0.95) -> dict:
    """Everything the template shows, computed from the tidy results `df`.

    galleries: {run_id: PNG} of the cells that have a sample gallery (galleries.find_galleries)."""
    counts, bad = agg.status_summary(df)
    palette = figs.method_palette(df["method"].dropna().unique())
    figures_dir = Path(figures_dir) if figures_dir is not None else None
    panels = [_panel(i, key, rows, palette, fidelity_metrics, level, figures_dir, galleries or {})
              for i, (key, rows) in enumerate(agg.panels(df), 1)]
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
        "fidelity_metrics": list(fidelity_metrics), "reward_metric": agg.REWARD_METRIC,
        "models": models, "provenance": agg.provenance_summary(df),
    }


def build_report(results_path: str | Path, out_html_path: str | Path, models_dir: str | Path | None = None,
                 figures_dir: str | Path | None = None, cells_dir: str | Path | None = None) -> Path:
    """Write the HTML comparison report of `results_path` to `out_html_path` (atomically).

    models_dir: a folder of pre-training reports (*.json) shown as a table.
    figures_dir: also save every figure there as a PNG (for `snakemake --report`).
    cells_dir: where the cells' Parquet files and sample galleries lie (default: the folder `cells`
        beside `results_path`, the workflow's layout); image tasks' galleries are shown from there.
    """
    df = agg.load_results(results_path)
    cells_dir = Path(results_path).parent / "cells" if cells_dir is None else Path(cells_dir)
    galleries = find_galleries(cells_dir, tasks=sorted(df["task"].dropna().unique()))
    context = build_context(df, source=Path(results_path).name, models_dir=models_dir, figures_dir=figures_dir,
                            galleries=galleries)
    out = Path(out_html_path)
    write_text_atomic(render(context), out)
    return out
