"""Noisy linear inverse problems: y = A x* + sigma_y n, n ~ N(0, I); reward r(x) = -||y - A x||_2.

The residual norm is per sample and unsquared, as in DPS's update (Chung et al. 2023, Alg. 1:
x_{t-1} -= zeta' grad_{x_t} ||y - A x0h||). These objectives declare kind "inverse" with
`residual_norm`, so `dps`'s default step is that rule (normalise="residual", strength zeta'); on this
r = -||y - A x|| it is the same step as normalise="none". r <= 0; it reaches 0 only where A x = y exactly,
which with sigma_y > 0 the ground truth x* itself does not (E ||y - A x*|| ~ sigma_y sqrt(m)).

Each chain restores its own held-out image: with `image` = "all" chain i restores image i mod L of
the held-out set, with an integer k every chain restores image k. The observation noise n is
drawn once per held-out image from the task seed, so every cell sees the same y.
"""

from __future__ import annotations

import math

import torch

from benchmark.objectives.base import Objective
from benchmark.objectives.operator import LinearMeasurement


class InverseProblem(LinearMeasurement, Objective):
    """x_star: [L, C, H, W] ground truths; noise: [L, *m] standard normal draws in measurement space;
    y = A x_star + sigma_y noise: [L, *m]. `buffers` (e.g. a mask) are registered before A is applied."""

    kind = "inverse"
    optimum = 0.0
    # DPS differentiates residual_norm in place of forward; the posterior samplers read y (operator.py)
    counted_methods = ("residual_norm", "measurement", "log_likelihood")

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float, image: int | str,
                 **buffers: torch.Tensor):
        super().__init__()
        self.check_sigma_y(self.name, sigma_y)
        self.sigma_y, self.image = float(sigma_y), image
        for key, value in buffers.items():
            self.register_buffer(key, value)
        self.register_buffer("x_star", x_star)
        self.register_buffer("y", self.operator(x_star) + self.sigma_y * noise)

    @staticmethod
    def check_sigma_y(name: str, sigma_y) -> None:
        """The noise level must be a finite number >= 0 (checked before anything is built)."""
        if not (isinstance(sigma_y, (int, float)) and not isinstance(sigma_y, bool) and math.isfinite(sigma_y)
                and sigma_y >= 0):
            raise ValueError(f"objective {name!r}: sigma_y must be a finite number >= 0, got {sigma_y!r}")

    def operator(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """The measurement A x: [B, C, H, W] -> [B, *m]."""
        raise NotImplementedError

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """The operator of the linear measurement (benchmark.objectives.operator.LinearMeasurement)."""
        return self.operator(x)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.x_star.shape[1:])

    def measurement(self, x: torch.Tensor) -> torch.Tensor:
        """y of each row of the batch x: [B, *m] (each chain's own held-out image's)."""
        return self.y[self.rows(x.shape[0], x.device)].to(x.device, x.dtype)

    def params(self) -> dict:
        return {"image": self.image, "sigma_y": self.sigma_y}

    def rows(self, B: int, device) -> torch.Tensor:
        return self.chain_index(B, len(self.x_star), self.x_star.device)

    def ground_truth(self, B: int, device) -> torch.Tensor:
        """x* of each row of a batch of B: [B, C, H, W]."""
        return self.x_star[self.rows(B, device)].to(device)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||y - A x||_2 per sample: [B]."""
        return torch.linalg.vector_norm((self.measurement(x) - self.operator(x)).flatten(1), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.residual_norm(x)
