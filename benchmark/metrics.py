"""Everything measured on a batch of samples, averaged over samples (each sample counts once)."""

from __future__ import annotations

import math

import torch

#: Which way each measure of `sample_measures` besides the task's own metrics is better (the task's are
#: its `Task.metric_directions`): the reward statistics and the gaps to the known optima. The reward is
#: always to be maximised. None: declared, with no better direction (the reward's spread across the
#: batch is neither good nor bad), so the report shows it unranked.
METRIC_DIRECTIONS: dict[str, str | float | None] = {
    "reward_mean": "higher", "reward_std": None, "reward_topk": "higher", "gap": "lower", "gap_support": "lower"}


def topk_count(n: int) -> int:
    """k of the top-k reward: the best 10 % of the batch, at least one sample."""
    return max(1, math.ceil(0.1 * n))


def sample_measures(x: torch.Tensor, objective, task) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(metrics, per-sample values): reward statistics, gaps to the known optima and the task's
    fidelity metrics, each a mean over samples; and per chain (row i of x is chain i) the rewards,
    under 'reward_mean', and each task metric the task measures per sample (a [B] tensor)."""
    with torch.no_grad():
        r = objective(x).double()
        out = {
            "reward_mean": float(r.mean()),
            "reward_std": float(r.std()) if r.numel() > 1 else 0.0,
            "reward_topk": float(r.topk(topk_count(r.numel())).values.mean()),
        }
        per_sample = {"reward_mean": r.tolist()}
        if objective.optimum is not None:
            out["gap"] = objective.optimum - out["reward_mean"]
        if objective.optimum_on_support is not None:
            out["gap_support"] = objective.optimum_on_support - out["reward_mean"]
        for name, value in task.sample_metrics(x, objective).items():
            if isinstance(value, torch.Tensor) and value.dim() == 1:
                per_sample[name] = value.double().tolist()
                value = value.mean()
            out[name] = float(value)
    return out, per_sample


def sample_metrics(x: torch.Tensor, objective, task) -> dict[str, float]:
    """Reward statistics, gaps to the known optima, and the task's fidelity metrics."""
    return sample_measures(x, objective, task)[0]
