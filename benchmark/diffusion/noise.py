"""Per-sample random streams: sample i draws from its own generator, so a batch of 8 chains
gives exactly what 8 batches of 1 give, and a chain's noise does not depend on its neighbours.

Seeds are derived by hashing the cell's identity (benchopt-style), never by a global RNG.
Methods that run several particles per chain (bon, smc) take them from `particles(K)`: particle 0
continues the chain's own stream and particle j > 0 gets a stream seeded by derive_seed(seed, "particle", j),
so a chain's particles depend on its seed alone.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any identity tuple, stable across processes and platforms."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class PerSampleNoise:
    """Standard normal draws of shape [B, *shape], one generator per sample.

    Draws are buffered in chunks per sample (one randn call per sample per chunk, not per step),
    which keeps the per-step cost independent of how many generators there are.
    """

    def __init__(self, seeds: list[int], shape: tuple[int, ...], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, chunk: int = 64):
        self.seeds = [int(s) for s in seeds]
        self.shape = tuple(shape)
        self.device = torch.device(device)
        self.dtype = dtype
        self.chunk = chunk
        self._gens = []
        for s in seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(int(s))
            self._gens.append(g)
        self._buffer: torch.Tensor | None = None
        self._pos = 0

    @classmethod
    def for_chains(cls, base: tuple, n: int, shape, **kw) -> "PerSampleNoise":
        return cls([derive_seed(*base, i) for i in range(n)], shape, **kw)

    def derived(self, tag: str, shape: tuple[int, ...] | None = None) -> "PerSampleNoise":
        """Fresh streams, one per row, seeded by derive_seed(seed, tag) (e.g. a chain's resampling uniforms)."""
        return PerSampleNoise([derive_seed(s, tag) for s in self.seeds], self.shape if shape is None else shape,
                              device=self.device, dtype=self.dtype, chunk=self.chunk)

    def particles(self, K: int) -> "ParticleNoise":
        """K particles per row: [K B] rows, particle-major (see ParticleNoise)."""
        return ParticleNoise(self, K)

    def _refill(self) -> None:
        self._buffer = torch.stack([
            torch.randn((self.chunk, *self.shape), generator=g, device=self.device, dtype=self.dtype)
            for g in self._gens
        ], dim=1)  # [chunk, B, *shape]
        self._pos = 0

    def draw(self) -> torch.Tensor:
        """The next N(0, I) draw for every sample: [B, *shape]."""
        if self._buffer is None or self._pos == self.chunk:
            self._refill()
        z = self._buffer[self._pos]
        self._pos += 1
        return z


class ParticleNoise(PerSampleNoise):
    """The streams of K particles per chain of `chain`: [K B] rows, particle-major (row j B + i is
    particle j of chain i, as `torch.cat` of K copies of the chains stacks them).

    Particle 0 continues the chain's own stream (it draws from `chain` itself, so one particle is
    the chain); particle j > 0 draws from a stream seeded by derive_seed(seed_i, "particle", j).
    For further derivations (`derived`, nested `particles`) particle 0 goes by the seed
    derive_seed(seed_i, "particle", 0), so nested particle sets never share a stream.
    """

    def __init__(self, chain: PerSampleNoise, K: int):
        if K < 1:
            raise ValueError(f"particles per chain must be >= 1, got {K}")
        self.chain, self.K = chain, K
        self.shape, self.device, self.dtype, self.chunk = chain.shape, chain.device, chain.dtype, chain.chunk
        self.others = (PerSampleNoise([derive_seed(s, "particle", j) for j in range(1, K) for s in chain.seeds],
                                      chain.shape, device=chain.device, dtype=chain.dtype, chunk=chain.chunk)
                       if K > 1 else None)
        self.seeds = [derive_seed(s, "particle", 0) for s in chain.seeds] + (self.others.seeds if K > 1 else [])

    def draw(self) -> torch.Tensor:
        z = self.chain.draw()
        return z if self.others is None else torch.cat([z, self.others.draw()])

    def start(self, x_T: torch.Tensor) -> torch.Tensor:
        """The particles' x_T: [K B, *shape], the chain's own x_T for particle 0 and the first draw of
        its stream for particle j > 0 (as a chain's x_T is the first draw of its stream)."""
        return x_T if self.others is None else torch.cat([x_T, self.others.draw()])
