"""What the `mixture` task measures: samples against an exact target mixture, and against the data.

Every sample is first placed in the data mixture p0 = sum_k w_k N(mu_k, Sigma_k): it is ON the data when it
lies inside the `level` (99.9 %) ellipsoid of some component, (x - mu_k)^T Sigma_k^{-1} (x - mu_k) <=
chi2_D^{-1}(level), and then belongs to its component of highest responsibility (the mode it visits);
otherwise it is OFF the data (e.g. between two modes). The target's component k is data component k
conditioned or tilted (benchmark/tasks/mixture/mixture.py), so its mode is data component k's.

Task metric (every objective, per sample):
- off_data: the share of samples off the data (exact data draws: <= 1 - level = 0.001). Lower is better;
  the gate's fidelity metric.
Against the objective's target q = sum_k w*_k N(m_k, S_k) (an objective with a known target: `TargetMetrics`):
- sw2: sliced W2 between the samples and q, sqrt(mean_l W2^2(c_l^T x, c_l^T X)) over L fixed random unit
  directions c_l, X ~ q. Each 1-D W2 is exact against the projected mixture (no reference sample): with
  the samples' projections sorted v_(1) <= ... <= v_(n) and q_i = F^{-1}(i / n) the target's quantiles,
      W2^2 = sum_i int_{q_{i-1}}^{q_i} (v_(i) - v)^2 dF(v) = sum_i (v_(i)^2 / n - 2 v_(i) M1_i) + E[v^2],
  M1_i = int_{q_{i-1}}^{q_i} v dF(v) the target's partial mean (closed form per component), E[v^2] its second
  moment (the partial second moments sum to it).
- weight_error: total variation between the samples' shares of the modes and the target's weights, the
  samples off the data counted as a bin of their own: (sum_k |n_k / n - w*_k| + n_off / n) / 2, in [0, 1].
- coverage: the target's mass in the modes the samples visit, sum_k w*_k [n_k > 0]. Higher is better; a
  sampler that drops a mode loses its weight.
- ci90_coverage: the target's probability of the samples' central 90 % interval of a linear functional
  f(x) = c^T x (c: the objective's `functional`), F_f(q95) - F_f(q5) with q5, q95 the samples' 5 % and 95 %
  quantiles (linear interpolation); best near 0.9 (< 0.9 too narrow or misplaced, > 0.9 too wide).
and each one's expected value for n exact draws of q, `<metric>_exact_n` (as gaussian_inverse's
`w2_exact_n`): a finite batch scores sw2 > 0 and weight_error > 0 even when every draw is exact, so compare
a method with this floor, not with 0.
"""

from __future__ import annotations

import functools
import math

import torch

from benchmark.diffusion.noise import derive_seed
from benchmark.tasks.mixture.mixture import GaussianMixture, Mixture1D

#: Probability mass of each component's ellipsoid that counts as on the data.
ON_DATA_LEVEL = 0.999
#: Random directions of the sliced W2.
SLICES = 64
#: Batches of exact draws averaged for the `_exact_n` references (fewer when n > 512).
REFERENCE_DRAWS = 128
#: The credible interval's probability.
CI_LEVEL = 0.9

METRIC_DIRECTIONS: dict[str, str | float] = {
    "sw2": "lower", "sw2_exact_n": "lower", "weight_error": "lower", "weight_error_exact_n": "lower",
    "coverage": "higher", "coverage_exact_n": "higher", "ci90_coverage": CI_LEVEL, "ci90_coverage_exact_n": CI_LEVEL}


@functools.lru_cache(maxsize=32)
def on_data_radius2(dim: int, level: float = ON_DATA_LEVEL) -> float:
    """chi2_dim^{-1}(level): the squared Mahalanobis radius of a component's `level` ellipsoid."""
    from scipy.stats import chi2  # imported here: scipy.stats takes a second to import, the registry imports this

    return float(chi2.ppf(level, dim))


def modes(data: GaussianMixture, x: torch.Tensor, level: float = ON_DATA_LEVEL) -> torch.Tensor:
    """The data component each sample visits, -1 for a sample off the data (module docstring): x [..., n, D]
    -> [..., n] (long)."""
    log_joint, maha = data.placement(x.reshape(-1, x.shape[-1]))
    on = (maha <= on_data_radius2(data.dim, level)).any(-1)
    k = log_joint.argmax(-1)
    return torch.where(on, k, -1).reshape(x.shape[:-1])


def off_data(data: GaussianMixture, x: torch.Tensor, level: float = ON_DATA_LEVEL) -> torch.Tensor:
    """1.0 per sample off the data, else 0.0: [n] (float64)."""
    return (modes(data, x, level) < 0).double()


def mode_shares(labels: torch.Tensor, K: int) -> torch.Tensor:
    """[..., K + 1]: the share of samples in each mode, then off the data, for labels [..., n] in -1..K-1."""
    one_hot = torch.nn.functional.one_hot(torch.where(labels < 0, K, labels), K + 1).double()
    return one_hot.mean(-2)


