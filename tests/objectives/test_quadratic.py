"""benchmark/objectives/quadratic.py: r(x) = top - (theta^T x - target)^2, its value and gradient, and the optima
the report's gaps are measured against (`optimum`, `optimum_on_support`), checked by evaluating the objective at a
maximiser found by hand and at random points of the support.

Support span(A), A with orthonormal columns: theta^T A u takes every value when A^T theta != 0 (sup = top, at
u = target A^T theta / |A^T theta|^2) and is 0 when theta is orthogonal to span(A) (r = top - target^2 everywhere
on it).
"""

import pytest
import torch

from benchmark.objectives.quadratic import Quadratic


def _support_points(A, n=64, seed=0):
    return torch.randn(n, A.shape[1], generator=torch.Generator().manual_seed(seed)) @ A.T


def test_quadratic_value_and_gradient_are_the_closed_form():
    """r = top - (theta^T x - target)^2 per row, grad_x r = -2 (theta^T x - target) theta (by autograd)."""
    g = torch.Generator().manual_seed(0)
    theta, x = torch.randn(5, generator=g), torch.randn(4, 5, generator=g, requires_grad=True)
    objective = Quadratic("q", theta, target=3.0, top=10.0)
    r = objective(x)
    s = x.detach() @ theta - 3.0
    assert r.shape == (4,) and torch.allclose(r, 10.0 - s ** 2)
    (grad,) = torch.autograd.grad(r.sum(), x)
    assert torch.allclose(grad, -2 * s[:, None] * theta, atol=1e-6)
    # without a support basis only the global optimum is known
    assert objective.optimum == 10.0 and objective.optimum_on_support is None


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
