"""The exact noise prediction for data x_0 = A u, u ~ N(0, I_d), A with orthonormal columns.

Under the VP forward process x_t ~ N(0, ab_t P + (1 - ab_t) I) with P = A A^T, so
    score(x_t) = -P x_t - (I - P) x_t / (1 - ab_t)
    eps(x_t)   = -sqrt(1 - ab_t) score = (x_t - ab_t P x_t) / sqrt(1 - ab_t)
    x0h(x_t)   = sqrt(ab_t) P x_t.
No training: it turns every sampler into one that can be checked in closed form.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.diffusion.schedules import VPSchedule


class SubspaceOracle(nn.Module):
    """eps(x_t, t) of N(0, A A^T) data; x: [B, D], t: [B] integer timesteps."""

    def __init__(self, A: torch.Tensor, schedule: VPSchedule):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("ab", schedule.ab.to(A.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t].unsqueeze(-1).to(x.dtype)
        Px = (x @ self.A) @ self.A.T
        return (x - ab * Px) / torch.sqrt(1 - ab)
