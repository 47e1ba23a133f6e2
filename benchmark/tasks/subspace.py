"""Guo et al. (2024), Sec. 6.1: data on a linear subspace, x = A u, u ~ N(0, I_d).

D = 64, d = 16, A with orthonormal columns (QR of a Gaussian drawn from the task seed).
Objectives: quadratic with theta = A beta on the subspace or mostly off it
(||theta_perp|| / ||theta_par|| = 9), and negative distances to b = 4 * 1 or b ~ N(4 * 1, 9 I).
Fidelity: the off-support ratio r_off = ||x_perp|| / ||x_par||, x_par = A A^T x.

`gaussian_inverse` (parameters m = 8, sigma_y = 0.25): the log-likelihood of a linear-Gaussian
observation y = H x* + sigma_y n, whose posterior N(mu, Sigma) is known in closed form (see
benchmark/objectives/gaussian_inverse.py); its cells are also measured for calibration against it:
w2, mean_error, var_ratio, and the floors of w2 and mean_error at the batch size (w2_exact_n,
mean_error_exact_n). With the oracle the same five are also measured against the posterior under the
unguided sampler's own output law N(0, c A A^T) on the cell's grid (c = 0.914 at 50 of 200 steps, eta = 1):
w2_sampler, mean_error_sampler, var_ratio_sampler, w2_sampler_exact_n, mean_error_sampler_exact_n.
"""

from __future__ import annotations

import math

import torch

from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.diffusion.noise import derive_seed
from benchmark.objectives import GaussianInverse, NegNorm, Quadratic
from benchmark.tasks.base import Task


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


class SubspaceTask(Task):
    name = "subspace"
    objectives = ("quadratic_on", "quadratic_off", "negnorm_ones", "negnorm_random", "gaussian_inverse")
    objective_params = {"gaussian_inverse": {"m": 8, "sigma_y": 0.25}}
    has_oracle = True
    #: r_off, then gaussian_inverse's calibration metrics (GaussianInverse.metric_directions).
    metric_directions = {"r_off": "lower", **GaussianInverse.metric_directions}
    #: What the calibration metrics are measured against (data posterior or sampler posterior), for the report.
    metric_notes = dict(GaussianInverse.metric_notes)

    def __init__(self, task_seed: int = 0, dim: int = 64, d: int = 16, off_ratio: float = 9.0):
        super().__init__(task_seed)
        self.dim, self.d, self.off_ratio = dim, d, off_ratio
        q, _ = torch.linalg.qr(torch.randn(dim, d, generator=self.generator("A"), dtype=torch.float64))
        self.A = q.float()  # [D, d], A^T A = I_d

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x_par = A A^T x for x: [B, D] (on x's device)."""
        A = self.A.to(x.device, x.dtype)
        return (x @ A) @ A.T

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.d, generator=generator) @ self.A.T

    def _make_objective(self, name: str, **params):
        g = self.generator("objective", name)
        if name == "gaussian_inverse":
            return self._gaussian_inverse(name, **(self.objective_params[name] | params))
        if name == "quadratic_on":
            theta = self.A @ _unit(torch.randn(self.d, generator=g))
            return Quadratic(name, theta, self.A)
        if name == "quadratic_off":
            par = self.A @ _unit(torch.randn(self.d, generator=g))
            perp = torch.randn(self.dim, generator=g)
            perp = _unit(perp - self.project(perp[None])[0])
            return Quadratic(name, _unit(par + self.off_ratio * perp), self.A)
        if name == "negnorm_ones":
            return NegNorm(name, 4.0 * torch.ones(self.dim), self.A)
        return NegNorm(name, 4.0 + 3.0 * torch.randn(self.dim, generator=g), self.A)  # negnorm_random

    @classmethod
    def check_objective_params(cls, name: str, params: dict, task_seed: int = 0) -> None:
        """gaussian_inverse: m an integer in [1, D], sigma_y a finite number > 0 (before any job runs)."""
        if name != "gaussian_inverse":
            return
        p = cls.objective_params[name] | params
        dim = 64   # the task's default D, as the sweep builds it
        m, sigma_y = p["m"], p["sigma_y"]
        if not (isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= dim):
            raise ValueError(f"objective {name!r}: m must be an integer in [1, {dim}], got {m!r}")
        if not (isinstance(sigma_y, (int, float)) and not isinstance(sigma_y, bool) and math.isfinite(sigma_y)
                and sigma_y > 0):
            raise ValueError(f"objective {name!r}: sigma_y must be a finite number > 0, got {sigma_y!r}")

    def _gaussian_inverse(self, name: str, m: int, sigma_y: float) -> GaussianInverse:
        """H: m rows of i.i.d. N(0, 1/D) entries; x* = A u*, u* ~ N(0, I_d); n ~ N(0, I_m). Each from its
        own stream of the task seed, so H and n for m rows are the first m of those for more rows."""
        if not (isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= self.dim):
            raise ValueError(f"objective {name!r}: m must be an integer in [1, {self.dim}], got {m!r}")
        H = torch.randn(m, self.dim, generator=self.generator("objective", name, "H")) / self.dim ** 0.5
        u_star = torch.randn(self.d, generator=self.generator("objective", name, "x_star"))
        noise = torch.randn(self.dim, generator=self.generator("objective", name, "noise"))[:m]
        return GaussianInverse(name, self.A, H, u_star, noise, sigma_y,
                               reference_seed=derive_seed(self.name, self.task_seed, name, m, sigma_y))

    def oracle(self, schedule):
        return SubspaceOracle(self.A, schedule)

    def r_off(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample ||x_perp|| / ||x_par||: [B]."""
        par = self.project(x)
        return torch.linalg.vector_norm(x - par, dim=-1) / torch.linalg.vector_norm(par, dim=-1)

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, float | torch.Tensor]:
        out = {"r_off": self.r_off(x)}  # per sample: [B]
        calibration = getattr(objective, "calibration", None)  # objectives whose posterior is known
        if calibration is not None:
            out.update(calibration(x))
        return out
