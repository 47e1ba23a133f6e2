"""benchmark/objectives/superres.py: A x = the 2x2 average pooling, A^T its adjoint (each low-resolution pixel
spread over its block / 4), A^+ = 4 A^T (nearest up-sampling) and (a A A^T + b I)^{-1} = 1 / (a / 4 + b)."""

import torch

from benchmark.objectives.superres import SuperRes


def _objective():
    x_star = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return SuperRes(x_star, torch.zeros(2, 1, 4, 4), 0.05), x_star


def test_measurement_is_the_block_average():
    objective, x_star = _objective()
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 2, 2)                  # [2, 1, 8, 8]
    assert torch.equal(objective.A(x)[0, 0, 0], torch.tensor([2.5, 4.5, 2.5, 4.5]))     # mean of 0, 1, 4, 5 ...
    assert objective.y.shape == (2, 1, 4, 4)
    assert torch.allclose(objective.y, x_star.view(2, 1, 4, 2, 4, 2).mean((3, 5)))
    assert objective.factor == 2 and objective.params() == {"image": "all", "sigma_y": 0.05}


def test_adjoint_pseudo_inverse_and_solve_closed_forms():
    objective, _ = _objective()
    v = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    up = v.repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert torch.equal(objective.A_pinv(v), up)
    assert torch.allclose(objective.AT(v), up / 4)
    assert torch.allclose(objective.A(objective.A_pinv(v)), v)                  # A A^+ = I
    assert torch.allclose(objective.solve(v, 0.8, 0.3), v / (0.8 / 4 + 0.3))
