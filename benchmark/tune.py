"""TFG's hyper-parameter search (Ye et al. 2024, §5): a beam search over multiplicative moves.

Start from one setting (TFG: rho = mu = gamma = 0.25, or 0.5); every round, each setting of the
beam proposes one candidate per parameter, that parameter multiplied by its factor (2 for rho
and mu, 10 for gamma); all settings seen are scored on a small batch and the best `beam` of
them (2-3 in TFG) form the next beam; after `rounds` rounds (6-8 in TFG) the best setting wins.

Scores are measured by running the method (one guided round of a cell) and are to be maximised;
a non-finite score (a diverged run) ranks last. Every setting is scored once (cached), so the
search costs at most 1 + rounds * beam * len(factors) runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

#: TFG's moves: rho and mu doubled, gamma multiplied by 10.
TFG_FACTORS = {"strength": 2.0, "mu": 2.0, "gamma": 10.0}
TFG_START = {"strength": 0.25, "mu": 0.25, "gamma": 0.25}


@dataclass(frozen=True)
class Trial:
    params: tuple[tuple[str, float], ...]
    score: float
    round: int

    def as_dict(self) -> dict[str, float]:
        return dict(self.params)


def _key(params: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in params.items()))


def _rank(score: float) -> float:
    return score if math.isfinite(score) else -math.inf


def beam_search(score: Callable[[dict[str, float]], float], start: dict[str, float],
                factors: dict[str, float], beam: int = 2, rounds: int = 6) -> list[Trial]:
    """All trials in the order they were scored; the best is max(trials, key=score)."""
    if beam < 1 or rounds < 0:
        raise ValueError(f"beam must be >= 1 and rounds >= 0, got beam={beam}, rounds={rounds}")
    unknown = sorted(set(factors) - set(start))
    if unknown:
        raise ValueError(f"factors for parameters without a start value: {unknown}; start has {sorted(start)}")
    seen: dict[tuple, Trial] = {}

    def evaluate(params: dict[str, float], rnd: int) -> Trial:
        key = _key(params)
        if key not in seen:
            seen[key] = Trial(key, float(score(dict(key))), rnd)
        return seen[key]

    current = [evaluate(start, 0)]
    for rnd in range(1, rounds + 1):
        for trial in list(current):
            for name, factor in factors.items():
                evaluate(trial.as_dict() | {name: trial.as_dict()[name] * factor}, rnd)
        current = sorted(seen.values(), key=lambda t: _rank(t.score), reverse=True)[:beam]
    return list(seen.values())


def best(trials: list[Trial]) -> Trial:
    return max(trials, key=lambda t: _rank(t.score))


def cell_score(base: "CellSpec", method_params: dict, metric: str = "reward_mean",  # noqa: F821
               maximise: bool = True, device: str = "auto") -> Callable[[dict[str, float]], float]:
    """A score function running one guided round of `base` with the method's parameters replaced:
    the final-round `metric` (negated when not maximised); NaN when the cell diverged or failed."""
    from benchmark.cell import run_cell

    def score(params: dict[str, float]) -> float:
        params = dict(params)
        strength = params.pop("strength", base.strength)
        spec = base.replace(strength=strength, rounds=1,
                            params={**method_params, **params})
        rows = run_cell(spec, device, progress=False)
        values = [r["value"] for r in rows if r["metric"] == metric and r["round"] == 1 and r["status"] == "ok"]
        if not values:
            return math.nan
        return values[0] if maximise else -values[0]

    return score
