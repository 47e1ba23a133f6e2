"""Across panels: the verdict's summary table (issue 27), from the panels of benchmark.report.verdict.

The rule (SUMMARY_RULE): methods are ordered by their mean pairwise win share over the panels both ran; a
method with no admissible setting on a panel it ran ties for last there; a panel a method cannot run is
left out of its comparisons, and a method that ran on fewer panels than the most-run ones carries a caveat.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.report.paired import bootstrap_ci, paired_units


SUMMARY_RULE = ("Methods are ordered by their mean pairwise win share: against each other method, over the panels "
                "both ran, the share of panels where it is better beyond the paired CI (a tie counts half; a method "
                "with no admissible setting on a panel loses there to every method that has one and ties with the "
                "others that have none); panels a method cannot run are left out of its comparisons.")


def panel_standing(panel: dict) -> tuple[list[str], list[str]]:
    """(evaluated, failed) methods of one verdict panel: evaluated = those with an admissible chosen
    setting on the evaluation seeds (the panel's `methods`); failed = the methods the panel ran
    (`ran`: a selection group there) with none. A method absent from `ran` could not run there."""
    evaluated = [r["method"] for r in panel["methods"]]
    failed = sorted(set(panel.get("ran", evaluated)) - set(evaluated))
    return evaluated, failed


def summary(panels: list[dict], level: float, resamples: int, seed: int = 0) -> dict:
    """Across panels (the rule in SUMMARY_RULE): each method's pairwise win share, ranks and the
    win/tie/loss matrix, over the panels each method ran.

    On a panel, the methods with an admissible chosen setting are ranked by held-out reward (1 = best,
    equal means share a rank); the methods with none (`failed`: gate, or a failed cell) tie for last,
    behind all of them. Win/tie/loss of a against b counts the panels both ran where the paired CI of
    a - b lies above 0 / holds 0 / lies below 0, a failed method losing to an evaluated one and tying
    with a failed one. win_share: the mean over opponents of (wins + ties / 2) / shared panels, the
    order of the table; a panel a method cannot run (not in `ran`: capability) counts in none of its
    comparisons. mean_rank: the mean of its ranks, with [lo, hi] the percentile interval under a
    bootstrap that resamples the paired units (chains) within each panel, jointly for all methods;
    tie_rank: the mean of 1 + the number of methods better beyond the paired CI. `panels`: panels
    ran; `failed`: of those, the ones without an admissible setting; `caveat` where a method ran on
    fewer panels than the most-run method."""
    rng = np.random.default_rng(seed)
    used = 0
    methods = sorted({m for p in panels for m in p.get("ran", [r["method"] for r in p["methods"]])})
    ranks = {m: [] for m in methods}
    tie_ranks = {m: [] for m in methods}
    boot = {m: np.zeros(resamples) for m in methods}
    failures = {m: 0 for m in methods}
    wtl = {a: {b: [0, 0, 0] for b in methods if b != a} for a in methods}
    for p in panels:
        names, failed = panel_standing(p)
        if len(names) + len(failed) < 2:
            continue
        chosen = {r["method"]: next(s for s in p["settings"] if s.get("job") == r["job"]) for r in p["methods"]}
        U = _unit_matrix([chosen[m]["cells"] for m in names]) if names else np.zeros((0, 1))
        if U is None:
            continue
        used += 1
        k, n = len(names), len(names) + len(failed)
        better = {m: 0 for m in names}   # how many methods are better beyond the paired CI
        for i, a in enumerate(names):
            for b in names[i + 1:]:      # one bootstrap per pair: the CI of b - a is that of a - b mirrored
                x, y, _ = paired_units(chosen[a]["cells"], chosen[b]["cells"])
                lo, hi = bootstrap_ci(x - y, level, resamples)
                outcome = 0 if lo > 0 else 2 if hi < 0 else 1
                wtl[a][b][outcome] += 1
                wtl[b][a][2 - outcome] += 1
                better[a] += hi < 0
                better[b] += lo > 0
            for b in failed:
                wtl[a][b][0] += 1
                wtl[b][a][2] += 1
        for i, a in enumerate(failed):
            for b in failed[i + 1:]:
                wtl[a][b][1] += 1
                wtl[b][a][1] += 1
        last = (k + 1 + n) / 2           # the failures' shared rank: the mean of places k+1..n
        if names:
            raw = _ranks(U.mean(1))
            idx = rng.integers(0, U.shape[1], size=(resamples, U.shape[1]))
            boot_ranks = np.apply_along_axis(_ranks, 0, U[:, idx].mean(-1))   # [methods, resamples]
            for j, m in enumerate(names):
                ranks[m].append(raw[j])
                tie_ranks[m].append(1 + better[m])
                boot[m] += boot_ranks[j]
        for m in failed:
            ranks[m].append(last)
            tie_ranks[m].append(k + 1)
            boot[m] += last
            failures[m] += 1
    out_ranks = []
    most = max((len(r) for r in ranks.values()), default=0)
    for m in methods:
        if not ranks[m]:
            continue
        dist = boot[m] / len(ranks[m])
        shares = [(w + t / 2) / (w + t + l) for w, t, l in (wtl[m][b] for b in wtl[m]) if w + t + l]
        row = {"method": m, "panels": len(ranks[m]), "failed": failures[m],
               "win_share": float(np.mean(shares)) if shares else math.nan,
               "opponents": len(shares), "mean_rank": float(np.mean(ranks[m])),
               "lo": float(np.quantile(dist, (1 - level) / 2)), "hi": float(np.quantile(dist, (1 + level) / 2)),
               "tie_rank": float(np.mean(tie_ranks[m])),
               "caveat": (f"ran on {len(ranks[m])} of the {most} panels the most-run method ran"
                          if len(ranks[m]) < most else None)}
        out_ranks.append(row)
    out_ranks.sort(key=lambda r: (-np.nan_to_num(r["win_share"], nan=-1.0), r["tie_rank"], r["mean_rank"], r["method"]))
    order = [r["method"] for r in out_ranks]
    matrix = [{"method": a, "cells": [None if a == b or not sum(wtl[a][b]) else
                                      {"win": wtl[a][b][0], "tie": wtl[a][b][1], "loss": wtl[a][b][2]}
                                      for b in order]}
              for a in order]
    return {"ranks": out_ranks, "order": order, "matrix": matrix, "rule": SUMMARY_RULE,
            "panels": used, "most_panels": most}


def _unit_matrix(settings: list[pd.DataFrame]) -> np.ndarray | None:
    """The settings' rewards on common paired units: chains of the common seeds where every setting
    records the same number of chains per seed, else seeds. [settings, units] or None."""
    common = sorted(set.intersection(*(set(s["seed"]) for s in settings)))
    if not common:
        return None
    rows = [s.set_index("seed").loc[common] for s in settings]
    chains = [list(r["chains"]) for r in rows]
    if all(all(c is not None for c in ch) for ch in chains) and \
            len({tuple(len(c) for c in ch) for ch in chains}) == 1:
        return np.stack([np.concatenate([np.asarray(c, float) for c in ch]) for ch in chains])
    return np.stack([r["reward"].to_numpy(float) for r in rows])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = highest value; ties share the mean rank."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(values, dtype=float), method="average")
