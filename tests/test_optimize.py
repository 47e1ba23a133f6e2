"""benchmark/optimize.py: Guo et al.'s outer loops. The linear model around each chain's previous sample (or
each cell's mean) in closed form, chain noise streams that depend on the chain and never on the method, and
the passes run_rounds refuses."""

from types import SimpleNamespace

import pytest
import torch

from benchmark.optimize import RoundsConfig, chain_seeds, linearise, run_rounds


def _neg_sq(x: torch.Tensor) -> torch.Tensor:
    """r(x) = -||x||^2: grad r = -2x, so g^T x = -2||x||^2."""
    return -(x ** 2).flatten(1).sum(-1)


def test_per_sample_linearisation_is_each_chains_gradient_and_value():
    z = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 10
    t = linearise(_neg_sq, z, 0.25, "per_sample")
    assert torch.equal(t.g, -2 * z)
    assert torch.allclose(t.y, -2 * (z ** 2).sum(-1) + 0.25)
    delta = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)     # per chain (batched cells)
    assert torch.allclose(linearise(_neg_sq, z, delta, "per_sample").y, -2 * (z ** 2).sum(-1) + delta)
    assert not t.g.requires_grad and not t.y.requires_grad


def test_batch_mean_linearises_each_cell_at_its_own_mean():
    """Two cells of three chains each (cell-major): every chain of a cell gets the model at that cell's mean."""
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0], [0.0, 1.0], [0.0, 1.0], [0.0, 4.0]], dtype=torch.float64)
    t = linearise(_neg_sq, z, 0.5, "batch_mean", cells=2)
    means = torch.tensor([[2.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    assert torch.equal(t.g, (-2 * means).repeat_interleave(3, 0))
    assert torch.allclose(t.y, (-2 * (means ** 2).sum(-1) + 0.5).repeat_interleave(3, 0))      # -9.5, -7.5
    one = linearise(_neg_sq, z, 0.5, "batch_mean")                       # one cell: the batch mean
    assert torch.allclose(one.g, (-2 * z.mean(0)).expand(6, 2))


def test_chain_streams_are_seeded_by_task_denoiser_seed_round_and_chain():
    a = chain_seeds("subspace", "oracle", 0, 1, 4)
    assert a == chain_seeds("subspace", "oracle", 0, 1, 4) and len(set(a)) == 4
    assert a[:3] == chain_seeds("subspace", "oracle", 0, 1, 3)          # chain i's stream whatever the batch size
    others = [chain_seeds("sphere", "oracle", 0, 1, 4), chain_seeds("subspace", "trained", 0, 1, 4),
              chain_seeds("subspace", "oracle", 1, 1, 4), chain_seeds("subspace", "oracle", 0, 2, 4)]
    assert all(not set(a) & set(o) for o in others)


def test_a_pass_refuses_strengths_it_cannot_batch_and_algorithm_2_on_several_cells():
    config = RoundsConfig(rounds=1, samples=2)
    method = SimpleNamespace(name="stub", strength=0.5, batches_strengths=False)

    def start(**kw):
        return next(run_rounds(task=None, objective=None, sampler=None, costs=None, denoiser_name="oracle", **kw))

    with pytest.raises(ValueError, match=r"^1 strengths for a pass of 2 cells$"):
        start(method=method, config=config, seed=[0, 1], strengths=[0.5])
    with pytest.raises(ValueError, match=r"method 'stub' does not batch strengths: run its strengths in separate"):
        start(method=method, config=config, seed=[0, 1], strengths=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"Algorithm 2 fine-tunes its own network: one cell per pass"):
        start(method=method, config=RoundsConfig(rounds=1, samples=2, algorithm="alg2"), seed=[0, 1])
