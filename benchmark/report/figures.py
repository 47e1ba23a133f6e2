"""The report's figures: each function draws one figure and returns it as a base64 PNG.

Inputs are the tables of benchmark.report.aggregate (curves, trade-off points); bands are the
same t-intervals over seeds as the leaderboard's. Figures are closed once encoded.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmark.report.aggregate import HIGHER, LOWER, UNGUIDED, direction_text, is_unguided  # noqa: E402

STYLE = "whitegrid"
FIGSIZE = (6.4, 4.0)
DPI = 100


def method_palette(methods) -> dict[str, tuple]:
    """One colour per method, fixed for the whole report; the unguided baseline in grey."""
    methods = sorted(set(methods))
    unguided = set(pd.Series(methods, dtype=object)[is_unguided(pd.Series(methods, dtype=object))]) | {UNGUIDED}
    guided = [m for m in methods if m not in unguided]
    palette = dict(zip(guided, sns.color_palette("colorblind", max(len(guided), 1))))
    return palette | {m: (0.4, 0.4, 0.4) for m in unguided}


def encode(fig, save_to: str | Path | None = None) -> str:
    """PNG bytes of `fig` as base64 (also written to `save_to` when given); closes `fig`."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    data = buf.getvalue()
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        Path(save_to).write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def _log_if_wide(values, axis_setter) -> None:
    """Log scale when every value is positive and they span more than two decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and (v > 0).all() and v.max() / v.min() > 100:
        axis_setter("log")


def robust_limits(values, k: float = 3.0) -> tuple[float, float] | None:
    """(lo, hi) = quartiles -/+ k IQR when some finite value lies outside them (a run-away
    strength would otherwise squash every other point into a line); None when none does."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 4:
        return None
    q1, q3 = np.percentile(v, [25, 75])
    span = max(q3 - q1, 1e-9 * max(abs(q1), abs(q3), 1.0))
    lo, hi = q1 - k * span, q3 + k * span
    if v.min() >= lo and v.max() <= hi:
        return None
    return float(max(v.min(), lo)), float(min(v.max(), hi))


def curves_figure(curve: pd.DataFrame, strengths: dict[str, float], metric: str, palette: dict,
                  title: str = "", save_to: str | Path | None = None) -> str:
    """`metric` vs round, one line per method at `strengths[method]`, mean over seeds ± CI band.

    `curve` is aggregate.curves(...): method, strength, round, mean, lo, hi, n.
    """
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for method, strength in sorted(strengths.items()):
            c = curve[(curve["method"] == method) & (curve["strength"] == strength)].sort_values("round")
            if c.empty:
                continue
            colour = palette.get(method)
            ax.plot(c["round"], c["mean"], marker="o", markersize=3, color=colour,
                    linestyle="--" if method.split()[0] == UNGUIDED else "-", label=f"{method} (strength {strength:g})")
            band = c.dropna(subset=["lo", "hi"])
            if not band.empty:
                ax.fill_between(band["round"], band["lo"], band["hi"], color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel("round (0 = unguided batch)")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _log_if_wide(curve["mean"], ax.set_yscale)
        if title:
            ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes)
    return encode(fig, save_to)


def tradeoff_figure(points: pd.DataFrame, fidelity: str, reward: str, palette: dict,
                    title: str = "", save_to: str | Path | None = None, fidelity_direction=LOWER,
                    reward_direction=HIGHER) -> str:
    """Final reward (y) vs final fidelity error (x), a line per method through its strengths.

    `points` is aggregate.tradeoff(...): method, strength, fidelity, reward, pareto. Points are
    annotated with their strength; the Pareto front (lower x, higher y) is ringed and joined. The
    axes name the metrics' declared directions (aggregate.metric_direction): a fidelity metric is
    one declared lower-is-better (aggregate.fidelity_candidates), the reward higher-is-better.
    """
    pts = points.dropna(subset=["fidelity", "reward"]).copy()
    limits = robust_limits(pts["reward"])
    pts["shown"] = pts["reward"].clip(*limits) if limits else pts["reward"]
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for method, p in pts.groupby("method", sort=True):
            p = p.sort_values("strength")
            ax.plot(p["fidelity"], p["shown"], marker="o", color=palette.get(method), label=method)
            for _, row in p.iterrows():
                off = row["shown"] != row["reward"]       # off the scale: drawn at the edge, value given
                text = f"{row['strength']:g}" + (f" (reward {row['reward']:.3g})" if off else "")
                ax.annotate(text, (row["fidelity"], row["shown"]), xytext=(4, 4),
                            textcoords="offset points", fontsize="x-small")
                if off:
                    ax.scatter([row["fidelity"]], [row["shown"]], marker="v" if row["reward"] < row["shown"] else "^",
                               s=60, color=palette.get(method), zorder=4)
        front = pts[pts["pareto"]].sort_values("fidelity")
        if not front.empty:
            ax.plot(front["fidelity"], front["shown"], linestyle="--", color="0.3", linewidth=1, zorder=1)
            ax.scatter(front["fidelity"], front["shown"], s=140, facecolors="none", edgecolors="black",
                       linewidths=1.5, zorder=3, label="Pareto front")
        ax.set_xlabel(f"final {fidelity} ({direction_text(fidelity_direction)})")
        ax.set_ylabel(f"final {reward} ({direction_text(reward_direction)})")
        if limits:
            ax.text(0.99, 0.01, "triangles: off the scale, value in brackets", ha="right", va="bottom",
                    fontsize="x-small", transform=ax.transAxes)
        _log_if_wide(pts["fidelity"], ax.set_xscale)
        if title:
            ax.set_title(title)
        if pts.empty:
            ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize="small")
    return encode(fig, save_to)


def compute_figure(settings: list[dict], palette: dict, title: str = "", save_to: str | Path | None = None) -> str:
    """Held-out final reward (y, mean ± CI over evaluation seeds) against compute per output sample
    (x, denoiser forwards + VJPs, log scale): one point per method variant at its chosen setting, a
    line per method through its variants in compute order; inadmissible settings drawn hollow."""
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        by_method: dict[str, list[dict]] = {}
        for s in settings:
            if np.isfinite(s.get("compute", np.nan)) and np.isfinite(s.get("reward", np.nan)) and s["compute"] > 0:
                by_method.setdefault(s["method"], []).append(s)
        for method, pts in sorted(by_method.items()):
            pts = sorted(pts, key=lambda s: s["compute"])
            x = [p["compute"] for p in pts]
            y = [p["reward"] for p in pts]
            err = [p["reward_ci"] if np.isfinite(p.get("reward_ci", np.nan)) else 0.0 for p in pts]
            colour = palette.get(method, palette.get(method.split()[0]))
            ax.errorbar(x, y, yerr=err, color=colour, marker="o", linestyle="--" if method.split()[0] == UNGUIDED else "-",
                        capsize=2, label=method)
            hollow = [p for p in pts if not p["admissible"]]
            if hollow:
                ax.scatter([p["compute"] for p in hollow], [p["reward"] for p in hollow], s=90, facecolors="white",
                           edgecolors=colour, linewidths=1.5, zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel("compute per output sample (denoiser forwards + VJPs, log scale)")
        ax.set_ylabel("held-out final reward (higher is better)")
        if title:
            ax.set_title(title)
        if by_method:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no evaluated settings", ha="center", va="center", transform=ax.transAxes)
    return encode(fig, save_to)
