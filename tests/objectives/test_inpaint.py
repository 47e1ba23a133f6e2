"""benchmark/objectives/inpaint.py: A x = M * x, M the observed-pixel mask ("centre": the central 4x4 of 8x8
hidden; "lower_half": rows 4..7 hidden), noise on observed pixels only, and the closed forms A^T = A^+ = M and
(a M + b I)^{-1}."""

import pytest
import torch

from benchmark.objectives.inpaint import MASKS, Inpaint, inpaint_mask


def test_masks_hide_the_centre_square_or_the_lower_half():
    centre, lower = inpaint_mask("centre", (1, 8, 8)), inpaint_mask("lower_half", (1, 8, 8))
    hidden = torch.zeros(8, 8)
    hidden[2:6, 2:6] = 1
    assert torch.equal(centre[0], 1 - hidden) and int(centre.sum()) == 64 - 16
    assert torch.equal(lower[0, :4], torch.ones(4, 8)) and torch.equal(lower[0, 4:], torch.zeros(4, 8))
    assert inpaint_mask("centre", (3, 8, 8)).shape == (3, 8, 8)
    with pytest.raises(ValueError,
                       match=r"objective 'inpaint': unknown mask 'top'; allowed: \['centre', 'lower_half'\]"):
        inpaint_mask("top", (1, 8, 8))
    assert MASKS == ("centre", "lower_half")


def test_observation_noise_falls_on_observed_pixels_only():
    g = torch.Generator().manual_seed(0)
    x_star, noise = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    objective = Inpaint(x_star, noise, 0.1, "all", "lower_half")
    assert torch.equal(objective.y[:, :, 4:], torch.zeros(2, 1, 4, 8))
    assert torch.allclose(objective.y[:, :, :4], x_star[:, :, :4] + 0.1 * noise[:, :, :4])
    # the reward ignores the hidden pixels: x* with anything in the lower half scores like x*
    x = x_star.clone()
    x[:, :, 4:] = 7.0
    assert torch.allclose(objective(x), objective(x_star))
    assert objective.params() == {"image": "all", "sigma_y": 0.1, "mask": "lower_half"}


def test_closed_forms_of_the_mask():
    g = torch.Generator().manual_seed(1)
    objective = Inpaint(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), 0.05)
    v = torch.randn(2, 1, 8, 8, generator=g)
    M = objective.mask
    assert torch.equal(objective.AT(v), M * v) and torch.equal(objective.A_pinv(v), M * v)
    u = objective.solve(v, 0.7, 0.2)
    assert torch.allclose(0.7 * M * u + 0.2 * u, v, atol=1e-6)
