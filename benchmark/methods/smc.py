"""Feynman-Kac steering / twisted SMC: K particles per output sample, steering towards p(x_0) exp(lam r(x_0)),
lam = `strength`, p the sampler's own distribution.

Per step t -> t' of the grid, for all particles at once ([K B] rows, particle-major):
    x_{t'} ~ q(. | x_t)                  the proposal's step (default: the unguided DDIM(eta) step p)
    log w += log p(x_{t'} | x_t) - log q(x_{t'} | x_t) = (|z|^2 - |(x_{t'} - m_p) / s_t|^2) / 2
                                         (guided proposal only: x_{t'} = m_q + s_t z, and m_p the
                                          unguided DDIM mean from the same forward's e = eps_theta(x_t, t))
Every `resample_every`-th step (the last excepted), with r_t = r(x0h_t) on this step's Tweedie estimate,
the weights multiply by a potential G_t of the reward history, by `potential`. Singhal et al.'s three, as
their code computes them (github.com/zacharyhorvitz/Fk-Diffusion-Steering, discrete_diffusion/fkd_class.py
at 2fca4c5, `FKD.resample`; their names there: diff, max, add), with M, S the running max and sum of the
history:
    difference: G_t = exp(lam (r_t - r_prev))              (r_prev = 0 before the first)
    max:        G_t = exp(lam M_t),  M_t = max(M_prev, r_t)  (M = reward_min before the first: their
                                     reward_min_value, 0.0 there and here, so rewards below 0 do not count)
    sum:        G_t = exp(lam S_t),  S_t = S_prev + r_t      (S = 0 before the first; their code starts it
                                     at reward_min_value too, a constant factor that cancels)
and two of ours (called max and sum here before), ratios Phi_t / Phi_prev of intermediate tilts (Phi = 1
before the first):
    max_ratio:  G_t = exp(lam (M_t - M_prev)),  Phi_t = exp(lam max_s r_s)   (M from the first r, no floor)
    rt:         G_t = exp(lam r_t),             Phi_t = exp(lam sum_s r_s)   (= their code's `rt` potential)
After the last step one final factor, their code's terminal weight exp(lam R) / prod_t G_t (the product over
the particle's ancestors), R = M_0 = max(M_last, r(x_0)) for max, S_0 = S_last + r(x_0) for sum, r(x_0)
otherwise; difference's product telescopes to exp(lam r_last), so its factor is their exp(lam (r_0 - r_last)).
So the factors along a trajectory multiply to exp(lam R), and the weighted particles target
    difference, max_ratio, rt: p(x_0) exp(lam r(x_0))                        (exactly as K -> infinity)
    max: p(x_{0:T}) exp(lam max(reward_min, r_{t_1}, ..., r_{t_D}, r(x_0)))    the best reward on the way
    sum: p(x_{0:T}) exp(lam (r_{t_1} + ... + r_{t_D} + r(x_0)))                 D + 1 rewards added up
(t_1..t_D the potential steps): FK's max and sum tilt the trajectory, not x_0 alone, and miss the tilted
target at any K. Default `difference`: FK's diff, their own default (discrete_diffusion/configs/
fk_steering_config.yaml: potential_type 'diff'), and one of the three that target p exp(lam r). Its
intermediate targets p(x_{T:t}) exp(lam r(x0h_t)) are the usual approximation of the tilted marginals
(the twist of Wu et al.), so the final factor has little to correct; rt's tilt all the rewards so far
added up, far harder, and needs many more particles. chi2/dof of theta^T x against the exact target,
oracle subspace task, lam = 0.5, 20 steps, K = 256, B = 4000 (tests/methods/test_smc.py,
`tilted_chi2_per_dof`): difference 1.6, max_ratio 1.8, rt 404 (consistent but far from converged), max 97, sum 3153.
Weights accumulate (log w += log G_t) and each chain whose ESS = 1 / sum_k wbar_k^2 < ess_threshold K
resamples its own K particles systematically (weights reset; never across output samples).
ess_threshold = 1 resamples at every potential step (FK's fixed interval, where their code's weights are
G_t alone), 0.5 adaptively (their adaptive branch drops the weights of a step without resampling; here
they are kept, as SMC needs).
One particle per chain is returned, drawn by its final weight (inverse CDF at one uniform).

Known differences from their code: weights in log space (no clamp of w at 1e10, which ties the particles
whose log G exceeds ln 1e10 = 23), systematic rather than multinomial resampling, one weighted draw returned
rather than the K resampled particles (or the argmax of their statistic, in their discrete code).

Particle j of chain i runs on its own stream (particle 0 is the chain itself, particle j > 0 starts
from the first draw of the stream seeded derive_seed(seed_i, "particle", j)); the resampling uniforms
come from the chain's stream derive_seed(seed_i, "resample"). So a batch of B output samples equals
B batches of 1, and K = 1 is the proposal exactly (its one particle is the chain; resampling is
the identity).

Proposal: any per-step method (`proposal`, at `proposal_strength`, its other hyper-parameters as
`proposal_params = "name=value,..."`, values read as JSON), whose step makes one Gaussian transition
N(m_q, s_t^2 I) through the sampler's DDIM update. Its importance weight needs s_t > 0: with
eta = 0 a guided proposal is refused; at steps with s_t = 0 (the grid's last, x_0 = x0h(x_1)) the
unguided step is made, so K = 1 equals a guided proposal at every step but that one. Proposals that
re-noise within a step (time travel) or own the trajectory (bon, smc), and Algorithm-1 methods
(naive, gloss: their delta would be lam), are refused.

Cost per output sample, S steps, D = floor((S - 1) / resample_every) potential steps:
K x (the proposal's cost on the S - 1 steps with s_t > 0, 1U on the last) + K (D + 1) objective
evaluations (no gradients); unguided proposal: K S U + K (D + 1) evaluations.

References: R. Singhal, Z. Horvitz, R. Teehan, M. Ren, Z. Yu, K. McKeown, R. Ranganath. A General
Framework for Inference-time Scaling and Steering of Diffusion Models. ICML 2025. L. Wu, B. L. Trippe,
C. A. Naesseth, D. M. Blei, J. P. Cunningham. Practical and Asymptotically Exact Conditional Sampling in
Diffusion Models. NeurIPS 2023. S. Kim, M. Kim, D. Park. Test-time Alignment of Diffusion Models
without Reward Over-optimization. ICLR 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.diffusion.sampler import ddim_update, tweedie
from benchmark.methods.base import GuidanceMethod, add_costs, declared_costs, make_proposal, scale_costs


#: Singhal et al.'s potentials G_t = exp(lam stat_t) on the running max / sum of the reward history: each
#: step's whole tilt, not a ratio.
FK_TILTS = ("max", "sum")


def systematic(w: torch.Tensor, u: torch.Tensor, n: int) -> torch.Tensor:
    """Systematic resampling, per column: w [K, B] weights (each column sums to 1), u [B] in [0, 1)
    -> [n, B] indices. Position k = 0..n-1 takes the particle i with C_{i-1} <= (u + k) / n < C_i,
    C the cumulative weights, so particle i gets floor(n w_i) or ceil(n w_i) copies; n = 1 is one
    draw by inverse CDF (multinomial)."""
    c = torch.cumsum(w, 0)
    c = c / c[-1:]                                                         # C_K = 1 exactly
    pos = (u + torch.arange(n, device=w.device, dtype=w.dtype)[:, None]) / n   # [n, B]
    idx = torch.searchsorted(c.T.contiguous(), pos.T.contiguous(), right=True).T
    return idx.clamp_max(w.shape[0] - 1)


def normalised(log_w: torch.Tensor) -> torch.Tensor:
    """wbar [K, B] from log weights [K, B], per column; a NaN weight (a diverged particle) counts as 0,
    and a column without a finite weight falls back to uniform."""
    log_w = torch.where(torch.isnan(log_w), -math.inf, log_w)
    lost = torch.isneginf(log_w.max(0).values)
    return torch.softmax(torch.where(lost, 0.0, log_w), 0)


def ess(w: torch.Tensor) -> torch.Tensor:
    """Effective sample size per column of normalised weights [K, B]: 1 / sum_k w_k^2 -> [B]."""
    return 1.0 / w.square().sum(0)


class _Transition:
    """The sampler as the proposal sees it during one step: the sampler's own pieces, keeping what the
    weights need, e = eps_theta(x_t, t) of the first forward at x_t (x0h_t and the unguided mean
    m_p) and the z of the DDIM update (x_{t'} = m_q + s_t z)."""

    def __init__(self, sampler):
        self._sampler = sampler

    def __getattr__(self, name):
        return getattr(self._sampler, name)

    def begin(self, x_t: torch.Tensor) -> None:
        self._x_t, self.e, self.z, self.renoised = x_t, None, [], False

    def _keep(self, x_t, e):
        if self.e is None and torch.equal(x_t.detach(), self._x_t):
            self.e = e.detach()

    def eps(self, x_t, step):
        e = self._sampler.eps(x_t, step)
        self._keep(x_t, e)
        return e

    def eps_with_graph(self, x_t, step):
        x, e, x0h = self._sampler.eps_with_graph(x_t, step)
        self._keep(x_t, e)
        return x, e, x0h

    def ddim(self, x0h, e, step, noise):
        return self._sampler.ddim(x0h, e, step, _Tap(noise, self.z))

    def renoise(self, x_prev, step, noise):
        self.renoised = True
        return self._sampler.renoise(x_prev, step, noise)

    def x0h(self, step) -> torch.Tensor:
        if self.e is None:
            raise ValueError("method 'smc': the proposal's step made no denoiser forward at x_t")
        return tweedie(self._x_t, self.e, step.ab_t)

    def log_ratio(self, x_prev: torch.Tensor, step) -> torch.Tensor:
        """log p(x_{t'} | x_t) - log q(x_{t'} | x_t) per row [N] (float64), both N(., s_t^2 I)."""
        if len(self.z) != 1 or self.renoised:
            raise ValueError(f"method 'smc': the proposal made {len(self.z)} DDIM updates"
                             f"{' and re-noised' if self.renoised else ''} in one step (time travel?): its "
                             "transition is not one Gaussian and cannot be importance-corrected")
        m_p = ddim_update(*self._sampler.clipped(self.x0h(step), self.e, step), step, torch.zeros_like(x_prev))
        z = self.z[0].double().flatten(1)
        d = ((x_prev - m_p).double() / step.sigma).flatten(1)
        return 0.5 * (z.square().sum(1) - d.square().sum(1))


class _Tap:
    """A noise stream whose draws are also appended to `kept`."""

    def __init__(self, noise, kept: list):
        self.noise, self.kept = noise, kept

    def draw(self):
        z = self.noise.draw()
        self.kept.append(z)
        return z


@dataclass
class SMC(GuidanceMethod):
    name = "smc"
    batches_strengths = True   # strength a float or per chain (GuidanceMethod.batches_strengths)

    particles: int = 4
    potential: Literal["difference", "max", "sum", "max_ratio", "rt"] = "difference"
    reward_min: float = 0.0
    resample_every: int = 1
    ess_threshold: float = 0.5
    proposal: str = "none"
    proposal_strength: float = 0.0
    proposal_params: str = ""

    def __post_init__(self):
        super().__post_init__()
        if self.particles < 1:
            raise ValueError(f"method 'smc': particles (K per output sample) must be >= 1, got {self.particles}")
        if self.resample_every < 1:
            raise ValueError(f"method 'smc': resample_every must be >= 1, got {self.resample_every}")
        if self.reward_min != 0 and self.potential != "max":
            raise ValueError(f"method 'smc': reward_min (where the running max of the reward history starts) is used "
                             f"by the potential 'max' only, not {self.potential!r}; leave it at 0")
        if not 0 < self.ess_threshold <= 1:
            raise ValueError(f"method 'smc': ess_threshold (a fraction of K) must be in (0, 1], "
                             f"got {self.ess_threshold}")
        self._prior = make_proposal(self.name, "none", 0.0, "")
        self._proposal = make_proposal(self.name, self.proposal, self.proposal_strength, self.proposal_params)
        if type(self._proposal).sample is not GuidanceMethod.sample:
            raise ValueError(f"method 'smc': proposal {self.proposal!r} owns the whole trajectory; the proposal "
                             "must be a per-step method")
        if self._proposal.uses_linear_target:
            raise ValueError(f"method 'smc': proposal {self.proposal!r} guides towards Algorithm 1's linear target, "
                             "whose delta the rounds take from the method's strength (smc's lambda); use a "
                             "training-free proposal")

    @property
    def uses_noisy_log_prob(self) -> bool:
        return getattr(self._proposal, "uses_noisy_log_prob", False)

    def skip(self, objective) -> tuple[bool, str]:
        """What the proposal cannot guide, this cannot either."""
        skipped, why = self._proposal.skip(objective)
        own = f"{self._proposal.name!r} needs"
        return skipped, why.replace(own, f"{self.name!r} needs", 1) + f" (for its proposal {self._proposal.name!r})" \
            if skipped else why

    def sample(self, sampler, x_T, noise, guide=None):
        if guide is None:
            raise ValueError("method 'smc' weights by the objective: it needs a Guide")
        guided = self.proposal != "none"
        if guided and sampler.eta == 0:
            raise ValueError(f"method 'smc': a guided proposal ({self.proposal!r}) needs eta > 0; with eta = 0 its "
                             "transitions are deterministic, p(x_{t-1} | x_t) / q(x_{t-1} | x_t) does not exist and "
                             "the proposal cannot be importance-corrected (use eta > 0 or proposal 'none')")
        K, B, lam = self.particles, x_T.shape[0], self.strength
        if isinstance(lam, torch.Tensor):                                    # batched cells: lam per chain
            lam = lam.repeat(K)                                              # [K B], particle-major
        particles, uniforms = noise.particles(K), noise.derived("resample", shape=())
        pguide, transition = guide.for_particles(K), _Transition(sampler)
        chains = torch.arange(B, device=x_T.device)
        x = particles.start(x_T)                                             # [K B, ...]
        log_w = torch.zeros(K * B, dtype=torch.float64, device=x.device)
        stat = torch.full_like(log_w, self.reward_min) if self.potential in FK_TILTS else None
        log_phi = torch.zeros_like(log_w)                                    # log prod_t G_t along the ancestry
        last = len(sampler.steps) - 1
        for step in sampler.steps:
            move = self._proposal if guided and step.sigma > 0 else self._prior
            transition.begin(x)
            x_prev = move.step(x, step, transition, pguide, particles)
            if move is not self._prior:
                log_w = log_w + transition.log_ratio(x_prev, step)
            if step.index < last and (step.index + 1) % self.resample_every == 0:
                with torch.no_grad():
                    r = pguide.objective(transition.x0h(step)).double()     # r(x0h_t): K evaluations
                stat = self._statistic(stat, r)
                if self.potential in FK_TILTS:                               # G_t = exp(lam M_t) or exp(lam S_t)
                    log_w, log_phi = log_w + lam * stat, log_phi + lam * stat
                else:                                                        # G_t = Phi_t / Phi_prev
                    log_w, log_phi = log_w + lam * stat - log_phi, lam * stat
                u = torch.special.ndtr(uniforms.draw().double())             # drawn every time: per chain
                w = normalised(log_w.view(K, B))
                resample = ess(w) < self.ess_threshold * K                   # [B], per chain
                if resample.any():
                    idx = torch.where(resample, systematic(w, u, K), torch.arange(K, device=x.device)[:, None])
                    rows = (idx * B + chains).flatten()
                    x_prev, stat, log_phi = x_prev[rows], stat[rows], log_phi[rows]
                    log_w = torch.where(resample, 0.0, log_w.view(K, B)).flatten()
            x = x_prev.detach()
        with torch.no_grad():
            r = pguide.objective(x).double()                                 # r(x_0): K evaluations
        R = self._statistic(stat, r) if self.potential in FK_TILTS else r    # M_0, S_0 or r(x_0)
        log_w = log_w + lam * R - log_phi                                    # final factor exp(lam R) / prod_t G_t
        u = torch.special.ndtr(uniforms.draw().double())
        pick = systematic(normalised(log_w.view(K, B)), u, 1)[0]
        return x[pick * B + chains]

    def costs_per_sample(self, steps, timesteps=None):
        """K x (the proposal's cost on the S - 1 steps with s_t > 0 (eta > 0, which a guided proposal
        needs), the unguided 1U on the last) + K (D + 1) objective evaluations, D = floor((S - 1) /
        resample_every) potential steps, no gradients; unguided proposal: K S U + K (D + 1) evaluations."""
        ts = timesteps if timesteps is None else list(timesteps)
        if steps >= 1 and self.proposal != "none":
            path = add_costs(declared_costs(self._proposal, steps - 1, None if ts is None else ts[:-1]),
                             declared_costs(self._prior, 1, None if ts is None else ts[-1:]))
        else:
            path = declared_costs(self._prior, steps, ts)
        potentials = (steps - 1) // self.resample_every + 1 if steps >= 1 else 0
        return add_costs(scale_costs(self.particles, path), (0, 0, self.particles * potentials, 0))

    def _statistic(self, stat, r):
        """The reward history's statistic after r_t: r_t (difference), the running max M_t (max,
        max_ratio) or the running sum S_t (sum, rt); t counts down, so 'so far'."""
        if stat is None or self.potential == "difference":
            return r
        return torch.maximum(stat, r) if self.potential in ("max", "max_ratio") else stat + r
