"""benchmark/objectives/linear.py: r(x) = theta^T x (unbounded in R^D) and the sphere task's objective, theta a
unit vector drawn from the task seed with optimum 1 on the unit sphere."""

import pytest
import torch

from benchmark.objectives.linear import Linear, SphereLinear
from benchmark.tasks import make_task


def test_linear_value_and_gradient_are_theta():
    g = torch.Generator().manual_seed(0)
    theta, x = torch.randn(4, generator=g), torch.randn(3, 4, generator=g, requires_grad=True)
    objective = Linear("lin", theta, optimum_on_support=2.5)
    r = objective(x)
    assert r.shape == (3,) and torch.allclose(r, x.detach() @ theta)
    (grad,) = torch.autograd.grad(r.sum(), x)
    assert torch.equal(grad, theta.expand(3, -1))
    assert objective.optimum is None and objective.optimum_on_support == 2.5


def test_sphere_linear_is_a_seeded_unit_direction_with_optimum_one():
    task = make_task("sphere")
    objective = SphereLinear(task)
    assert objective.name == "linear" and objective.tasks == ("sphere",)
    assert float(objective.theta.norm()) == pytest.approx(1.0, abs=1e-6)
    assert objective.optimum is None and objective.optimum_on_support == 1.0
    # reached at x = theta on the unit sphere
    assert float(objective(objective.theta[None])) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(SphereLinear(make_task("sphere")).theta, objective.theta)          # same seed, same theta
    assert not torch.equal(SphereLinear(make_task("sphere", task_seed=1)).theta, objective.theta)
