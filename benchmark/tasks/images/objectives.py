"""The images task's objectives (benchmark.tasks.images), each built from the task: inpainting with a mask of any
size, super-resolution by any factor (the shared Inpaint / SuperRes with their operator), Gaussian deblurring
(benchmark.objectives.deblur), and a user's reward function.
And `reward_model`: a learned reward model (benchmark.rewards) from local weights.

The inverse problems' ground truths are the folder's images (`image`: all of them, chain i restoring image
i mod N, or image k); each image's measurement noise is one fixed draw from the task seed, whichever images a
cell restores. Parameter checks that need no images come first (`check_params`, also before any job runs);
those against the image count and shape when the objective is built.
"""

from __future__ import annotations

import torch

from benchmark.objectives.base import Objective
from benchmark.objectives.deblur import Deblur, check_blur
from benchmark.objectives.inpaint import Inpaint
from benchmark.objectives.inverse import InverseProblem
from benchmark.objectives.superres import SuperRes

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


def check_inverse(name: str, params: dict) -> None:
    """sigma_y a finite number >= 0; image 'all' or an index >= 0 (its range is checked when built)."""
    InverseProblem.check_sigma_y(name, params["sigma_y"])
    image = params["image"]
    if image != "all" and (isinstance(image, bool) or not isinstance(image, int) or image < 0):
        raise ValueError(f"objective {name!r}: image must be 'all' or the index (>= 0) of a folder image, "
                         f"got {image!r}")


def ground_truths(task, name: str, image: int | str) -> tuple[torch.Tensor, slice]:
    """(the folder's images [N, C, H, W], which of them the chains restore); ValueError for an image out of range."""
    x_all = task.ground_truths()
    if image != "all" and image >= len(x_all):
        raise ValueError(f"objective {name!r}: image {image} is out of range: the folder holds {len(x_all)} "
                         f"images (0..{len(x_all) - 1})")
    return x_all, slice(None) if image == "all" else slice(image, image + 1)


def observation_noise(task, name: str, shape: tuple[int, ...], pick: slice) -> torch.Tensor:
    """The picked images' measurement noise: one fixed draw of `shape` [N, *m] for every folder image."""
    return torch.randn(shape, generator=task.generator("observation", name))[pick]


class MaskInpaint(Inpaint):
    """Inpaint (A x = M x) with the mask M [C, H, W] of `inpaint_mask`; `mask`, `size` are its parameters."""

    tasks = ("images",)

    def __init__(self, task, image: int | str = "all", sigma_y: float = 0.05, mask: str = "centre", size: float = 0.5):
        self.check_params({"image": image, "sigma_y": sigma_y, "mask": mask, "size": size}, type(task))
        x_all, pick = ground_truths(task, self.name, image)
        noise = observation_noise(task, self.name, x_all.shape, pick)
        m = inpaint_mask(mask, size, task.shape, task.generator("inpaint-mask"))
        InverseProblem.__init__(self, x_all[pick], noise * m, sigma_y, image, mask=m)
        self.mask_kind, self.size = mask, size

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        check_inverse(cls.name, params)
        check_mask(params["mask"], params["size"])

    def params(self) -> dict:
        return super().params() | {"size": self.size}


class FactorSuperRes(SuperRes):
    """SuperRes (A x = average pooling) by `factor` (which must divide H and W)."""

    tasks = ("images",)

    def __init__(self, task, image: int | str = "all", sigma_y: float = 0.05, factor: int = 4):
        self.check_params({"image": image, "sigma_y": sigma_y, "factor": factor}, type(task))
        x_all, pick = ground_truths(task, self.name, image)
        check_factor(factor, task.shape)
        C, H, W = task.shape
        noise = observation_noise(task, self.name, (len(x_all), C, H // factor, W // factor), pick)
        self.factor = factor  # before InverseProblem applies the operator to x_star
        super().__init__(x_all[pick], noise, sigma_y, image)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        check_inverse(cls.name, params)
        check_factor(params["factor"])

    def params(self) -> dict:
        return super().params() | {"factor": self.factor}


class ImagesDeblur(Deblur):
    """Deblur (A x = a Gaussian blur of `blur_sigma` pixels, kernel `kernel_size`) of the folder's images."""

    tasks = ("images",)

    def __init__(self, task, image: int | str = "all", sigma_y: float = 0.05, blur_sigma: float = 3.0,
                 kernel_size: int | None = None):
        self.check_params({"image": image, "sigma_y": sigma_y, "blur_sigma": blur_sigma, "kernel_size": kernel_size},
                          type(task))
        x_all, pick = ground_truths(task, self.name, image)
        noise = observation_noise(task, self.name, x_all.shape, pick)
        super().__init__(x_all[pick], noise, sigma_y, image, blur_sigma, kernel_size)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        check_inverse(cls.name, params)
        check_blur(params["blur_sigma"], params["kernel_size"])


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
    tasks = ("images",)
    optimum = None

    def __init__(self, task, fn: str | None = None):
        super().__init__()
        self.fn_path = fn
        self.fn = resolve_reward_fn(fn)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        resolve_reward_fn(params["fn"])

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


class RewardModelObjective(Objective):
    """r(x) = R(x): a learned reward model R (benchmark.rewards: a built-in adapter, a plug-in's entry point of
    group `guidebench.rewards` or 'package.module:Class') loaded from local `weights`, images [B, C, H, W] in
    [-1, 1] -> [B]; unbounded. `encoder` (a CLIP folder or file) and `prompt` reach the reward models that take
    them. `sha256`: the reward model's version (benchmark.rewards.RewardModel.version: the sha256 of its weights
    file, or of the lines `<role> <sha256>` of several); None: recorded as loaded; given: the weights must
    match it. So the results (settings_json's objective_params) name the reward model and its version."""

    name = "reward_model"
    tasks = ("images",)
    optimum = None

    def __init__(self, task, model: str | None = None, weights: str | None = None, encoder: str | None = None,
                 prompt: str | None = None, sha256: str | None = None):
        super().__init__()
        self.check_params({"model": model, "weights": weights, "encoder": encoder, "prompt": prompt,
                           "sha256": sha256}, type(task))
        from benchmark.rewards import load_reward

        self.model, self.weights, self.encoder, self.prompt = model, str(weights), encoder, prompt
        self.reward = load_reward(model, weights, encoder=encoder, prompt=prompt)
        if sha256 is not None and sha256 != self.reward.version:
            raise ValueError(f"objective 'reward_model': reward model {model!r} loaded from {str(weights)!r} has "
                             f"version (sha256) {self.reward.version}, not the {sha256} the config pins")
        self.sha256 = self.reward.version

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        from benchmark.rewards import check_reward, reward_names

        if params["model"] is None:
            raise ValueError(f"objective 'reward_model' needs model: one of {reward_names()} or "
                             "'package.module:Class' (benchmark.rewards)")
        sha = params["sha256"]
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                    and all(c in "0123456789abcdef" for c in sha)):
            raise ValueError(f"objective 'reward_model': sha256 must be 64 lower-case hex digits, got {sha!r}")
        check_reward(params["model"], params["weights"], {"encoder": params["encoder"], "prompt": params["prompt"]})

    def params(self) -> dict:
        return {"model": self.model, "weights": self.weights, "encoder": self.encoder, "prompt": self.prompt,
                "sha256": self.sha256}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reward(x)
        B = x.shape[0]
        if not isinstance(r, torch.Tensor) or r.shape != (B,):
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"objective 'reward_model': reward model {self.model!r} must return one reward per "
                             f"image, a tensor of shape [B] = ({B},), got {got} for images of shape {tuple(x.shape)}")
        return r
