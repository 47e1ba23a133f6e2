"""The images task's objectives beyond the shared ones: inpainting with a mask of any size, super-resolution
by any factor (both the shared Inpaint / SuperRes with their operator), and a user's reward function."""

from __future__ import annotations

import torch

from benchmark.objectives import Inpaint, Objective, SuperRes
from benchmark.objectives.inverse import InverseProblem

MASKS = ("centre", "random")


def check_mask(mask, size) -> None:
    """mask "centre" or "random"; size a number in (0, 1)."""
    if mask not in MASKS:
        raise ValueError(f"objective 'inpaint': unknown mask {mask!r}; allowed: {list(MASKS)}")
    if not (isinstance(size, (int, float)) and not isinstance(size, bool) and 0 < size < 1):
        raise ValueError(f"objective 'inpaint': size must be a number in (0, 1) (the hidden box's side, or the "
                         f"hidden pixels' fraction, relative to the image), got {size!r}")


def inpaint_mask(mask: str, size: float, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """The observed-pixel mask M [C, H, W] of 0/1, one for every image, the same in every channel:
    "centre" hides the centred box of round(size H) x round(size W) pixels (at least 1 x 1); "random"
    hides each pixel independently with probability `size` (drawn from `generator`)."""
    C, H, W = shape
    if mask == "centre":
        h, w = max(1, round(size * H)), max(1, round(size * W))
        top, left = (H - h) // 2, (W - w) // 2
        m = torch.ones(H, W)
        m[top:top + h, left:left + w] = 0
    else:
        m = (torch.rand(H, W, generator=generator) >= size).to(torch.get_default_dtype())
    return m.expand(C, H, W).clone()


class MaskInpaint(Inpaint):
    """Inpaint (A x = M x) with a given mask M [C, H, W]; `mask`, `size` are recorded as its parameters."""

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float, image: int | str,
                 mask: str, size: float, m: torch.Tensor):
        InverseProblem.__init__(self, x_star, noise * m, sigma_y, image, mask=m)
        self.mask_kind, self.size = mask, size

    def params(self) -> dict:
        return super().params() | {"size": self.size}


class FactorSuperRes(SuperRes):
    """SuperRes (A x = average pooling) by `factor` (which must divide H and W)."""

    def __init__(self, x_star: torch.Tensor, noise: torch.Tensor, sigma_y: float, image: int | str, factor: int):
        self.factor = factor  # before InverseProblem applies the operator to x_star
        super().__init__(x_star, noise, sigma_y, image)

    def params(self) -> dict:
        return super().params() | {"factor": self.factor}


def check_factor(factor, shape: tuple[int, ...] | None = None) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"objective 'superres': factor must be an integer >= 1, got {factor!r}")
    if shape is not None and (shape[-2] % factor or shape[-1] % factor):
        raise ValueError(f"objective 'superres': factor {factor} does not divide the image size "
                         f"{shape[-2]}x{shape[-1]}")


def resolve_reward_fn(fn):
    """The callable `fn` ('package.module:function') names; ValueError saying what is wrong."""
    from benchmark.registry import import_path

    if not isinstance(fn, str):
        raise ValueError(f"objective 'reward' needs fn: 'package.module:function', a differentiable function of "
                         f"images [B, C, H, W] in [-1, 1] returning rewards [B]; got {fn!r}")
    f = import_path(fn)
    if not callable(f):
        raise ValueError(f"objective 'reward': {fn!r} is not callable")
    return f


class UserReward(Objective):
    """r(x) = fn(x): a user's differentiable reward, images [B, C, H, W] in [-1, 1] -> [B]; unbounded.

    Every call checks that fn returned one value per image (a tensor of shape [B]); a function that
    does not is refused with a ValueError naming it and the shape it returned."""

    name = "reward"
    optimum = None

    def __init__(self, fn: str):
        super().__init__()
        self.fn_path = fn
        self.fn = resolve_reward_fn(fn)

    def params(self) -> dict:
        return {"fn": self.fn_path}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.fn(x)
        B = x.shape[0]
        if not isinstance(r, torch.Tensor) or r.shape != (B,):
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"objective 'reward': {self.fn_path} must return one reward per image, a tensor of "
                             f"shape [B] = ({B},), got {got} for images of shape {tuple(x.shape)}")
        if torch.is_grad_enabled() and x.requires_grad and not r.requires_grad:
            raise ValueError(f"objective 'reward': {self.fn_path} is not differentiable: its output has no "
                             "gradient with respect to the images (detached, or computed outside autograd)")
        return r
