"""The one shape of a guidance method: typed hyper-parameters and a guided step of the shared loop.

A method is a dataclass whose fields are its hyper-parameters (one of them `strength`; a field
typed `Literal[...]` is checked against its choices); the
sampler calls `step(x_t, step, sampler, guide, noise) -> x_{t-1}`. The default step is the
plain DDIM update from a (possibly guided) noise prediction returned by `guided_eps`, so a
method that modifies the score only overrides `guided_eps` (e' = e - sqrt(1 - ab_t) * G).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from benchmark.diffusion.sampler import Sampler, Step, tweedie


@dataclass(frozen=True)
class LinearTarget:
    """Guo et al.'s linear model of the objective around the previous sample z (one per chain):
    g = grad r(z): [B, D], y = g^T z + delta: [B]."""

    g: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Guide:
    """What a method may use to guide.

    objective: the counted reward r(x) -> [B].
    linear: for Algorithm-1 methods, the per-chain linear target of the current round.
    augment: the task's augmentation family for Shen et al.'s random augmentation,
        augment(x [B, *shape], z [B, *shape]) -> T(x), differentiable in x; z ~ N(0, I) per
        sample (drawn from the chain's own noise stream, so augmentations are per sample).
    noisy_log_prob: for classifier guidance, log p(y | x_t, t) -> [B] of a classifier trained on
        noisy inputs (x_t [B, *shape], t int), counted like the objective; None if the
        objective has none.
    """

    objective: object
    linear: LinearTarget | None = None
    augment: object | None = None
    noisy_log_prob: object | None = None


@dataclass
class GuidanceMethod:
    name: ClassVar[str] = ""
    #: True for Guo et al.'s methods, which guide towards the linear target of Algorithm 1.
    uses_linear_target: ClassVar[bool] = False

    strength: float = 0.0

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
                raise ValueError(f"method {self.name!r}: {f.name} must be finite, got {value}")
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
            if choices and value not in choices:
                raise ValueError(f"method {self.name!r}: {f.name} must be one of {list(choices)}, got {value!r}")
        if self.strength < 0:
            raise ValueError(f"method {self.name!r}: strength must be >= 0, got {self.strength}")

    def params(self) -> dict:
        return dataclasses.asdict(self)

    def step(self, x_t: torch.Tensor, step: Step, sampler: Sampler, guide: Guide | None, noise) -> torch.Tensor:
        e = self.guided_eps(x_t, step, sampler, guide)
        return sampler.ddim(tweedie(x_t, e, step.ab_t), e, step, noise)

    def guided_eps(self, x_t: torch.Tensor, step: Step, sampler: Sampler, guide: Guide | None) -> torch.Tensor:
        return sampler.eps(x_t, step)


def reward_grad_through_denoiser(x_t, step, sampler, objective):
    """One forward and one VJP through the denoiser: (e, x0h, r(x0h), g_t = grad_{x_t} r(x0h)).

    x_t: [B, D] -> e, x0h, g_t: [B, D], r: [B]; all detached.
    """
    with torch.enable_grad():
        x, e, x0h = sampler.eps_with_graph(x_t, step)
        r = objective(x0h)                                                   # [B]
        (g_t,) = torch.autograd.grad(r.sum(), x)                             # one VJP
    return e.detach(), x0h.detach(), r.detach(), g_t


def per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample factor c: [B] shaped to broadcast against like: [B, ...]."""
    return c.view(-1, *(1,) * (like.dim() - 1))
