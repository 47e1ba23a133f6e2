"""Guo et al. (2024): data uniform on the unit sphere in R^64, objective r(x) = theta^T x (benchmark.objectives.linear).

There is no closed-form score under the forward process here, so only the trained denoiser
applies. Fidelity: | ||x|| - 1 | averaged over samples.
"""

from __future__ import annotations

import torch

from benchmark.tasks.base import Task


class SphereTask(Task):
    name = "sphere"
    metric_directions = {"norm_error": "lower"}
    jitter = 0.01  # coordinates of a unit vector in R^64 are ~1/8

    def __init__(self, task_seed: int = 0, dim: int = 64):
        super().__init__(task_seed)
        self.dim = dim

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        x = torch.randn(n, self.dim, generator=generator)
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, torch.Tensor]:
        return {"norm_error": (torch.linalg.vector_norm(x, dim=-1) - 1).abs()}  # per sample: [B]
