"""Best-of-N, BoN: N draws per output sample from a proposal, the one with the highest reward kept.

    x_0^(j) ~ proposal,   j = 0..N-1         (N independent chains per output sample, batched as [N B])
    x_0     = x_0^(j*),   j* = argmax_j r(x_0^(j))   (the first maximum on ties)

The proposal is unguided sampling (`proposal = "none"`, the default) or any registered method,
including smc. bon has no guidance of its own: `strength` is the proposal's strength (delta for
naive / gloss, whose linear target then comes from the round as for the proposal itself), so
with the unguided proposal it must be 0. The proposal's other hyper-parameters are one string,
`proposal_params = "name=value,name=value"` (values read as JSON, e.g. "normalise=none,augment=3").

Draw j of chain i runs on its own noise stream: draw 0 is the chain itself (its x_T and stream),
draw j > 0 starts from the first draw of the stream seeded derive_seed(seed_i, "particle", j), so
n = 1 is the proposal exactly and a batch of B output samples equals B batches of 1. With the
unguided proposal on the oracle the mean best reward is the mean of the largest of N draws of the
unguided reward distribution (tests/methods/test_bon.py checks it against the order statistic).

Cost per output sample: N x the proposal's cost + N objective evaluations (no gradients).

References: N. Ma et al. Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps.
CVPR 2025. R. Singhal et al. A General Framework for Inference-time Scaling and Steering of
Diffusion Models. ICML 2025 (best-of-N as the baseline of particle methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.methods.base import GuidanceMethod, add_costs, declared_costs, make_proposal, scale_costs


@dataclass
class BestOfN(GuidanceMethod):
    name = "bon"

    n: int = 4
    proposal: str = "none"
    proposal_params: str = ""

    def __post_init__(self):
        super().__post_init__()
        if self.n < 1:
            raise ValueError(f"method 'bon': n (draws per output sample) must be >= 1, got {self.n}")
        if self.proposal == "bon":
            raise ValueError("method 'bon': proposal 'bon' is bon with n the product of the two n's")
        if self.proposal == "none" and self.strength != 0:
            raise ValueError(f"method 'bon': strength is the proposal's guidance strength and proposal 'none' has "
                             f"none; use strength 0 or a guided proposal, got {self.strength}")
        self._proposal = make_proposal(self.name, self.proposal, self.strength, self.proposal_params)

    @property
    def uses_linear_target(self) -> bool:
        return self._proposal.uses_linear_target

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
            raise ValueError("method 'bon' selects by the objective: it needs a Guide")
        B, N = x_T.shape[0], self.n
        draws = noise.particles(N)
        x = self._proposal.sample(sampler, draws.start(x_T), draws, guide.for_particles(N)).detach()  # [N B, ...]
        with torch.no_grad():
            r = guide.objective(x).view(N, B)                                # N evaluations per output sample
        best = r.argmax(0)
        return x[best * B + torch.arange(B, device=x.device)]

    def costs_per_sample(self, steps, timesteps=None):
        """N x the proposal's cost + N objective evaluations (no gradients) to select."""
        return add_costs(scale_costs(self.n, declared_costs(self._proposal, steps, timesteps)), (0, 0, self.n, 0))
