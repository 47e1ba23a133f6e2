"""The subspace task's objectives (Guo et al. 2024, Sec. 6.1; benchmark.tasks.subspace), each built from the task:
data x = A u on span(A), A [D, d] with orthonormal columns, drawn from the task seed like everything here.

- quadratic_on: r(x) = 10 - (theta^T x - 3)^2, theta = A beta, beta a unit vector in R^d (on the subspace);
- quadratic_off: the same with theta mostly off it, ||theta_perp|| / ||theta_par|| = task.off_ratio (9);
- negnorm_ones, negnorm_random: r(x) = 5 - ||x - b|| / 2, b = 4 * 1 or b ~ N(4 * 1, 9 I);
- gaussian_inverse (m = 8, sigma_y = 0.25): the linear-Gaussian observation whose posterior is known in closed
  form (benchmark.objectives.gaussian_inverse).
"""

from __future__ import annotations

import inspect
import math

import torch

from benchmark.diffusion.noise import derive_seed
from benchmark.objectives.gaussian_inverse import GaussianInverse
from benchmark.objectives.negnorm import NegNorm
from benchmark.objectives.quadratic import Quadratic


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class QuadraticOn(Quadratic):
    """theta = A beta, beta a unit vector drawn from the task seed: the hyperplane's optimum is on the support."""

    name = "quadratic_on"
    tasks = ("subspace",)

    def __init__(self, task):
        g = task.generator("objective", self.name)
        super().__init__(self.name, task.A @ _unit(torch.randn(task.d, generator=g)), task.A)


class QuadraticOff(Quadratic):
    """theta = unit(A beta + off_ratio * perp), perp a unit vector orthogonal to span(A): mostly off the support."""

    name = "quadratic_off"
    tasks = ("subspace",)

    def __init__(self, task):
        g = task.generator("objective", self.name)
        par = task.A @ _unit(torch.randn(task.d, generator=g))
        perp = torch.randn(task.dim, generator=g)
        perp = _unit(perp - task.project(perp[None])[0])
        super().__init__(self.name, _unit(par + task.off_ratio * perp), task.A)


class NegNormOnes(NegNorm):
    """b = 4 * 1 (off the support)."""

    name = "negnorm_ones"
    tasks = ("subspace",)

    def __init__(self, task):
        super().__init__(self.name, 4.0 * torch.ones(task.dim), task.A)


class NegNormRandom(NegNorm):
    """b ~ N(4 * 1, 9 I), drawn from the task seed."""

    name = "negnorm_random"
    tasks = ("subspace",)

    def __init__(self, task):
        g = task.generator("objective", self.name)
        super().__init__(self.name, 4.0 + 3.0 * torch.randn(task.dim, generator=g), task.A)


class SubspaceGaussianInverse(GaussianInverse):
    """H: m rows of i.i.d. N(0, 1/D) entries; x* = A u*, u* ~ N(0, I_d); n ~ N(0, I_m). Each from its own stream
    of the task seed, so H and n for m rows are the first m of those for more rows."""

    name = "gaussian_inverse"
    tasks = ("subspace",)

    def __init__(self, task, m: int = 8, sigma_y: float = 0.25):
        name, D = self.name, task.dim
        self._check_m(m, D)
        H = torch.randn(m, D, generator=task.generator("objective", name, "H")) / D ** 0.5
        u_star = torch.randn(task.d, generator=task.generator("objective", name, "x_star"))
        noise = torch.randn(D, generator=task.generator("objective", name, "noise"))[:m]
        super().__init__(name, task.A, H, u_star, noise, sigma_y,
                         reference_seed=derive_seed(task.name, task.task_seed, name, m, sigma_y))

    @classmethod
    def _check_m(cls, m, D: int) -> None:
        if not (_is_int(m) and 1 <= m <= D):
            raise ValueError(f"objective {cls.name!r}: m must be an integer in [1, {D}], got {m!r}")

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        """m an integer in [1, D] (D: the task's default dim; a cell's task_params do not reach this check, a built
        task's own D is checked when the objective is built), sigma_y a finite number > 0."""
        cls._check_m(params["m"], inspect.signature(task).parameters["dim"].default)
        sigma_y = params["sigma_y"]
        if not (isinstance(sigma_y, (int, float)) and not isinstance(sigma_y, bool) and math.isfinite(sigma_y)
                and sigma_y > 0):
            raise ValueError(f"objective {cls.name!r}: sigma_y must be a finite number > 0, got {sigma_y!r}")
