"""The one sampling loop: DDIM(eta) over a timestep grid, with a guidance hook per step.

DDIM step (Song et al. 2021, eq. 12), eta = 1 is DDPM-like ancestral sampling:
    x0h     = (x_t - sqrt(1 - ab_t) e) / sqrt(ab_t)                       (Tweedie)
    x_{t-1} = sqrt(ab_{t-1}) x0h + sqrt(1 - ab_{t-1} - s_t^2) e + s_t z
    s_t     = eta * sqrt((1 - ab_{t-1}) / (1 - ab_t)) * sqrt(1 - a_t),   a_t = ab_t / ab_{t-1}
Re-noising ("time travel"): x_t = sqrt(a_t) x_{t-1} + sqrt(1 - a_t) z.

x0 clipping (option `clip_x0 = (low, high)`, default off; on for images in TFG's code, `clip_x0`
with `clip_sample_range` 1, and in guided-diffusion's, `clip_denoised`): every DDIM update first
clips the x0h it is given to the data range and recomputes e from it,
    x0c = clamp(x0h, low, high)
    e'  = (x_t - sqrt(ab_t) x0c) / sqrt(1 - ab_t) = e + sqrt(ab_t / (1 - ab_t)) (x0h - x0c)
with x_t = sqrt(ab_t) x0h + sqrt(1 - ab_t) e (the x_t the pair (x0h, e) came from), then
x_{t-1} = DDIM(x0c, e'): TFG's `_predict_x0` + `_predict_x_prev_from_zero`, guided-diffusion's
`p_mean_variance(clip_denoised=True)` + `_predict_eps_from_xstart`, diffusers' DDIMScheduler.step
with clip_sample=True and use_clipped_model_output=True (its default, False, keeps e). It lives here,
not in the methods, so every method is clipped alike.

A guidance method never copies this loop nor the update: it receives the pieces (`Sampler.eps`,
`Sampler.eps_with_graph`, `ddim_update`, `renoise`) and returns x_{t-1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.diffusion.counting import CountingDenoiser
from benchmark.diffusion.noise import PerSampleNoise
from benchmark.diffusion.schedules import VPSchedule, timestep_grid


@dataclass(frozen=True)
class Step:
    """One transition t -> t_prev of the grid; index 0 is the noisiest step."""

    index: int
    num_steps: int
    t: int
    t_prev: int
    ab_t: float
    ab_prev: float
    eta: float

    @property
    def a_t(self) -> float:
        return self.ab_t / self.ab_prev

    @property
    def alpha(self) -> float:
        """Guo et al.'s alpha(t) = sqrt(ab_t)."""
        return math.sqrt(self.ab_t)

    @property
    def h(self) -> float:
        """Guo et al.'s h(t) = 1 - ab_t."""
        return 1.0 - self.ab_t

    @property
    def sigma(self) -> float:
        return self.eta * math.sqrt((1 - self.ab_prev) / (1 - self.ab_t)) * math.sqrt(1 - self.a_t)


def tweedie(x_t: torch.Tensor, e: torch.Tensor, ab_t: float) -> torch.Tensor:
    """x0h = E[x_0 | x_t] = (x_t - sqrt(1 - ab_t) e) / sqrt(ab_t)."""
    return (x_t - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)


def ddim_update(x0h: torch.Tensor, e: torch.Tensor, step: Step, z: torch.Tensor) -> torch.Tensor:
    """x_{t-1} from the (possibly guided) x0h and e; z ~ N(0, I) is used when eta > 0."""
    s = step.sigma
    x_prev = math.sqrt(step.ab_prev) * x0h + math.sqrt(max(1 - step.ab_prev - s * s, 0.0)) * e
    return x_prev + s * z if s > 0 else x_prev


def clip_tweedie(x0h: torch.Tensor, e: torch.Tensor, ab_t: float, low: float,
                 high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0c, e'): x0h clipped to [low, high] and e recomputed from it for the same x_t (module docstring);
    an unclipped entry keeps its e exactly."""
    x0c = x0h.clamp(low, high)
    return x0c, e + math.sqrt(ab_t / (1 - ab_t)) * (x0h - x0c)


def renoise(x_prev: torch.Tensor, step: Step, z: torch.Tensor) -> torch.Tensor:
    """Forward transition x_{t-1} -> x_t (time travel / recurrence)."""
    return math.sqrt(step.a_t) * x_prev + math.sqrt(1 - step.a_t) * z


class Sampler:
    """Owns the counted denoiser, the schedule and the grid; hands methods the pieces of a step.

    clip_x0: None (default), or the data range (low, high) every DDIM update clips x0h to (module docstring).
    """

    def __init__(self, denoiser: CountingDenoiser, schedule: VPSchedule, steps: int | None = None,
                 eta: float = 1.0, clip_x0: tuple[float, float] | None = None):
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if clip_x0 is not None:
            low, high = (float(v) for v in clip_x0)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"clip_x0 must be a data range (low, high) with finite low < high, or None; "
                                 f"got {clip_x0!r}")
            clip_x0 = (low, high)
        self.clip_x0 = clip_x0
        self.denoiser = denoiser
        self.schedule = schedule
        self.eta = float(eta)
        grid = timestep_grid(schedule.T, schedule.T if steps is None else steps)
        ab = schedule.ab.tolist()
        self.steps = [Step(i, len(grid) - 1, t, tp, ab[t], ab[tp], self.eta)
                      for i, (t, tp) in enumerate(zip(grid[:-1], grid[1:]))]

    def eps(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """e = eps_theta(x_t, t), no graph (1 forward)."""
        with torch.no_grad():
            return self.denoiser(x_t, step.t)

    def eps_with_graph(self, x_t: torch.Tensor, step: Step):
        """(x, e, x0h) with x a leaf requiring grad, for one VJP through the denoiser.

        Call inside `torch.enable_grad()`; detach what you keep.
        """
        x = x_t.detach().requires_grad_(True)
        e = self.denoiser(x, step.t)
        return x, e, tweedie(x, e, step.ab_t)

    def clipped(self, x0h: torch.Tensor, e: torch.Tensor, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x0h, e) the DDIM update uses: as given, or clipped to `clip_x0` (`clip_tweedie`)."""
        if self.clip_x0 is None:
            return x0h, e
        return clip_tweedie(x0h, e, step.ab_t, *self.clip_x0)

    def ddim(self, x0h: torch.Tensor, e: torch.Tensor, step: Step, noise: PerSampleNoise) -> torch.Tensor:
        # Always draw, even when eta = 0, so every setting consumes the streams identically.
        return ddim_update(*self.clipped(x0h, e, step), step, noise.draw())

    def renoise(self, x_prev: torch.Tensor, step: Step, noise: PerSampleNoise) -> torch.Tensor:
        return renoise(x_prev, step, noise.draw())


def run_steps(sampler: Sampler, method, x_T: torch.Tensor, noise: PerSampleNoise, guide=None) -> torch.Tensor:
    """The loop: `method.step` makes each transition of the grid (guided or not), x_T -> x_0."""
    x = x_T
    for step in sampler.steps:
        x = method.step(x, step, sampler, guide, noise)
    return x


def sample(sampler: Sampler, method, x_T: torch.Tensor, noise: PerSampleNoise, guide=None) -> torch.Tensor:
    """Run the grid from x_T to x_0 with `method.sample`: `run_steps` for a guidance method, its own
    use of the steps for a method that owns the trajectory (bon, smc)."""
    own = getattr(method, "sample", None)
    x = own(sampler, x_T, noise, guide) if own is not None else run_steps(sampler, method, x_T, noise, guide)
    return x.detach()
