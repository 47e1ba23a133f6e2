"""benchmark/objectives/negnorm.py: r(x) = top - scale |x - b|, its value and gradient per sample, and its optima:
`top` at x = b and, on the support span(A) (A with orthonormal columns), top - scale |b - A A^T b| at the closest
support point A A^T b."""

import pytest
import torch

from benchmark.objectives.negnorm import NegNorm
from tests.objectives.test_quadratic import _support_points


def test_negnorm_value_and_gradient_are_the_closed_form():
    """r = top - scale |x_i - b| per row (not over the batch), grad_x r = -scale (x_i - b) / |x_i - b|."""
    g = torch.Generator().manual_seed(0)
    b, x = torch.randn(6, generator=g), torch.randn(3, 6, generator=g, requires_grad=True)
    objective = NegNorm("n", b, top=5.0, scale=0.5)
    r = objective(x)
    d = x.detach() - b
    dist = d.norm(dim=-1)
    assert r.shape == (3,) and torch.allclose(r, 5.0 - 0.5 * dist)
    assert torch.allclose(objective(x[:1]), r[:1])                         # a row's reward ignores the others
    (grad,) = torch.autograd.grad(r.sum(), x)
    assert torch.allclose(grad, -0.5 * d / dist[:, None], atol=1e-6)
    assert objective.optimum == 5.0 and objective.optimum_on_support is None


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
