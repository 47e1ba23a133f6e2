"""`mixture`: a Gaussian mixture in R^D whose score, posteriors and tilted targets are exact (issue 25).

Data p0 = sum_k w_k N(mu_k, Sigma_k), D = 16, K = 4, from the task seed: means mu_k = R q_k with q_k
orthonormal (QR of a Gaussian draw), so every two modes lie R sqrt(2) = 5.7 apart (R = 4); Sigma_k =
U_k diag(s_k^2) U_k^T with U_k a random rotation and per-direction standard deviations s log-uniform in
[0.2, 0.4]; unequal weights w_k ∝ K - k (0.4, 0.3, 0.2, 0.1). The modes are well separated: each
midpoint of two means lies outside both components' 99.9 % ellipsoids.

Denoisers: `oracle`, the exact eps of p0 under the VP forward process at every noise level
(benchmark/tasks/mixture/mixture.py: a mixture stays a mixture), and `trained`, a ScoreMLP pre-trained on
`sample_data` like every vector task's (`python -m benchmark pretrain --task mixture`).

Objectives (benchmark/tasks/mixture/objectives.py), each with the exact target p0(x) exp(r(x)) / Z:
- `inverse` (m = 8, sigma_y = 0.25): y = H x* + sigma_y n, H with m orthonormal rows orthogonal to
  mu_0 - mu_{K-1}, so y cannot tell the heaviest mode from the lightest: the observation is chosen at
  x* = mu_0, and the posterior keeps both modes (weights 0.77 and 0.23 on the default task; the lightest
  mode's weight is 0.11-0.37 over task seeds 0-29) while the measurement rules the others out.
  r(x) = -||y - H x||^2 / (2 sigma_y^2).
- `tilt` (lam = 0.5): r(x) = lam theta^T x, theta the unit vector from the heaviest mode to the lightest:
  the tilted target re-weights the modes (default: 0.4, 0.3, 0.2, 0.1 -> 0.10, 0.30, 0.20, 0.41).
- `between` (scale = 1): r(x) = -||x - b||^2 / (2 scale^2), b = (mu_0 + mu_1) / 2 between the two heaviest
  modes and off the data; the target stays on the data (two modes, each pulled towards b).

Metrics (benchmark/tasks/mixture/metrics.py): `off_data` per sample (the share of samples outside every
data component's 99.9 % ellipsoid: the gate's fidelity metric), and against exact draws of the target
sw2 (exact sliced W2), weight_error (total variation of the mode shares), coverage (the target's mass in
the modes visited) and ci90_coverage (the target's probability of the samples' 90 % interval of a linear
functional), each with its value for exact draws of the same n (`<metric>_exact_n`).
"""

from __future__ import annotations

import math

import torch

from benchmark.tasks.base import Task
from benchmark.tasks.mixture.metrics import METRIC_DIRECTIONS, off_data
from benchmark.tasks.mixture.mixture import GaussianMixture, MixtureOracle

#: Per-direction standard deviations of the components: log-uniform in this range.
COMPONENT_SD = (0.2, 0.4)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class MixtureTask(Task):
    name = "mixture"
    has_oracle = True
    #: off_data first: the gate's fidelity metric (the first metric declared "lower" that a panel measures).
    metric_directions = {"off_data": "lower", **METRIC_DIRECTIONS}
    metric_notes = {"off_data": "share of samples outside every data component's 99.9 % ellipsoid"} | dict.fromkeys(
        METRIC_DIRECTIONS, "against exact draws of the target p0(x) exp(r(x)) / Z (SMC's at strength 1): the "
                           "posterior (inverse, between) or the tilted mixture (tilt); _exact_n: the value of n "
                           "exact draws")

    def __init__(self, task_seed: int = 0, dim: int = 16, K: int = 4, radius: float = 4.0):
        super().__init__(task_seed)
        if not (_is_int(dim) and dim >= 2):
            raise ValueError(f"task 'mixture': dim must be an integer >= 2, got {dim!r}")
        if not (_is_int(K) and 2 <= K <= dim):
            raise ValueError(f"task 'mixture': K must be an integer in [2, dim = {dim}], got {K!r}")
        if not (isinstance(radius, (int, float)) and not isinstance(radius, bool) and math.isfinite(radius)
                and radius > 0):
            raise ValueError(f"task 'mixture': radius must be a finite number > 0, got {radius!r}")
        self.dim, self.K, self.radius = dim, K, float(radius)
        self.mixture = self._data()

    def _data(self) -> GaussianMixture:
        """p0 from the task seed (module docstring)."""
        D, K = self.dim, self.K
        q, _ = torch.linalg.qr(torch.randn(D, K, generator=self.generator("means"), dtype=torch.float64))
        means = self.radius * q.T                                                    # [K, D]
        g = self.generator("covs")
        lo, hi = COMPONENT_SD
        covs = []
        for _ in range(K):
            U, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
            sd = lo * (hi / lo) ** torch.rand(D, generator=g, dtype=torch.float64)
            covs.append((U * sd ** 2) @ U.T)
        weights = torch.arange(K, 0, -1, dtype=torch.float64)
        return GaussianMixture(weights / weights.sum(), means, torch.stack(covs))

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.mixture.sample(n, generator)[0].float()

    def oracle(self, schedule):
        return MixtureOracle(self.mixture, schedule)

    # --- metrics ------------------------------------------------------------------------------------

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, float | torch.Tensor]:
        """off_data per sample ([B]), and the objective's target metrics when it has a target (`calibration`)."""
        out: dict[str, float | torch.Tensor] = {"off_data": off_data(self.mixture, x.detach().cpu())}
        calibration = getattr(objective, "calibration", None)
        if calibration is not None:
            out.update(calibration(x))
        return out
