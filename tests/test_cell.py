"""benchmark/cell.py: one cell run end to end. Failures and divergence are recorded, the run id is what
identifies a cell (its spec and the content of the networks it loads, not where they lie), per-chain values are
on the reward and fidelity rows, and every metric is computed on the test device."""

import hashlib
import json
import shutil

import pandas as pd
import pyarrow as pa
import pytest

from benchmark.cell import Cell, CellSpec, run_cell, write_cell
from benchmark.checkpoints import file_sha256
from benchmark.methods import METHODS
from benchmark.methods.base import GuidanceMethod
from benchmark.results import to_table

TINY = dict(task="subspace", objective="negnorm_ones", method="none", rounds=1, samples=4, steps=5)


class _Exploding(GuidanceMethod):
    name = "exploding"

    def step(self, x_t, step, sampler, guide, noise):
        return x_t * float("nan")


class _Raising(GuidanceMethod):
    name = "raising"

    def step(self, x_t, step, sampler, guide, noise):
        raise RuntimeError("boom at step")


@pytest.mark.parametrize("cls, status, text", [(_Exploding, "diverged", "non-finite samples in round 1"),
                                                (_Raising, "failed", "RuntimeError: boom at step")])
def test_divergence_and_failure_are_recorded(tmp_path, monkeypatch, cls, status, text):
    monkeypatch.setitem(METHODS, cls.name, cls)
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method=cls.name, rounds=3, samples=4, steps=10)
    rows = write_cell(spec, tmp_path / "bad.parquet")
    df = pd.read_parquet(tmp_path / "bad.parquet")
    assert len(df) == len(rows) > 0
    assert (df.status == status).all() and df.error.str.contains(text, regex=False).all()
    assert df["round"].max() == 1  # round 0 measured, the sweep stops at the failing round
    assert df.query("round == 0 and metric == 'reward_mean'").value.notna().all()


def test_cell_runs_on_the_test_device(device):
    """Every metric of a subspace cell is computed wherever the samples live (pytest --device cuda)."""
    rows = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, rounds=1,
                             samples=4, steps=10), device)
    assert {r["status"] for r in rows} == {"ok"} and {r["device"] for r in rows} == {device}
    assert {"r_off", "reward_mean"} <= {r["metric"] for r in rows}


def test_oracle_cells_are_identified_by_their_spec_and_record_no_checkpoint():
    from benchmark.cell import Cell

    spec = CellSpec.of(**TINY)
    blob = json.dumps({"spec": spec.identity(), "checkpoint_sha256": None}, sort_keys=True)
    assert Cell(spec).run_id() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    # where the files lie is not the cell; every setting that changes values is
    assert Cell(spec.replace(models_dir="elsewhere")).run_id() == Cell(spec).run_id()
    for change in ({"seed": 1}, {"steps": 3}, {"eta": 0.5}, {"schedule": "linear"}, {"task_seed": 1}):
        assert Cell(spec.replace(**change)).run_id() != Cell(spec).run_id(), change
    rows = run_cell(spec.replace(rounds=0))
    assert {r["checkpoint_sha256"] for r in rows} == {None} and {r["checkpoint_info"] for r in rows} == {None}


def test_digits_cells_hash_every_network_file_they_load(digits_models, tmp_path):
    from benchmark.tasks.digits import MODEL_FILES

    models = tmp_path / "models"
    shutil.copytree(digits_models, models)
    spec = CellSpec.of(task="digits", objective="label", method="cg", denoiser="trained",
                    checkpoint=str(models / MODEL_FILES["denoiser"]), models_dir=str(models))
    cell = Cell(spec)
    assert set(cell.networks) == {"denoiser", "classifier", "noisy_classifier", "evaluator"}
    digests = {k: file_sha256(models / MODEL_FILES[k]) for k in cell.networks}
    lines = "".join(f"{k} {digests[k]}\n" for k in sorted(digests))
    assert cell.checkpoint_sha256() == hashlib.sha256(lines.encode()).hexdigest()
    assert set(json.loads(cell.checkpoint_info())) == set(digests)
    inpaint = CellSpec.of(task="digits", objective="inpaint", method="dps", denoiser="trained",
                          checkpoint=spec.denoiser.source, models_dir=str(models))
    assert set(Cell(inpaint).networks) == {"denoiser", "evaluator"}
    before = cell.run_id()
    evaluator = models / MODEL_FILES["evaluator"]
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(evaluator), "pt") as f:  # any change of a loaded file is another cell
        t, m = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    name = sorted(t)[0]
    save_file(t | {name: t[name] + 1e-6}, str(evaluator), metadata=m)
    assert Cell(spec).run_id() != before


def test_per_sample_values_on_the_reward_and_fidelity_rows():
    rows = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, rounds=1,
                             samples=5, steps=5))
    for r in rows:
        if r["metric"] in ("reward_mean", "r_off"):
            assert len(r["per_sample"]) == 5
            assert sum(r["per_sample"]) / 5 == pytest.approx(r["value"], rel=1e-6)
        else:
            assert r["per_sample"] is None
    # chain i of every method starts from the same noise: round 0 (unguided) agrees chain by chain
    other = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="naive", strength=0.3, rounds=0,
                              samples=5, steps=5))
    per = {(r["round"], r["metric"]): r["per_sample"] for r in rows}
    assert per[(0, "reward_mean")] == next(r["per_sample"] for r in other if r["metric"] == "reward_mean")
    assert to_table(rows).column("per_sample").type == pa.list_(pa.float64())

