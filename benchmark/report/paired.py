"""Paired statistics of the verdict (DESIGN 3b): every method of a panel samples from the same per-chain
noise streams (seed, round, chain), so two settings' rewards are compared unit by unit (chains where both
record per-chain rewards, else seeds), with a percentile bootstrap CI of the mean paired difference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def bootstrap_ci(d: np.ndarray, level: float, resamples: int, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(d)."""
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.nan, math.nan
    if len(d) == 1 or np.ptp(d) == 0:
        return float(d.mean()), float(d.mean())
    from scipy import stats

    res = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=resamples, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_units(cells_a: pd.DataFrame, cells_b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """Matched reward units of two settings: per chain (seed, chain) where both record per-chain
    rewards with the same chains per seed, else per seed. (a, b, 'chain' | 'seed')."""
    common = sorted(set(cells_a["seed"]) & set(cells_b["seed"]))
    a_rows = cells_a.set_index("seed").loc[common]
    b_rows = cells_b.set_index("seed").loc[common]
    chains_a, chains_b = list(a_rows["chains"]), list(b_rows["chains"])
    if common and all(x is not None and y is not None and len(x) == len(y) for x, y in zip(chains_a, chains_b)):
        return (np.concatenate([np.asarray(x, float) for x in chains_a]),
                np.concatenate([np.asarray(y, float) for y in chains_b]), "chain")
    return a_rows["reward"].to_numpy(float), b_rows["reward"].to_numpy(float), "seed"
