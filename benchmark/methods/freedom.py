"""FreeDoM: training-free energy-guided sampling (Yu et al. 2023), with time travel.

    e, x0h  = eps_theta(x_t, t), x0h(x_t)                     (one forward, graph kept)
    g_t     = grad_{x_t} r(x0h(x_t))                          (one VJP; energy E = -r)
    x_{t-1} = DDIM(x0h, e) + rho_t g_t,    rho_t = strength * sqrt(ab_t),   only while t > stop_t
    (t <= stop_t: x_{t-1} = DDIM(x0h, e), 1U)

Time travel (their "efficient time-travel strategy", from RePaint): while
travel_end <= t <= travel_start (travel_start = 0: no upper limit) the step is made `recurrence`
times, each repeat re-noising the result back to t first, x_t <- sqrt(a_t) x_{t-1} + sqrt(1 - a_t) z,
and redoing the step. Shen et al.'s other options (`augment`, `polyak`) apply too (LossGuidance);
with `polyak` the step rho_t is replaced by strength ||e|| / ||g_t||^2.

Cost per step with r repeats: r (1U + 1U_b + |T| objective evaluations + |T| objective gradients)
while guiding (|T| = max(augment, 1)), r U after stop_t.

Strength conventions (tests/test_conventions.py checks each on one oracle step):
- FreeDoM's code (vvictoryuki/FreeDoM, Face-GD/functions/denoising.py, e.g. parse_ddim_diffusion):
  `rho = at.sqrt() * rho_scale; if not i <= stop: xt_next -= rho * norm_grad`, norm_grad = grad_{x_t} E(x0h)
  with the energy E = ||residual|| unsquared. So strength = rho_scale, stop_t = stop, r = -E. Their E is
  the norm of the whole batch tensor, ours per sample (equal for a batch of one). Their ImageNet CLIP
  guidance time-travels with repeat = 10 for 800 >= t >= 500 (recurrence = 10, travel_start = 800,
  travel_end = 500 on T = 1000) but scales its step by the gradient's RMS instead (not implemented).
  Their noise is s_t = 0.5 sqrt(1 - ab_{t-1}) (`eta = 0.5`, c1 and c2 in their code), DDIM with a
  different sigma_t than any fixed DDIM eta gives; here the sampler's DDIM(eta) is used.
- TFG's FreeDoM baseline (YWolfeee/Training-Free-Guidance methods/freedom.py, read in the copies in
  myjju08/KAIRI_Research and sony/titan-guide; the original is not in our reference store) uses TFG's
  normalised schedule instead: x_{t-1} = DDIM(x_t, e) + rho_t g_t, rho_t = s_TFG a_t / mean_grid(a).
  That equals ours at step t for s_TFG = strength sqrt(ab_t) mean_grid(a) / a_t; our tfg.py (which adds
  Delta_t / sqrt(a_t)) equals it for rho = strength sqrt(ab_t) mean_grid(a) / sqrt(a_t). No one s_TFG or
  rho matches every step: sqrt(ab_t) falls towards 0 at high noise where a_t stays near 1.

Reference: J. Yu, Y. Wang, C. Zhao, B. Ghanem, J. Zhang. FreeDoM: Training-Free Energy-Guided
Conditional Diffusion Model. ICCV 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.methods.base import GuidanceMethod, LossGuidance, per_sample


@dataclass
class FreeDoM(LossGuidance):
    name = "freedom"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    stop_t: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.stop_t < 0:
            raise ValueError(f"method {self.name!r}: stop_t must be >= 0, got {self.stop_t}")

    def guided_step(self, x_t, step, sampler, guide, noise):
        if step.t <= self.stop_t:
            return GuidanceMethod.step(self, x_t, step, sampler, guide, noise)   # unguided DDIM, 1U
        e, x0h, _, g_t = self.grad_through_denoiser(x_t, step, sampler, guide, noise)
        rho_t = self.step_size(self.strength * step.alpha, e, g_t)          # strength * sqrt(ab_t)
        return sampler.ddim(x0h, e, step, noise) + per_sample(rho_t, g_t) * g_t

    def guided_step_costs(self, t):
        """1U + 1U_b + |T| G while guiding (t > stop_t), 1U after (x r repeats in the window)."""
        if t is None and self.stop_t > 0:
            raise ValueError(f"method {self.name!r}: the cost with stop_t = {self.stop_t} depends on the grid's "
                             "timesteps; pass them (costs_per_sample(steps, timesteps))")
        if t is not None and t <= self.stop_t:
            return (1, 0, 0, 0)
        return (1, 1, self.n_augment, self.n_augment)
