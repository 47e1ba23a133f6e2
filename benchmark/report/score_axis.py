"""The score network as an axis: how each method's held-out result degrades as the score gets worse.

Where one task and objective were run with several denoisers (a checkpoint family,
`pretrain.<task>.epochs: [10, 50, 100]`, and the oracle as the limit), each denoiser's panel has its
own selection (every method tuned on that denoiser), and this section puts them side by side:
- the score quality of each denoiser, from the checkpoint every row names (`checkpoint_info`): its
  held-out eps-loss above the oracle's irreducible loss, 100 (L / L_oracle - 1) %, and the Jacobian
  diagnostics against the oracle along the objective's gradients (benchmark.diagnostics: the share of
  J^T g in span(A), its cosine with the oracle's), averaged over noise levels; the oracle is 0 % and 1;
- each method variant's held-out final reward and fidelity (mean over the evaluation seeds, at the
  setting chosen on that denoiser), drawn against the denoisers ordered from the worst score to the
  oracle: solid lines for methods whose guidance direction passes through the denoiser (they take
  denoiser VJPs: gloss, dps, freedom, lgd, shen, ugd, tfg), dashed for those whose does not (naive,
  mpgd, cg, none, bon, smc with their default proposal).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from benchmark.report import aggregate as agg
from benchmark.report.figures import FIGSIZE, STYLE, direction_text, encode

ORACLE = "oracle"


def denoiser_quality(rows: pd.DataFrame, objective: str) -> dict:
    """{epochs, eps_excess_pct, share, cosine, norm_ratio} of the denoiser of `rows` (one denoiser):
    from its checkpoint_info; the oracle's are exact (0 %, 1, 1, 1)."""
    if (rows["denoiser"] == ORACLE).all():
        return {"epochs": None, "eps_excess_pct": 0.0, "share": 1.0, "cosine": 1.0, "norm_ratio": 1.0}
    infos = rows["checkpoint_info"].dropna().unique() if "checkpoint_info" in rows else []
    info = (json.loads(infos[0]) if len(infos) else {}).get("denoiser", {})
    loss, floor = info.get("heldout_loss"), info.get("oracle_heldout_loss")
    excess = 100 * (loss / floor - 1) if loss is not None and floor else math.nan
    pick = lambda m: info.get(f"jacobian.{objective}.{m}", math.nan)  # noqa: E731
    return {"epochs": info.get("epochs"), "eps_excess_pct": excess, "share": pick("vjp_share_in_span"),
            "cosine": pick("vjp_cosine"), "norm_ratio": pick("vjp_norm_ratio")}


def score_axes(df: pd.DataFrame, evaluation_seeds, palette: dict, figures_dir: Path | None = None) -> list[dict]:
    """One entry per (task, objective) run with two or more denoisers, at least one a checkpoint: the
    denoisers' quality table, the methods' held-out results per denoiser and the figure."""
    ev = df[df["seed"].isin(list(evaluation_seeds)) & (df["status"] == "ok")]
    if ev.empty:
        return []
    ev = ev[ev["round"] == ev.groupby("run_id")["round"].transform("max")]
    out = []
    for (task, objective), rows in ev.groupby(["task", "objective"], sort=True):
        denoisers = sorted(rows["denoiser"].dropna().unique())
        if len(denoisers) < 2 or denoisers == [ORACLE]:
            continue
        base_objective = rows["objective"].iloc[0].split()[0]
        quality = {d: denoiser_quality(rows[rows["denoiser"] == d], base_objective) for d in denoisers}
        # worst score first, the oracle last
        order = sorted(denoisers, key=lambda d: (-np.nan_to_num(quality[d]["eps_excess_pct"], nan=np.inf), d))
        fidelity = agg.fidelity_metric(rows)
        results = []
        for method, mrows in rows.groupby("method", sort=True):
            through = bool((mrows["cost_denoiser_vjps"] > 0).any())
            entry = {"method": method, "through_denoiser": through, "reward": {}, "fidelity": {}}
            for d in order:
                sel = mrows[mrows["denoiser"] == d]
                entry["reward"][d] = _mean(sel, agg.REWARD_METRIC)
                entry["fidelity"][d] = _mean(sel, fidelity) if fidelity else math.nan
            results.append(entry)
        title = f"{task} / {objective}"
        save = (figures_dir / f"score_axis_{task}_{objective}.png".replace(" ", "_")) if figures_dir else None
        out.append({"title": title, "order": order, "quality": [{"denoiser": d} | quality[d] for d in order],
                    "results": results, "fidelity": fidelity,
                    "figure": score_axis_figure(order, quality, results, fidelity, palette, title, save,
                                                fidelity_direction=agg.metric_direction(fidelity, task, base_objective)
                                                if fidelity else None)})
    return out


def _mean(rows: pd.DataFrame, metric: str) -> float:
    values = rows.loc[rows["metric"] == metric, "value"]
    return float(values.mean()) if len(values) else math.nan


def _tick(d: str, q: dict) -> str:
    if d == ORACLE:
        return "oracle"
    share = f", share {q['share']:.2f}" if np.isfinite(q["share"]) else ""
    return f"{d}\n+{q['eps_excess_pct']:.2f} % eps{share}"


def score_axis_figure(order: list[str], quality: dict, results: list[dict], fidelity: str | None, palette: dict,
                      title: str = "", save_to: str | Path | None = None, fidelity_direction=None) -> str:
    """Held-out final reward (left) and fidelity (right) of each method variant against the denoisers,
    worst score first, the oracle last; solid: direction through the denoiser, dashed: not."""
    x = np.arange(len(order))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.8, FIGSIZE[1]))
        for ax, key, label in ((axes[0], "reward", f"held-out final {agg.REWARD_METRIC} (higher is better)"),
                               (axes[1], "fidelity", f"held-out final {fidelity} ({direction_text(fidelity_direction)})"
                                if fidelity else "no fidelity metric")):
            for r in results:
                y = [r[key][d] for d in order]
                ax.plot(x, y, marker="o", linestyle="-" if r["through_denoiser"] else "--",
                        color=palette.get(r["method"], palette.get(r["method"].split()[0])), label=r["method"])
            ax.set_xticks(x, [_tick(d, quality[d]) for d in order], fontsize="x-small")
            ax.set_ylabel(label)
            ax.set_xlabel("denoiser: worse score (left) to the exact score (right)")
        axes[0].legend(fontsize="x-small", title="solid: through the denoiser", title_fontsize="x-small")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return encode(fig, save_to)
