"""Per-sample random streams: sample i draws from its own generator, so a batch of 8 chains
gives exactly what 8 batches of 1 give, and a chain's noise does not depend on its neighbours.

Seeds are derived by hashing the cell's identity (benchopt-style), never by a global RNG.
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
