"""Everything measured on a batch of samples, averaged over samples (each sample counts once)."""

from __future__ import annotations

import math

import torch


def topk_count(n: int) -> int:
    """k of the top-k reward: the best 10 % of the batch, at least one sample."""
    return max(1, math.ceil(0.1 * n))


def sample_metrics(x: torch.Tensor, objective, task) -> dict[str, float]:
    """Reward statistics, gaps to the known optima, and the task's fidelity metrics."""
    with torch.no_grad():
        r = objective(x).double()
        out = {
            "reward_mean": float(r.mean()),
            "reward_std": float(r.std()) if r.numel() > 1 else 0.0,
            "reward_topk": float(r.topk(topk_count(r.numel())).values.mean()),
        }
        if objective.optimum is not None:
            out["gap"] = objective.optimum - out["reward_mean"]
        if objective.optimum_on_support is not None:
            out["gap_support"] = objective.optimum_on_support - out["reward_mean"]
        out.update(task.sample_metrics(x, objective))
    return out
