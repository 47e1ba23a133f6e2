"""r(x) = w^T (phi(x) - mu) / s: a fixed random linear head on a feature network.

The small-scale analogue of Guo et al.'s (2024) image experiment, where a reward model made of a
pre-trained network's features and a linear head is optimised with gradient guidance over
Algorithm-1 rounds. phi is the guiding classifier's penultimate layer (a feature network trained
for something else, as theirs was), standardised per feature with the training images' mean mu and
standard deviation s; the head w is drawn from the task seed (`head` picks another draw) and
scaled so r has mean 0 and standard deviation 1 over the training images. Unbounded (optimum None):
the question is how far guidance pushes r and what that costs in sample fidelity.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.objectives.base import Objective


class FeatureReward(Objective):
    name = "reward"
    optimum = None

    def __init__(self, feature_net: nn.Module, w: torch.Tensor, mu: torch.Tensor, s: torch.Tensor, head: int = 0):
        super().__init__()
        self.feature_net, self.head = feature_net, head
        self.register_buffer("w", w)
        self.register_buffer("mu", mu)
        self.register_buffer("s", s)

    def params(self) -> dict:
        return {"head": self.head}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> r: [B]."""
        return ((self.feature_net.features(x) - self.mu) / self.s) @ self.w

    @staticmethod
    def fit_head(features: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(w, mu, s) from training features [N, d]: w ~ N(0, I) scaled to unit reward variance on them."""
        mu, s = features.mean(0), features.std(0).clamp_min(1e-6)
        z = (features - mu) / s
        w = torch.randn(features.shape[1], generator=generator, dtype=features.dtype)
        return w / (z @ w).std(), mu, s
