"""benchmark/denoisers/loaders.py: the registered denoiser loaders: the oracle on the spec's schedule and T, and the
suite's checkpoint (missing file: an error naming it and the command that makes it; another task's: refused)."""

import re

import pytest
import torch

from benchmark.denoisers.loaders import DENOISERS, CheckpointLoader, OracleLoader
from benchmark.denoisers.network import ScoreMLP
from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.denoisers.pretrain import save_checkpoint
from benchmark.diffusion.schedules import make_schedule
from benchmark.spec import CellSpec
from benchmark.tasks import make_task


def test_registry_holds_the_built_in_loaders():
    assert {"oracle", "checkpoint", "diffusers", "diffusers_flow", "diffusers_latent"} == set(DENOISERS.builtins())
    assert DENOISERS["oracle"] is OracleLoader and DENOISERS["checkpoint"] is CheckpointLoader
    assert OracleLoader.needs_source is False and CheckpointLoader.needs_source is True
    assert CheckpointLoader.trainable and not OracleLoader.trainable
    assert OracleLoader.reads == CheckpointLoader.reads == ()
    assert [n for n in DENOISERS.builtins() if DENOISERS[n].takes_cfg] == ["diffusers_latent"]   # sampling.cfg


def test_oracle_loader_uses_the_specs_schedule(subspace):
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method="none", schedule="linear", T=30)
    loaded = OracleLoader.load(spec, subspace, "cpu")
    assert isinstance(loaded.model, SubspaceOracle) and loaded.networks == {} and loaded.trainable is None
    assert loaded.schedule.name == "linear" and torch.equal(loaded.schedule.ab, make_schedule("linear", 30).ab)


def test_checkpoint_loader_names_a_missing_file(tmp_path):
    path = tmp_path / "missing.safetensors"
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method="none", denoiser="trained",
                       checkpoint=str(path))
    with pytest.raises(FileNotFoundError, match=re.escape(f"checkpoint {path} does not exist; make it with "
                                                          "`python -m benchmark pretrain")):
        CheckpointLoader.load(spec, make_task("subspace"), "cpu")


def test_checkpoint_loader_refuses_another_tasks_network_and_records_its_file(tmp_path):
    schedule = make_schedule("cosine", 10)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, ScoreMLP(64, 10, hidden=8, depth=1, t_dim=8), schedule, {"task": "subspace", "task_seed": 0})
    own = CellSpec.of(task="subspace", objective="quadratic_off", method="none", denoiser="trained",
                      checkpoint=str(path))
    loaded = CheckpointLoader.load(own, make_task("subspace"), "cpu")
    assert loaded.trainable is loaded.model and not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.networks["denoiser"]["file"] == str(path) and loaded.schedule.T == 10
    other = CellSpec.of(task="subspace", task_seed=1, objective="quadratic_off", method="none", denoiser="trained",
                        checkpoint=str(path))
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {path} was trained on task 'subspace' (task_seed 0), "
                                                   "not 'subspace' (1)")):
        CheckpointLoader.load(other, make_task("subspace", task_seed=1), "cpu")
