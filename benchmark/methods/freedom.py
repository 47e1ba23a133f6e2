"""FreeDoM: training-free energy-guided sampling (Yu et al. 2023), with time travel.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, graph kept)
    g_t     = grad_{x_t} r(x0h(x_t))                          (one VJP; energy E = -r)
    x_{t-1} = DDIM(x0h, e) + rho_t g_t,    rho_t = strength * sqrt(ab_t),   only while t > stop_t
    (t <= stop_t: x_{t-1} = DDIM(x0h, e), 1U)

Time travel (their "efficient time-travel strategy", from RePaint): while
travel_end <= t <= travel_start the step is made `recurrence` times, each repeat re-noising the
result back to t first, x_t <- sqrt(a_t) x_{t-1} + sqrt(1 - a_t) z, and redoing the step.
travel_start = 0 (the default) never travels, whatever `recurrence` is (every grid step has t >= 1).

Cost per step with r repeats: r (1U + 1U_b + 1 objective evaluation + 1 objective gradient)
while guiding, r U after stop_t.

Reference: J. Yu, Y. Wang, C. Zhao, B. Ghanem, J. Zhang. FreeDoM: Training-Free Energy-Guided
Conditional Diffusion Model. ICCV 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.methods.base import GuidanceMethod, reward_grad_through_denoiser


@dataclass
class FreeDoM(GuidanceMethod):
    name = "freedom"

    stop_t: int = 0
    recurrence: int = 1
    travel_start: int = 0
    travel_end: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.recurrence < 1:
            raise ValueError(f"method {self.name!r}: recurrence must be >= 1 (1 = no time travel), "
                             f"got {self.recurrence}")
        for name in ("stop_t", "travel_start", "travel_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"method {self.name!r}: {name} must be >= 0, got {getattr(self, name)}")
        if self.travel_end > self.travel_start:
            raise ValueError(f"method {self.name!r}: travel_end must be <= travel_start (the window is "
                             f"travel_end <= t <= travel_start), got {self.travel_end} > {self.travel_start}")

    def repeats(self, t: int) -> int:
        """How many times the step at timestep t is made (1 outside the time-travel window)."""
        return self.recurrence if self.travel_end <= t <= self.travel_start else 1

    def step(self, x_t, step, sampler, guide, noise):
        for i in range(self.repeats(step.t)):
            if i > 0:
                x_t = sampler.renoise(x_prev, step, noise)
            x_prev = self._guided_step(x_t, step, sampler, guide, noise)
        return x_prev

    def _guided_step(self, x_t, step, sampler, guide, noise):
        if step.t <= self.stop_t:
            return super().step(x_t, step, sampler, guide, noise)            # unguided DDIM, 1U
        e, x0h, _, g_t = reward_grad_through_denoiser(x_t, step, sampler, guide.objective)
        rho_t = self.strength * step.alpha                                   # strength * sqrt(ab_t)
        return sampler.ddim(x0h, e, step, noise) + rho_t * g_t
