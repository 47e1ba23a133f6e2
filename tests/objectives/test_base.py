"""The optima the report's gaps are measured against (`optimum`, `optimum_on_support`), checked by
evaluating each objective at a maximiser found by hand and at random points of the support.

Support span(A), A with orthonormal columns. Quadratic r = top - (theta^T x - target)^2: on the support
theta^T A u takes every value when A^T theta != 0 (sup = top, at u = target A^T theta / |A^T theta|^2) and
is 0 when theta is orthogonal to span(A) (r = top - target^2 everywhere on it). Negative distance
r = top - scale |x - b|: the closest support point is A A^T b, at distance |b - A A^T b|.
"""

import pytest
import torch

from benchmark.objectives import NegNorm, Quadratic


def _support_points(A, n=64, seed=0):
    return torch.randn(n, A.shape[1], generator=torch.Generator().manual_seed(seed)) @ A.T


@pytest.mark.parametrize("name", ["quadratic_on", "quadratic_off"])
def test_quadratic_optima_of_the_task_are_attained(subspace, name):
    objective = subspace.objective(name)
    A, theta = subspace.A, objective.theta
    u = objective.target * (A.T @ theta) / (A.T @ theta).square().sum()
    best = objective((A @ u)[None])
    assert float(best) == pytest.approx(objective.optimum_on_support, abs=1e-4)
    assert objective.optimum_on_support == objective.optimum == objective.top
    assert (objective(_support_points(A)) <= objective.optimum_on_support + 1e-5).all()


def test_quadratic_orthogonal_to_the_support_is_constant_on_it():
    """theta exactly orthogonal to span(A) (coordinate axes, so that A^T theta is 0 in float32 too)."""
    A = torch.eye(8)[:, :3]
    objective = Quadratic("perp", torch.eye(8)[5], A, target=3.0, top=10.0)
    assert objective.optimum_on_support == pytest.approx(10.0 - 3.0 ** 2)
    assert objective(_support_points(A)) == pytest.approx(torch.full((64,), 1.0))
    assert objective.optimum == 10.0
    tilted = Quadratic("tilted", torch.eye(8)[5] + 0.1 * torch.eye(8)[1], A, target=3.0, top=10.0)
    assert tilted.optimum_on_support == 10.0
    assert float(tilted(torch.tensor([[0.0, 30.0, 0, 0, 0, 0, 0, 0]]))) == pytest.approx(10.0)


@pytest.mark.parametrize("name", ["negnorm_ones", "negnorm_random"])
def test_negnorm_optima_of_the_task_are_attained(subspace, name):
    objective = subspace.objective(name)
    b = objective.b
    closest = subspace.project(b[None])
    assert float(objective(closest)) == pytest.approx(objective.optimum_on_support, abs=1e-4)
    assert objective.optimum_on_support == pytest.approx(
        objective.top - objective.scale * float((b - closest[0]).norm()), abs=1e-4)
    assert (objective(_support_points(subspace.A)) <= objective.optimum_on_support + 1e-5).all()
    assert float(objective(b[None])) == pytest.approx(objective.optimum)


def test_negnorm_on_its_own_support_reaches_the_top():
    A, _ = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))
    b = A @ torch.tensor([1.0, -2.0, 0.5])
    objective = NegNorm("inside", b, A, top=5.0, scale=0.5)
    assert objective.optimum_on_support == pytest.approx(5.0, abs=1e-5)
    assert float(objective(b[None])) == pytest.approx(5.0)