class TargetMetrics:
    """sw2, weight_error, coverage and ci90_coverage of samples against the exact target `target` (a
    GaussianMixture whose component k is data component k's), modes placed in the data mixture `data`;
    `functional` [D] the direction c of the interval's f(x) = c^T x; `seed` fixes the slices and the
    reference draws."""

    def __init__(self, data: GaussianMixture, target: GaussianMixture, functional: torch.Tensor, seed: int,
                 slices: int = SLICES, level: float = ON_DATA_LEVEL):
        if target.K != data.K or target.dim != data.dim:
            raise ValueError(f"the target mixture ({target.K} components in {target.dim} dimensions) must match the "
                             f"data's ({data.K} in {data.dim}) component for component")
        self.data, self.target, self.seed, self.level = data, target, seed, level
        c = torch.as_tensor(functional, dtype=torch.float64)
        self.functional = c / torch.linalg.vector_norm(c)
        g = torch.Generator().manual_seed(derive_seed(seed, "slices"))
        dirs = torch.randn(slices, data.dim, generator=g, dtype=torch.float64)
        self.directions = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)    # [L, D]
        self.sliced: Mixture1D = target.project(self.directions)                      # L laws
        self.marginal: Mixture1D = target.project(self.functional)                    # the law of c^T X
        self._moments: dict[int, torch.Tensor] = {}
        self._reference: dict[int, dict[str, float]] = {}

    # --- the metrics, on a batch [n, D] or on R batches at once [R, n, D] ------------------------------

    def _partial_means(self, n: int) -> torch.Tensor:
        """M1 [L, n]: the target's slices' partial means between their quantiles at i / n (cached per n)."""
        if n not in self._moments:
            L = self.directions.shape[0]
            u = (torch.arange(1, n, dtype=torch.float64) / n).expand(L, n - 1)
            q = self.sliced.quantile(u)
            inf = torch.full((L, 1), math.inf, dtype=torch.float64)
            edges = torch.cat([-inf, q, inf], dim=1)                                   # [L, n + 1]
            self._moments[n] = self.sliced.partial_mean(edges[:, :-1], edges[:, 1:])
        return self._moments[n]

    def sliced_w2(self, x: torch.Tensor) -> torch.Tensor:
        """Exact sliced W2 between the empirical law of x [..., n, D] and the target: [...]."""
        x = x.detach().to("cpu", torch.float64)
        m1 = self._partial_means(x.shape[-2])
        v = torch.sort(x @ self.directions.T, dim=-2).values.transpose(-1, -2)        # [..., L, n]
        w2_sq = (v * v).mean(-1) - 2 * (v * m1).sum(-1) + self.sliced.second_moment()  # [..., L]
        return w2_sq.clamp_min(0).mean(-1).sqrt()

    def weight_error(self, labels: torch.Tensor) -> torch.Tensor:
        """TV between the mode shares of labels [..., n] (from `modes`) and the target's weights: [...]."""
        shares = mode_shares(labels, self.data.K)
        w = torch.cat([self.target.weights, torch.zeros(1, dtype=torch.float64)])
        return 0.5 * (shares - w).abs().sum(-1)

    def coverage(self, labels: torch.Tensor) -> torch.Tensor:
        """The target's weight of the modes visited by labels [..., n]: [...]."""
        visited = mode_shares(labels, self.data.K)[..., :-1] > 0
        return (visited.double() * self.target.weights).sum(-1)

    def ci_coverage(self, x: torch.Tensor, level: float = CI_LEVEL) -> torch.Tensor:
        """The target's probability of the samples' central `level` interval of c^T x: [...] for x [..., n, D]."""
        f = x.detach().to("cpu", torch.float64) @ self.functional                      # [..., n]
        tail = (1 - level) / 2
        q = torch.quantile(f, torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=-1)   # [2, ...]
        return self.marginal.cdf(q[1][..., None])[..., 0] - self.marginal.cdf(q[0][..., None])[..., 0]

    def scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four metrics of x [..., n, D], each [...]."""
        labels = modes(self.data, x.detach().to("cpu", torch.float64), self.level)
        return {"sw2": self.sliced_w2(x), "weight_error": self.weight_error(labels),
                "coverage": self.coverage(labels), "ci90_coverage": self.ci_coverage(x)}

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        """The metrics of samples x [n, D] and their expected values for n exact draws (`<name>_exact_n`)."""
        out = {k: float(v) for k, v in self.scores(x).items()}
        return out | {f"{k}_exact_n": v for k, v in self.reference(x.shape[0]).items()}

    def reference(self, n: int) -> dict[str, float]:
        """Each metric's mean over batches of n exact draws of the target (REFERENCE_DRAWS of them, at least 16
        and at most 2^16 draws in all), from a generator seeded by (seed, n): cached per n."""
        if n < 2:
            raise ValueError(f"the mixture metrics need at least 2 samples, got {n}")
        if n not in self._reference:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "reference", n))
            reps = max(16, min(REFERENCE_DRAWS, 2 ** 16 // n))
            x, _ = self.target.sample(n, g, shape=(reps,))
            self._reference[n] = {k: float(v.mean()) for k, v in self.scores(x).items()}
        return self._reference[n]
