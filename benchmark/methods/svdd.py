"""SVDD, soft value-based decoding: at every step, M candidates from the pre-trained transition, one kept by value.

Li et al.'s soft value of a noisy state, under the pre-trained model p, with temperature alpha:
    v_t(x_t) = alpha log E_p[exp(r(x_0) / alpha) | x_t],
and the optimal (tilted) policy p*(x_{t-1} | x_t) ∝ p(x_{t-1} | x_t) exp(v_{t-1}(x_{t-1}) / alpha), whose
chain ends in p(x_0) exp(r(x_0) / alpha) (up to the untilted x_T). Their Algorithm 1 samples it by
importance resampling, per step t -> t' of the grid and per chain:
    x_{t'}^(m) ~ p(. | x_t),  m = 1..M          the unguided DDIM(eta) step, M draws (`candidates`)
    x_{t'} = x_{t'}^(m*),  m* ~ Categorical(softmax_m(v(x_{t'}^(m)) / alpha))   (alpha = 0: m* = argmax_m v)
Here `strength` is lambda = 1 / alpha, the tilt of smc's target p exp(lambda r): `select = "softmax"` draws
m* with probabilities softmax(lambda v) (lambda = 0: uniform, i.e. unguided in law); `select = "argmax"`
(default, alpha = 0 as in their code) keeps the highest value and takes no strength (strength must be 0).

The value estimate, `value`:
    pm (default): SVDD-PM, v(x_{t'}) = r(x0h(x_{t'})), the reward of the posterior mean, x0h from the one
        forward eps_theta(x_{t'}, t') (their code's `calculate_weight`, variant 'PM'). Not the soft value: it
        ignores the spread of x_0 given x_{t'}, so with softmax its M -> infinity limit over-tilts (on the oracle
        Gaussian task its mean reward passes the tilted target's: tests/methods/test_svdd.py).
    mc: a Monte-Carlo estimate by rollouts of the pre-trained sampler itself, ours: K = `rollouts` runs of
        DDIM(eta) from x_{t'} to 0 over R_i = min(`rollout_steps`, S - 1 - i) steps of the remaining grid
        (grid points evenly spaced by index; R_i >= S - 1 - i is the sampler's own remaining chain), the first
        step from the candidate's forward; then
            softmax:  v = (1 / lambda) log (1/K) sum_k exp(lambda r(x_0^(k)))  (selection weight: the mean of
                      exp(lambda r), an unbiased estimate of exp(lambda v_{t'}) for full rollouts)
            argmax:   v = (1/K) sum_k r(x_0^(k))                            (alpha -> 0 of their regression)
        A one-step rollout (R_i = 1) is deterministic, x_0 = DDIM to 0 = x0h (clipped under `clip_x0`), so it
        is evaluated once. NOT their SVDD-MC: theirs learns a value network by regression of r(x_0) on
        forward-noised data x_t (valuefunction/train_value_function_*.py, MSE), used at alpha = 0 as
        E[r(x_0) | x_t]; this suite trains no value networks, so `mc` estimates the same quantity (or, for
        softmax, the soft value itself) at sampling time, paying for it in forwards. With full rollouts and
        softmax, selection by an unbiased weight makes the chain exact as M -> infinity: it samples the tilted
        sampler law given the untilted x_T (tests/methods/test_svdd.py).

Per step, for all B chains at once ([M B] candidate rows, particle-major as smc's particles):
    e_t = eps_theta(x_t, t) is the forward already made for x_t as a candidate (the first step's at x_T is
    the one extra), x0h = tweedie(x_t, e_t); candidates x^(m) = DDIM(x0h, e_t, z^(m)); one forward at
    each candidate, kept for the chosen one's next step. The grid's last step (t' = 0, sigma = 0 for any eta:
    ab_0 = 1) is deterministic, x_0 = DDIM(x0h(x_1)), so it makes no candidates (their code, too, selects
    nothing there). M = 1 selects nothing and evaluates nothing: it is the unguided sampler exactly.

Randomness: the candidates' z from noise.particles(M) (candidate 0 continues the chain's own stream, so M = 1
draws what `none` draws), the selection's uniforms from the chain's stream derive_seed(seed, "select"), the
rollouts' from noise.derived("rollout").particles(K M); so a batch of B output samples equals B batches of 1.
Candidates differ only through the DDIM noise: with eta = 0 the M candidates coincide and svdd is DDIM(0) at
the cost below (allowed, as smc's unguided proposal at eta = 0 is; use eta > 0, their code's eta = 1).

Cost per output sample, S steps (no VJPs, no objective gradients):
    pm:  forwards 1 + M (S - 1),  objective evaluations M (S - 1)           (M = 1: S and 0, as `none`)
    mc:  forwards 1 + sum_{i=0}^{S-2} M (1 + K_i (R_i - 1)),  evaluations sum_{i=0}^{S-2} M K_i,
         R_i = min(R, S - 1 - i), K_i = K if R_i > 1 else 1                 (M = 1: S and 0)
Their code pays 1 + M forwards per step (the chosen candidate's forward again at the next step); ours M.

Known differences from their code (masa-ue/SVDD-image, sd_pipeline.py `Decoding_SDPipeline` and
`Decoding_nonbatch_SDPipeline` at 86cc585; inference_decoding_all.py: duplicate_size M = 20, eta = 1):
the chosen candidate's forward is reused, not recomputed; `softmax` (alpha > 0) is the paper's rule, their
code runs alpha = 0 only; `mc` as above. The reward of PM is r(x0h) unclipped (as smc's potentials).

Reference: X. Li, Y. Zhao, C. Wang, G. Scalia, G. Eraslan, S. Nair, T. Biancalani, S. Ji, A. Regev,
S. Levine, M. Uehara. Derivative-Free Guidance in Continuous and Discrete Diffusion Models with Soft
Value-Based Decoding. arXiv 2408.08252, 2024 (Algorithm 1; SVDD-MC and SVDD-PM). The paper's text was not in
the reference store: the rule above is their code's and the paper's abstract's, with no equation numbers checked.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import Step, tweedie
from benchmark.methods.base import GuidanceMethod
from benchmark.methods.smc import normalised, systematic


class _Still:
    """A noise stream for a step with sigma = 0 (its draw is not used): zeros like `like`."""

    def __init__(self, like: torch.Tensor):
        self.like = like

    def draw(self) -> torch.Tensor:
        return torch.zeros_like(self.like)


def rollout_grid(sampler, i: int, R: int) -> list[Step]:
    """The DDIM steps of a rollout from the grid point after step i down to 0: R_i = min(R, S - 1 - i) steps
    whose end points are the remaining grid points at indices evenly spaced (rounded) from i + 1 to S."""
    steps = sampler.steps
    points = [s.t for s in steps[i + 1:]] + [0]                               # t' = steps[i].t_prev, ..., 0
    n = len(points) - 1
    R_i = min(R, n)
    pick = torch.linspace(0, n, R_i + 1, dtype=torch.float64).round().long().tolist()
    ab = sampler.schedule.ab.tolist()
    ts = [points[j] for j in pick]
    return [Step(j, R_i, t, tp, ab[t], ab[tp], sampler.eta) for j, (t, tp) in enumerate(itertools.pairwise(ts))]


@dataclass
class SVDD(GuidanceMethod):
    name = "svdd"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    candidates: int = 20
    value: Literal["pm", "mc"] = "pm"
    select: Literal["argmax", "softmax"] = "argmax"
    rollouts: int = 4
    rollout_steps: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.candidates < 1:
            raise ValueError(f"method 'svdd': candidates (M per step) must be >= 1, got {self.candidates}")
        if self.select == "argmax" and self.strength != 0:
            raise ValueError(f"method 'svdd': select 'argmax' is alpha = 0 (lambda = infinity) and takes no "
                             f"strength; use strength 0, or select 'softmax' with strength lambda = 1 / alpha, "
                             f"got {self.strength}")
        if self.rollouts < 1 or self.rollout_steps < 1:
            raise ValueError(f"method 'svdd': rollouts and rollout_steps must be >= 1, got {self.rollouts} and "
                             f"{self.rollout_steps}")
        if self.value == "pm" and (self.rollouts, self.rollout_steps) != (4, 2):
            raise ValueError("method 'svdd': rollouts and rollout_steps are the parameters of value 'mc'; leave "
                             "them at their defaults with value 'pm'")

    def sample(self, sampler, x_T, noise, guide=None):
        if guide is None:
            raise ValueError("method 'svdd' selects by the objective: it needs a Guide")
        M, B, last = self.candidates, x_T.shape[0], len(sampler.steps) - 1
        cands = noise.particles(M)
        uniforms = noise.derived("select", shape=()) if self.select == "softmax" else None
        K = self.rollouts if self.value == "mc" else 1
        rolls = noise.derived("rollout").particles(K * M) if self.value == "mc" and M > 1 else None
        pguide = guide.for_particles(M)
        chains = torch.arange(B, device=x_T.device)
        x = x_T
        e = sampler.eps(x, sampler.steps[0]) if sampler.steps else None
        for step in sampler.steps:
            x0h = tweedie(x, e, step.ab_t)
            if step.index == last:                                             # sigma = 0: x_0 = DDIM(x0h(x_1))
                x = sampler.ddim(x0h, e, step, cands.chain)                    # the chain's own draw, as `none`
                break
            rep = (M,) + (1,) * (x.dim() - 1)
            x_c = sampler.ddim(x0h.repeat(rep), e.repeat(rep), step, cands)    # [M B, ...]
            nxt = sampler.steps[step.index + 1]
            e_c = sampler.eps(x_c, nxt)                                        # M forwards, the next step's e
            if M == 1:
                x, e = x_c, e_c
                continue
            with torch.no_grad():
                score = self._score(x_c, e_c, step.index, sampler, pguide, rolls, M, B)   # [M, B] float64
            if self.select == "argmax":
                pick = score.argmax(0)                                         # the first maximum on ties
            else:
                u = torch.special.ndtr(uniforms.draw().double())
                pick = systematic(normalised(score), u, 1)[0]                  # inverse CDF at one uniform
            rows = pick * B + chains
            x, e = x_c[rows], e_c[rows]
        return x

    def _score(self, x_c, e_c, i, sampler, pguide, rolls, M, B) -> torch.Tensor:
        """The selection's score per candidate [M, B] (float64): v for argmax, log of the softmax weight
        (lambda v; for mc log mean_k exp(lambda r_k)) for softmax."""
        lam = self.strength
        if self.value == "pm":
            v = pguide.objective(tweedie(x_c, e_c, sampler.steps[i].ab_prev)).double().view(M, B)
            return v if self.select == "argmax" else lam * v
        grid = rollout_grid(sampler, i, self.rollout_steps)
        K = self.rollouts if len(grid) > 1 else 1
        rep = (K,) + (1,) * (x_c.dim() - 1)
        x, e = x_c.repeat(rep), e_c.repeat(rep)                                # [K M B, ...], row (k M + m) B + i
        for j, st in enumerate(grid):
            if j > 0:
                e = sampler.eps(x, st)
            x = sampler.ddim(tweedie(x, e, st.ab_t), e, st, rolls if st.sigma > 0 else _Still(x))
        r = pguide.for_particles(K).objective(x).double().view(K, M, B)
        if self.select == "argmax":
            return r.mean(0)
        return torch.logsumexp(lam * r, 0) - math.log(K)

    def costs_per_sample(self, steps, timesteps=None):
        """pm: (1 + M (S - 1), 0, M (S - 1), 0); mc: (1 + sum_i M (1 + K_i (R_i - 1)), 0, sum_i M K_i, 0) over
        the S - 1 steps before the last, R_i = min(R, S - 1 - i), K_i = K if R_i > 1 else 1; M = 1: (S, 0, 0, 0)."""
        if steps <= 0:
            return (0, 0, 0, 0)
        M, S = self.candidates, steps
        if M == 1:
            return (S, 0, 0, 0)
        if self.value == "pm":
            return (1 + M * (S - 1), 0, M * (S - 1), 0)
        forwards, evals = 1, 0
        for i in range(S - 1):
            R_i = min(self.rollout_steps, S - 1 - i)
            K_i = self.rollouts if R_i > 1 else 1
            forwards += M * (1 + K_i * (R_i - 1))
            evals += M * K_i
        return (forwards, 0, evals, 0)
