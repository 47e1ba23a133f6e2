"""Counting wrappers: what a method spent, measured where it is spent, not by formula.

- denoiser forwards: samples passed through eps_theta (batch size per call);
- denoiser VJPs: samples whose gradient flowed back through eps_theta's output;
- objective evaluations / gradients: the same for the objective;
- fine-tuning samples: samples through one training step (forward + backward) of Algorithm 2.

Backward passes are counted by an identity autograd function whose backward increments the
counter, so a gradient that never reaches the network costs nothing, as it should.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Costs:
    denoiser_forwards: int = 0
    denoiser_vjps: int = 0
    objective_evals: int = 0
    objective_grads: int = 0
    finetune_samples: int = 0

    def snapshot(self) -> "Costs":
        return Costs(**{f.name: getattr(self, f.name) for f in fields(self)})

    def __sub__(self, other: "Costs") -> "Costs":
        return Costs(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def add(self, other: "Costs") -> None:
        """Count `other` as spent here too (work measured once and reused, benchmark.optimize's round 0)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _CountBackward(torch.autograd.Function):
    """Identity forward; backward adds the batch size to costs.<field>."""

    @staticmethod
    def forward(ctx, x, costs, field):
        ctx.costs, ctx.field = costs, field
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        setattr(ctx.costs, ctx.field, getattr(ctx.costs, ctx.field) + grad.shape[0])
        return grad, None, None


def _count_backward(x: torch.Tensor, costs: Costs, field: str) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _CountBackward.apply(x, costs, field)
    return x


class CountingDenoiser:
    """eps_theta(x, t) with counted forwards and VJPs; t is one integer timestep for the batch."""

    def __init__(self, model, costs: Costs):
        self.model = model
        self.costs = costs

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.costs.denoiser_forwards += x.shape[0]
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        return _count_backward(self.model(x, tt), self.costs, "denoiser_vjps")


class CountingObjective:
    """A reward r(x) -> [B] with counted evaluations and gradients; exposes the wrapped attributes.

    The objective's `counted_methods` (e.g. a label objective's `noisy_log_prob(x_t, t)`, the
    noise-conditional classifier of classifier guidance) are counted like the reward itself: an
    objective evaluation per sample per call, an objective gradient per sample per backward."""

    def __init__(self, objective, costs: Costs):
        self.objective = objective
        self.costs = costs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.costs.objective_evals += x.shape[0]
        return self.objective(_count_backward(x, self.costs, "objective_grads"))

    def __getattr__(self, name):
        attr = getattr(self.objective, name)
        if name in getattr(self.objective, "counted_methods", ()):
            return self._counted(attr)
        return attr

    def _counted(self, fn):
        def counted(x: torch.Tensor, *args, **kwargs):
            self.costs.objective_evals += x.shape[0]
            return fn(_count_backward(x, self.costs, "objective_grads"), *args, **kwargs)
        return counted
