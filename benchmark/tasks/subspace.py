"""Guo et al. (2024), Sec. 6.1: data on a linear subspace, x = A u, u ~ N(0, I_d).

D = 64, d = 16, A with orthonormal columns (QR of a Gaussian drawn from the task seed).
Objectives (benchmark/objectives/subspace.py): quadratic with theta = A beta on the subspace or mostly off it
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

import torch

from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.objectives.gaussian_inverse import GaussianInverse
from benchmark.tasks.base import Task


class SubspaceTask(Task):
    name = "subspace"
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
