"""benchmark/denoisers/base.py: what every denoiser loader is (`DenoiserLoader`: needs_source, trainable, reads,
load) and what it returns (`Loaded`)."""

import pytest
import torch

from benchmark.denoisers.base import DenoiserLoader, Loaded


def test_a_loader_defaults_to_a_source_no_fine_tuning_and_reading_everything():
    """A plug-in that declares nothing needs a source, is not fine-tuned, and may depend on the objective and the
    rounds (so a round-0 batch is not reused across cells that differ in them); it must define `load`."""
    assert DenoiserLoader.needs_source is True and DenoiserLoader.trainable is False
    assert DenoiserLoader.takes_cfg is False                  # no classifier-free guidance unless it says so
    assert DenoiserLoader.reads == ("objective", "objective_params", "rounds")
    with pytest.raises(NotImplementedError):
        DenoiserLoader.load(None, None, "cpu")


def test_loaded_holds_the_model_its_schedule_and_records():
    model = torch.nn.Linear(2, 2)
    a, b = Loaded(model, "schedule"), Loaded(model, "schedule")
    assert a.networks == {} and a.trainable is None and a.model is model
    a.networks["denoiser"] = {"file": "x"}
    assert b.networks == {}                                   # each its own record, not a shared default
    assert Loaded(model, None, {"denoiser": {}}, trainable=model).trainable is model
