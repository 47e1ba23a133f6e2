"""benchmark/objectives/deblur.py: the separable, normalised, reflection-padded Gaussian blur, its parameter checks,
and its closed forms by the SVD of each axis's blur matrix (A^+ cutting the singular values below PINV_RCOND)."""

import pytest
import torch

from benchmark.objectives.deblur import Deblur, blur_matrix, check_blur, default_kernel_size, gaussian_kernel_1d
from benchmark.objectives.operator import PINV_RCOND
from tests.objectives.test_operator import _build, _largest_singular_value, _norm, _pair, images_task  # noqa: F401


def test_kernel_is_a_normalised_symmetric_gaussian():
    assert default_kernel_size(1.0) == 7 and default_kernel_size(3.0) == 19 and default_kernel_size(0.4) == 5
    k = gaussian_kernel_1d(1.0, 7)
    assert k.shape == (7,) and float(k.sum()) == pytest.approx(1.0) and torch.equal(k, k.flip(0))
    assert float(k[4] / k[3]) == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), rel=1e-6)


def test_blur_is_the_separable_matrix_product_and_keeps_constants():
    """Per channel A X = K_H X K_W^T, K the reflection-padded 1-D blur matrix; a constant image stays constant."""
    g = torch.Generator().manual_seed(0)
    x_star = torch.randn(2, 2, 8, 6, generator=g)
    objective = Deblur(x_star, torch.zeros_like(x_star), 0.05, "all", blur_sigma=1.0, kernel_size=5)
    K_H, K_W = blur_matrix(8, objective.kernel).float(), blur_matrix(6, objective.kernel).float()
    assert torch.allclose(objective.A(x_star), K_H @ x_star @ K_W.T, atol=1e-5)
    assert torch.allclose(K_H.sum(1), torch.ones(8, dtype=torch.float32), atol=1e-6)
    assert torch.allclose(objective.A(torch.full((1, 2, 8, 6), 0.3)), torch.full((1, 2, 8, 6), 0.3), atol=1e-6)
    assert objective.params() == {"image": "all", "sigma_y": 0.05, "blur_sigma": 1.0, "kernel_size": 5}


def test_blur_parameters_are_checked():
    check_blur(3.0, None)
    for args, message in (((0, None), "blur_sigma must be a finite number > 0, got 0"),
                          ((float("nan"), None), "blur_sigma must be a finite number > 0, got nan"),
                          ((1.0, 4), "kernel_size must be None or an odd integer >= 1, got 4"),
                          ((1.0, True), "kernel_size must be None or an odd integer >= 1, got True"),
                          ((1.0, 17, (1, 8, 8)), r"kernel_size 17 is too large for 8x8 images \(reflection padding "
                                                 r"needs kernel_size // 2 < 8\)")):
        with pytest.raises(ValueError, match=r"objective 'deblur': " + message):
            check_blur(*args)
    with pytest.raises(ValueError, match="kernel_size 19 is too large for 8x8 images"):      # the default at sigma 3
        Deblur(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_deblur_pinv_cuts_the_smallest_singular_values(images_task):
    """The images deblur (sigma 3 px on 16 px) has singular values far below the cut-off: without it A^+ would
    amplify by > 1e3; with it ||A^+ v|| <= ||v|| / (PINV_RCOND s_max)."""
    objective = _build("images_deblur", images_task)
    _, v = _pair(objective)
    s_max = _largest_singular_value(objective)
    assert torch.all(_norm(objective.A_pinv(v)) <= _norm(v) / (PINV_RCOND * s_max) * (1 + 1e-4))
    *_, S = objective._svd()
    assert float(S.min()) < PINV_RCOND * float(S.max())                    # the cut-off is in use here
