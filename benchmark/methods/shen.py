"""Shen et al. (2024)'s improved training-free guidance: FreeDoM with all three improvements.

    random augmentation: g_t averaged over |T| = `augment` random augmentations of x0h (their Alg. 1);
    Polyak step size:    x_{t-1} = DDIM(x0h, e) + zeta g_t, zeta = strength ||e|| / ||g_t||^2 per
                         sample, 0 where ||g_t|| < 1e-6 (their Alg. 2; strength = their eta, the
                         scale of the Polyak step); polyak_rule="guarded" is our bounded variant
                         strength ||e|| / (||g_t||^2 + polyak_eps) (LossGuidance);
    time travel:         each step made `recurrence` times with re-noising in between, inside
                         travel_end <= t <= travel_start (their Alg. 3; 0 = no upper limit).

The update, options and costs are FreeDoM's (freedom.py, LossGuidance in base.py); only the
defaults differ: |T| = 10 (DESIGN §3), Polyak on with the published rule, time travel s = 2 at
every step. The augmentation family is the task's: Gaussian jitter for vector tasks, image
augmentations for images. Cost per step: s (1U + 1U_b + |T| G).

Reference: Y. Shen, X. Jiang, Y. Yang, Y. Wang, D. Han, D. Li. Understanding and Improving
Training-free Loss-based Diffusion Guidance. NeurIPS 2024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.methods.freedom import FreeDoM


@dataclass
class Shen(FreeDoM):
    name = "shen"

    augment: int = 10
    polyak: bool = True
    polyak_rule: Literal["published", "guarded"] = "published"
    recurrence: int = 2
