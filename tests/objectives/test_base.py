"""benchmark/objectives/base.py: what every objective offers: its kind (`objective_kind`), the parameters its
constructor takes (`constructor_params`, `param_defaults`) and how a batch's rows map to per-chain entries
(`for_chains`, `chain_index`). The optima of the built-in rewards are checked in their own files
(tests/objectives/test_quadratic.py, test_negnorm.py, ...)."""

import inspect
from types import SimpleNamespace

import pytest
import torch

from benchmark.objectives.base import KINDS, Objective, constructor_params, objective_kind


def test_objective_kind_defaults_to_reward_and_refuses_others():
    assert objective_kind(SimpleNamespace()) == "reward"                   # declares none
    assert objective_kind(SimpleNamespace(kind="log_prob")) == "log_prob"
    assert objective_kind(SimpleNamespace(kind="inverse", residual_norm=lambda x: x)) == "inverse"
    with pytest.raises(ValueError, match=r"objective 'odd': kind must be one of \['inverse', 'log_prob', 'reward'\], "
                                         r"got 'loss'"):
        objective_kind(SimpleNamespace(name="odd", kind="loss"))
    with pytest.raises(ValueError, match=r"objective 'inv' declares kind 'inverse' but has no residual_norm"):
        objective_kind(SimpleNamespace(name="inv", kind="inverse"))
    assert KINDS == ("inverse", "log_prob", "reward")


def test_constructor_params_are_the_keywords_after_task():
    class Two(Objective):
        def __init__(self, task, scale: float = 1.0, *, head: int):
            super().__init__()

    class Open(Objective):
        def __init__(self, task, **params):
            super().__init__()

    assert constructor_params(Two) == {"scale": 1.0, "head": inspect.Parameter.empty}
    assert Two.param_defaults() == {"scale": 1.0, "head": inspect.Parameter.empty}
    assert constructor_params(Open) is None and Open.param_defaults() == {}    # any keyword passes


def test_chain_index_reads_stacked_copies_of_the_chains():
    """Chain j of n reads entry j mod L; after for_chains(n), row j of k n rows is chain j mod n."""
    objective = Objective()
    assert objective.chain_index(5, 2, "cpu").tolist() == [0, 1, 0, 1, 0]      # no chains set: row j is chain j
    objective.for_chains(3)
    assert objective.chains == 3
    assert objective.chain_index(6, 2, "cpu").tolist() == [0, 1, 0, 0, 1, 0]
    assert objective.chain_index(6, 1, "cpu").tolist() == [0] * 6
    assert objective.chain_index(4, 1, "cpu").tolist() == [0] * 4             # one entry: any batch
    objective.name = "per_chain"
    with pytest.raises(ValueError, match=r"objective 'per_chain' has per-chain parameters for 3 chains; a batch of 4 "
                                         r"rows is neither the chains nor stacked copies of them"):
        objective.chain_index(4, 2, "cpu")


def test_for_chains_refuses_no_chains():
    with pytest.raises(ValueError, match=r"objective '': chains must be >= 1, got 0"):
        Objective().for_chains(0)
    assert isinstance(Objective().for_chains(2).chain_index(2, 2, "cpu"), torch.Tensor)
