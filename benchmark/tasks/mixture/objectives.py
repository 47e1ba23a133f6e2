"""The `mixture` task's objectives: rewards r (to maximise, per sample [B]) whose target p0(x) exp(r(x)) / Z
is again a Gaussian mixture, known in closed form (benchmark/tasks/mixture/mixture.py), so samples are
measured against exact draws of it (`calibration`, benchmark/tasks/mixture/metrics.py). The target is what
SMC at strength 1 samples (p0 exp(lam r), lam = 1) and what a posterior sampler should draw.

- MixtureInverse, r(x) = -||y - H x||^2 / (2 sigma_y^2) = log N(y; H x, sigma_y^2 I) + const: the target is the
  posterior p0(x | y), a mixture of conditioned components (means m_k, covariances S_k, weights
  w'_k ∝ w_k N(y; H mu_k, H Sigma_k H^T + sigma_y^2 I)). sup r = 0 (H x = y has solutions: m < D).
- MixtureTilt, r(x) = lam theta^T x: the target is the tilted mixture (means mu_k + lam Sigma_k theta,
  weights w''_k ∝ w_k exp(lam theta^T mu_k + lam^2 theta^T Sigma_k theta / 2)). Unbounded: no optimum.
- MixtureBetween, r(x) = -||x - b||^2 / (2 s^2): a Gaussian log-likelihood of the observation b of x itself,
  so the target is the posterior for H = I, y = b, sigma_y = s. sup r = 0 at x = b, a point between modes
  and off the data: a method that maximises r leaves the data, one that samples the target does not.
"""

from __future__ import annotations

import math

import torch

from benchmark.objectives.base import Objective
from benchmark.tasks.mixture.metrics import METRIC_DIRECTIONS, TargetMetrics
from benchmark.tasks.mixture.mixture import GaussianMixture


def _positive(name: str, key: str, value) -> float:
    """`value` as a float, or ValueError unless it is a finite number > 0."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"objective {name!r}: {key} must be a finite number > 0, got {value!r}")
    return float(value)


class MixtureObjective(Objective):
    """An objective whose target p0(x) exp(r(x)) / Z is the mixture `target` (component k of it from data
    component k); `functional` [D]: the direction c of the credible-interval metric's c^T x;
    `reference_seed` fixes the metrics' slices and reference draws."""

    #: The metrics of `calibration` (benchmark.tasks.mixture.metrics.METRIC_DIRECTIONS).
    metric_directions = METRIC_DIRECTIONS

    def __init__(self, name: str, data: GaussianMixture, target: GaussianMixture, functional: torch.Tensor,
                 reference_seed: int):
        super().__init__()
        self.name = name
        self.data = data
        self.metrics = TargetMetrics(data, target, functional, reference_seed)

    @property
    def target(self) -> GaussianMixture:
        return self.metrics.target

    def sample_target(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws of the target: [n, D], float64 on the CPU."""
        return self.target.sample(n, generator)[0]

    def calibration(self, x: torch.Tensor) -> dict[str, float]:
        """sw2, weight_error, coverage, ci90_coverage of samples x [n, D] against the target, and each one's
        value for n exact draws (`_exact_n`)."""
        return self.metrics(x)


class MixtureInverse(MixtureObjective):
    """r(x) = -||y - H x||^2 / (2 sigma_y^2) for x: [B, D] -> [B]; H [m, D], y [m]."""

    kind = "inverse"       # dps's default step is Chung et al.'s, on residual_norm
    optimum = 0.0

    def __init__(self, name: str, data: GaussianMixture, H: torch.Tensor, y: torch.Tensor, sigma_y: float,
                 functional: torch.Tensor, reference_seed: int):
        sigma_y = _positive(name, "sigma_y", sigma_y)
        H32, y32 = H.float(), y.float()
        target = data.condition(H32.double(), y32.double(), sigma_y)   # the float32 H, y the reward uses
        super().__init__(name, data, target, functional, reference_seed)
        self.sigma_y = sigma_y
        self.register_buffer("H", H32)
        self.register_buffer("y", y32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.residual_norm(x) ** 2 / (2 * self.sigma_y ** 2)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||y - H x||_2 per sample: [B, D] -> [B]."""
        return torch.linalg.vector_norm(self.y - x @ self.H.T, dim=-1)

    def params(self) -> dict:
        return {"m": self.H.shape[0], "sigma_y": self.sigma_y}


class MixtureTilt(MixtureObjective):
    """r(x) = lam theta^T x for x: [B, D] -> [B]; theta [D] a unit vector."""

    optimum = None

    def __init__(self, name: str, data: GaussianMixture, theta: torch.Tensor, lam: float, reference_seed: int):
        lam = _positive(name, "lam", lam)
        theta32 = theta.float()
        target = data.tilt(lam * theta32.double())
        super().__init__(name, data, target, theta32.double(), reference_seed)
        self.lam = lam
        self.register_buffer("theta", theta32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * (x @ self.theta)

    def params(self) -> dict:
        return {"lam": self.lam}


class MixtureBetween(MixtureObjective):
    """r(x) = -||x - b||^2 / (2 scale^2) for x: [B, D] -> [B]; b [D] (between two modes)."""

    optimum = 0.0

    def __init__(self, name: str, data: GaussianMixture, b: torch.Tensor, scale: float, functional: torch.Tensor,
                 reference_seed: int):
        scale = _positive(name, "scale", scale)
        b32 = b.float()
        eye = torch.eye(data.dim, dtype=torch.float64)
        target = data.condition(eye, b32.double(), scale)
        super().__init__(name, data, target, functional, reference_seed)
        self.scale = scale
        self.register_buffer("b", b32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x - self.b) ** 2).sum(-1) / (2 * self.scale ** 2)

    def params(self) -> dict:
        return {"scale": self.scale}
