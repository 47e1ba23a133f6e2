"""Universal Guidance, UGD (Bansal et al. 2023, Alg. 1), rewards maximised (loss l = -r).

Per step, repeated k = `recurrence` times (self-recurrence; each repeat re-noises x_{t-1} to t):

    e, x0h = eps_theta(x_t, t), x0h(x_t)                                (one forward, graph kept)
    forward guidance:   e^ = e - w sqrt(1 - ab_t) g_t,   g_t = grad_{x_t} r(x0h(x_t))     (one VJP)
    backward guidance:  x0^ = x0h(e^) = (x_t - sqrt(1 - ab_t) e^) / sqrt(ab_t);
                        D* = argmax_D r(x0^ + D) by m = `backward_steps` gradient steps in clean
                        space, D <- D + `backward_lr` grad r(x0^ + D) from D = 0 (no denoiser backward);
                        e^ <- e^ - sqrt(ab_t / (1 - ab_t)) D*     (which moves x0h(e^) by exactly D*)
    x_{t-1} = DDIM(x0h(e^), e^)

w = strength (Bansal's s(t), constant), or Polyak's step with `polyak`. Their self-recurrence is
`recurrence` (time travel at every step unless a window is set; see LossGuidance); m = 0 turns
backward guidance off. Shen et al.'s `augment` applies to the forward-guidance gradient.

Cost per step: k (1U + 1U_b + (|T| + m) objective evaluations and gradients), |T| = max(augment, 1).

Relation to TFG (tfg.py): forward guidance is TFG's mean guidance with the step
rho_t = w sqrt(1 - ab_t) (sqrt(1 - ab_t) - sqrt(a_t) c_t), c_t = sqrt(1 - ab_{t-1} - s_t^2)
the DDIM coefficient of e (tested step for step). Backward guidance is not TFG's variance
guidance: D* enters through e^, which moves x_{t-1} by (sqrt(ab_{t-1}) - c_t sqrt(ab_t / (1 - ab_t))) D*
instead of TFG's sqrt(ab_{t-1}) Delta_0, and its clean-space gradients are taken at x0h(e^), after
forward guidance, where TFG takes them at x0h(e).

Conventions (tests/test_conventions.py checks them on one oracle step):
- Bansal et al.'s code (arpitbansal297/Universal-Guided-Diffusion, Guided_Diffusion_Imagenet/
  guided_diffusion/gaussian_diffusion.py, ddim_sample_operation): forward guidance
  `eps = eps - (1 - alpha_bar).sqrt() * grad * optim_guidance_3_wt` (w = optim_guidance_3_wt); backward
  guidance starts from the forward-guided x0^ = x0h(e^) (`x0 = out["pred_xstart"]`, set from the
  guided eps), as here; e is re-derived from the optimised x0 (`_predict_eps_from_xstart`), which is
  e^ - sqrt(ab_t / (1 - ab_t)) D* above; self-recurrence k = `num_steps`. Differences kept: their
  m = `max_iters` steps are Adam's (lr `operation.lr`) with x0 clamped to [-1, 1] at every iteration
  and after, and a per-sample loss cutoff; here plain gradient steps of `backward_lr`, no clamp (the
  sampler's clip_x0 clamps the x0h the DDIM update uses), no cutoff.
- TFG's UGD baseline (YWolfeee/Training-Free-Guidance methods/ugd.py, read in the copy in
  sony/titan-guide; the original is not in our reference store) starts backward guidance from the
  unguided x0h(e) (clipped by their `_predict_x0`), with lr = its guidance strength and
  m = iter_steps - 1: backward_lr = strength and backward_steps = iter_steps - 1 match it only when
  grad r is constant (a linear reward) or w = 0. Otherwise D* differs by the change of grad r between
  x0h(e) and x0h(e^) = x0h(e) + w (1 - ab_t) / sqrt(ab_t) g_t: for r = c - (theta^T x - b)^2 and m = 1,
  D*_here - D*_TFG = -2 lr w (1 - ab_t) / sqrt(ab_t) theta theta^T g_t, which moves x_{t-1} by
  (sqrt(ab_{t-1}) - c_t sqrt(ab_t / (1 - ab_t))) times that.

Reference: A. Bansal, H.-M. Chu, A. Schwarzschild, S. Sengupta, M. Goldblum, J. Geiping,
T. Goldstein. Universal Guidance for Diffusion Models. ICLR 2024 (arXiv 2302.07121).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.diffusion.sampler import tweedie
from benchmark.methods.base import LossGuidance, per_sample


@dataclass
class UGD(LossGuidance):
    name = "ugd"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    backward_steps: int = 1
    backward_lr: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.backward_steps < 0:
            raise ValueError(f"method {self.name!r}: backward_steps (m) must be >= 0 (0 = no backward "
                             f"guidance), got {self.backward_steps}")
        if self.backward_lr < 0:
            raise ValueError(f"method {self.name!r}: backward_lr must be >= 0, got {self.backward_lr}")

    def guided_step(self, x_t, step, sampler, guide, noise):
        e, _, _, g_t = self.grad_through_denoiser(x_t, step, sampler, guide, noise)
        w = self.step_size(self.strength, e, g_t)
        e_hat = e - math.sqrt(step.h) * per_sample(w, g_t) * g_t           # forward guidance
        if self.backward_steps > 0:
            x0_hat = tweedie(x_t, e_hat, step.ab_t)
            D = torch.zeros_like(x0_hat)
            with torch.enable_grad():
                for _ in range(self.backward_steps):                        # clean space, no VJP
                    d = D.requires_grad_(True)
                    (h,) = torch.autograd.grad(guide.objective(x0_hat + d).sum(), d)
                    D = (d + self.backward_lr * h).detach()
            e_hat = e_hat - math.sqrt(step.ab_t / step.h) * D               # backward guidance
        return sampler.ddim(tweedie(x_t, e_hat, step.ab_t), e_hat, step, noise)

    def guided_step_costs(self, t):
        """1U + 1U_b + (|T| + m) G (x k repeats)."""
        g = self.n_augment + self.backward_steps
        return (1, 1, g, g)
