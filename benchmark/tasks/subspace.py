"""Guo et al. (2024), Sec. 6.1: data on a linear subspace, x = A u, u ~ N(0, I_d).

D = 64, d = 16, A with orthonormal columns (QR of a Gaussian drawn from the task seed).
Objectives: quadratic with theta = A beta on the subspace or mostly off it
(||theta_perp|| / ||theta_par|| = 9), and negative distances to b = 4 * 1 or b ~ N(4 * 1, 9 I).
Fidelity: the off-support ratio r_off = ||x_perp|| / ||x_par||, x_par = A A^T x.
"""

from __future__ import annotations

import torch

from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.objectives import NegNorm, Quadratic
from benchmark.tasks.base import Task


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


class SubspaceTask(Task):
    name = "subspace"
    objectives = ("quadratic_on", "quadratic_off", "negnorm_ones", "negnorm_random")
    has_oracle = True

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

    def _make_objective(self, name: str):
        g = self.generator("objective", name)
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

    def oracle(self, schedule):
        return SubspaceOracle(self.A, schedule)

    def r_off(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample ||x_perp|| / ||x_par||: [B]."""
        par = self.project(x)
        return torch.linalg.vector_norm(x - par, dim=-1) / torch.linalg.vector_norm(par, dim=-1)

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, float]:
        return {"r_off": float(self.r_off(x).mean())}
