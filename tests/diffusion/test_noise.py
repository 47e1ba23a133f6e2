"""benchmark/diffusion/noise.py: per-sample random streams: stable seeds from an identity (`derive_seed`), each
row's draws independent of its batch neighbours across buffer refills, and the particles of a chain (particle 0
continues the chain's own stream)."""

import hashlib

import pytest
import torch

from benchmark.diffusion.noise import ParticleNoise, PerSampleNoise, derive_seed


def test_derive_seed_is_a_stable_63_bit_hash_of_the_identity():
    digest = hashlib.sha256("cell\x1f3\x1fNone".encode()).digest()
    assert derive_seed("cell", 3, None) == int.from_bytes(digest[:8], "little") >> 1
    assert 0 <= derive_seed("cell", 3) < 2 ** 63
    assert derive_seed("cell", 3) != derive_seed("cell", 4) != derive_seed("cell3")


def test_each_row_draws_its_own_stream_whatever_the_batch():
    seeds = [derive_seed("noise-test", i) for i in range(4)]
    batch = PerSampleNoise(seeds, (2, 3), chunk=3)
    draws = torch.stack([batch.draw() for _ in range(5)])                            # [steps, B, 2, 3], 2 refills
    assert draws.shape == (5, 4, 2, 3)
    for i, s in enumerate(seeds):
        alone = PerSampleNoise([s], (2, 3), chunk=3)
        assert torch.equal(torch.stack([alone.draw() for _ in range(5)])[:, 0], draws[:, i])
    assert not torch.equal(draws[:, 0], draws[:, 1])                                 # rows differ
    again = PerSampleNoise.for_chains(("noise-test",), 4, (2, 3), chunk=3)
    assert again.seeds == seeds and torch.equal(again.draw(), draws[0])


def test_derived_streams_are_seeded_differ_from_the_parent_and_leave_it_alone():
    noise = PerSampleNoise.for_chains(("c",), 3, (2,))
    u = noise.derived("resample", shape=(1,))
    assert u.seeds == [derive_seed(s, "resample") for s in noise.seeds] and u.draw().shape == (3, 1)
    assert torch.equal(noise.derived("resample", shape=(1,)).draw(), PerSampleNoise.for_chains(("c",), 3, (2,)).derived(
        "resample", shape=(1,)).draw())
    same_shape = noise.derived("resample", shape=(2,)).draw()
    twin = PerSampleNoise.for_chains(("c",), 3, (2,))
    parent = noise.draw()                                  # deriving did not advance the parent's stream
    assert torch.equal(parent, twin.draw()) and not torch.equal(same_shape, parent)


def test_particles_are_particle_noise_and_need_one_per_chain():
    chain = PerSampleNoise.for_chains(("p",), 2, (3,))
    assert isinstance(chain.particles(3), ParticleNoise)
    assert chain.particles(3).seeds[:2] == [derive_seed(s, "particle", 0) for s in chain.seeds]
    with pytest.raises(ValueError, match="particles per chain must be >= 1, got 0"):
        chain.particles(0)


def test_particle_streams():
    seeds, shape = [11, 12, 13], (5,)
    own = PerSampleNoise(seeds, shape)
    one = PerSampleNoise(seeds, shape).particles(1)
    assert all(torch.equal(one.draw(), own.draw()) for _ in range(3))          # one particle is the chain

    chain, K = PerSampleNoise(seeds, shape), 3
    parts = chain.particles(K)
    x_T = chain.draw()
    x = parts.start(x_T)
    z = parts.draw()
    assert x.shape == z.shape == (K * 3, 5) and torch.equal(x[:3], x_T)
    mirror = PerSampleNoise(seeds, shape)
    mirror.draw()
    assert torch.equal(z[:3], mirror.draw())                                   # particle 0 continues the chain
    for j in range(1, K):
        stream = PerSampleNoise([derive_seed(s, "particle", j) for s in seeds], shape)
        assert torch.equal(x[3 * j:3 * j + 3], stream.draw()) and torch.equal(z[3 * j:3 * j + 3], stream.draw())

    alone = PerSampleNoise([12], shape).particles(K)                           # chain 1 on its own
    alone.chain.draw()
    assert torch.equal(alone.start(x_T[1:2]), x[1::3]) and torch.equal(alone.draw(), z[1::3])

    nested = PerSampleNoise(seeds, shape).particles(2).particles(2)
    assert len(set(nested.seeds)) == len(nested.seeds) == 12
    assert not set(nested.seeds) & set(PerSampleNoise(seeds, shape).particles(4).seeds)
