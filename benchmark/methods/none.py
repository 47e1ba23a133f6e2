"""Unguided sampling: the shared DDIM(eta) loop with e = eps_theta(x_t, t). Cost 1U per step."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.methods.base import GuidanceMethod


@dataclass
class Unguided(GuidanceMethod):
    name = "none"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    def __post_init__(self):
        super().__post_init__()
        if self.strength != 0:
            raise ValueError(f"method 'none' has no guidance strength; use strength 0, got {self.strength}")

    def costs_per_sample(self, steps, timesteps=None):
        """1U per step."""
        return (steps, 0, 0, 0)
