"""benchmark/images/ops.py: per-sample integer translation of images: where each pixel goes, the fill, one shift
per image, and gradients that flow to the pixels that stay in the image."""

import torch

from benchmark.images.ops import translate


def test_each_image_moves_by_its_own_shift_and_the_vacated_pixels_are_filled():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).view(2, 3, 4, 5)
    shift = torch.tensor([[1, -2], [0, 0]])
    out = translate(x, shift, fill=-7.0)
    assert out.shape == x.shape
    assert torch.equal(out[0, :, 1:, :3], x[0, :, :3, 2:])                 # output (i, j) = input (i - 1, j + 2)
    assert (out[0, :, 0, :] == -7).all() and (out[0, :, :, 3:] == -7).all()
    assert torch.equal(out[1], x[1])                                       # a zero shift is the identity


def test_a_shift_beyond_the_image_leaves_only_the_fill():
    x = torch.rand(1, 1, 4, 4)
    assert (translate(x, torch.tensor([[4, 0]])) == -1).all()              # the default fill: the background -1
    assert torch.equal(translate(x, torch.zeros(1, 2, dtype=torch.long)), x)


def test_translation_is_differentiable_and_its_adjoint_moves_back():
    """<T x, v> = <x, T^T v>: the gradient of sum(T x * v) is v shifted back, zero where pixels left the image."""
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    v = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    (g,) = torch.autograd.grad((translate(x, torch.tensor([[-1, 2]])) * v).sum(), x)
    expected = torch.zeros_like(g)
    expected[..., 1:, :3] = v[..., :4, 2:]                                 # input (i, j) went to (i - 1, j + 2)
    assert torch.equal(g, expected)
