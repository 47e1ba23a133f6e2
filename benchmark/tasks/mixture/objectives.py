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

from benchmark.diffusion.noise import derive_seed
from benchmark.objectives.base import Objective
from benchmark.objectives.operator import MatrixMeasurement
from benchmark.tasks.mixture.metrics import METRIC_DIRECTIONS, TargetMetrics
from benchmark.tasks.mixture.mixture import GaussianMixture


def _positive(name: str, key: str, value) -> float:
    """`value` as a float, or ValueError unless it is a finite number > 0."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"objective {name!r}: {key} must be a finite number > 0, got {value!r}")
    return float(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


class MixtureObjective(Objective):
    """An objective of the mixture task whose target p0(x) exp(r(x)) / Z is the mixture `target` (component k of
    it from data component k); `functional` [D]: the direction c of the credible-interval metric's c^T x;
    `params`: the objective's parameters, which with the task's identity seed the metrics' slices and reference
    draws."""

    tasks = ("mixture",)
    #: The metrics of `calibration` (benchmark.tasks.mixture.metrics.METRIC_DIRECTIONS).
    metric_directions = METRIC_DIRECTIONS

    def __init__(self, task, target: GaussianMixture, functional: torch.Tensor, params: dict):
        super().__init__()
        self.data = task.mixture
        seed = derive_seed(task.name, task.task_seed, task.dim, task.K, task.radius, self.name, *sorted(params.items()))
        self.metrics = TargetMetrics(self.data, target, functional, seed)

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


class MixtureInverse(MatrixMeasurement, MixtureObjective):
    """r(x) = -||y - H x||^2 / (2 sigma_y^2) for x: [B, D] -> [B]; H [m, D], y [m].

    H: m orthonormal rows, random in the complement of d = mu_0 - mu_{K-1} (so H mu_0 = H mu_{K-1}); x* = mu_0,
    y = H x* + sigma_y n: each of the two modes explains y equally well but for its spread (a drawn x* can land
    where one mode's spread explains y far better: seed 2 of the task would give the lightest mode 0.007). H and
    n from their own streams of the task seed."""

    name = "inverse"
    kind = "inverse"       # dps's default step is Chung et al.'s, on residual_norm
    optimum = 0.0

    def __init__(self, task, m: int = 8, sigma_y: float = 0.25):
        name, D, mu = self.name, task.dim, task.mixture.means
        if not (_is_int(m) and 1 <= m <= D - 1):
            raise ValueError(f"objective {name!r}: m must be an integer in [1, {D - 1}] (H must not see "
                             f"mu_0 - mu_{task.K - 1}), got {m!r}")
        params = {"m": m, "sigma_y": sigma_y}
        sigma_y = _positive(name, "sigma_y", sigma_y)
        d = _unit(mu[0] - mu[-1])
        G = torch.randn(D, m, generator=task.generator("objective", name, "H"), dtype=torch.float64)
        Q, _ = torch.linalg.qr(G - torch.outer(d, d @ G))
        H = Q.T                                                                      # [m, D], H d = 0
        x_star = mu[0]
        noise = torch.randn(m, generator=task.generator("objective", name, "noise"), dtype=torch.float64)
        y = H @ x_star + sigma_y * noise
        H32, y32 = H.float(), y.float()
        target = task.mixture.condition(H32.double(), y32.double(), sigma_y)   # the float32 H, y the reward uses
        super().__init__(task, target, d, params)
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

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        """m an integer >= 1 (and < D, checked when built), sigma_y > 0."""
        if not (_is_int(params["m"]) and params["m"] >= 1):
            raise ValueError(f"objective {cls.name!r}: m must be an integer >= 1, got {params['m']!r}")
        _positive(cls.name, "sigma_y", params["sigma_y"])


class MixtureTilt(MixtureObjective):
    """r(x) = lam theta^T x for x: [B, D] -> [B]; theta [D] the unit vector from the heaviest mode to the lightest."""

    name = "tilt"
    optimum = None

    def __init__(self, task, lam: float = 0.5):
        mu = task.mixture.means
        params = {"lam": lam}
        lam = _positive(self.name, "lam", lam)
        theta32 = _unit(mu[-1] - mu[0]).float()
        target = task.mixture.tilt(lam * theta32.double())
        super().__init__(task, target, theta32.double(), params)
        self.lam = lam
        self.register_buffer("theta", theta32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * (x @ self.theta)

    def params(self) -> dict:
        return {"lam": self.lam}

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        _positive(cls.name, "lam", params["lam"])


class MixtureBetween(MatrixMeasurement, MixtureObjective):
    """r(x) = -||x - b||^2 / (2 scale^2) for x: [B, D] -> [B]; b = (mu_0 + mu_1) / 2, between the two heaviest
    modes. As a linear measurement: H = I, y = b, sigma_y = scale."""

    name = "between"
    optimum = 0.0

    def __init__(self, task, scale: float = 1.0):
        data, mu = task.mixture, task.mixture.means
        params = {"scale": scale}
        scale = _positive(self.name, "scale", scale)
        b32 = ((mu[0] + mu[1]) / 2).float()
        eye = torch.eye(data.dim, dtype=torch.float64)
        target = data.condition(eye, b32.double(), scale)
        super().__init__(task, target, _unit(mu[0] - mu[1]), params)
        self.scale = self.sigma_y = scale
        self.register_buffer("b", b32)
        self.register_buffer("H", torch.eye(data.dim))
        self.register_buffer("y", b32.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x - self.b) ** 2).sum(-1) / (2 * self.scale ** 2)

    def params(self) -> dict:
        return {"scale": self.scale}

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        _positive(cls.name, "scale", params["scale"])
