"""The cell spec (benchmark/spec.py): one typed spec from config to Parquet, validated in two layers,
the human CLI derived from its fields, hyper-parameters recorded apart from run settings."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from benchmark.cell import run_cell, write_cell
from benchmark.cli import main
from benchmark.report.aggregate import label_results
from benchmark.results import aggregate
from benchmark.schema import json_schema, method_schema
from benchmark.spec import (CellSpec, Denoiser, Rounds, Sampling, cli_fields, flat_names,
                            specs_from_json, specs_to_json)

TINY = dict(task="subspace", objective="quadratic_off", method="mpgd", strength=0.1, rounds=1, samples=4, steps=5)


def test_json_round_trip_and_one_serialised_form():
    spec = CellSpec.of(**TINY, params={"schedule": "sqrt_ab_prev"}, seed=3, eta=0.5)
    text = spec.to_json()
    assert CellSpec.from_json(text) == spec and CellSpec.from_json(text).to_json() == text
    assert json.loads(text)["sampling"] == {"schedule": "cosine", "T": 200, "steps": 5, "eta": 0.5, "clip_x0": False,
                                              "cfg": None}
    assert spec.replace(seed=4).seed == 4 and spec.replace(rounds=0).rounds == Rounds(rounds=0, samples=4)


def test_a_jobs_cells_in_compact_form_round_trip_in_order():
    """A job's command line: one JSON per run of cells equal but for strength and seed, `cells` pairs in their
    place; parsed back, the same specs in the same order (a run broken by another group starts a new JSON)."""
    a, b = CellSpec.of(**TINY), CellSpec.of(**(TINY | {"method": "dps", "strength": 1.0}))
    specs = [a.replace(strength=s, seed=k) for s in (0.1, 0.3) for k in (0, 1, 2)] + [b, b.replace(seed=4)] + [a]
    texts = specs_to_json(specs)
    assert len(texts) == 3 and json.loads(texts[0])["cells"] == [[0.1, 0], [0.1, 1], [0.1, 2], [0.3, 0], [0.3, 1],
                                                                   [0.3, 2]]
    assert "strength" not in json.loads(texts[0]) and "seed" not in json.loads(texts[0])
    back = [s for t in texts for s in specs_from_json(t)]
    assert back == specs and [s.to_json() for s in back] == [s.to_json() for s in specs]
    assert specs_from_json(a.to_json()) == [a]                          # a whole spec is one cell
    assert sum(map(len, texts)) < sum(len(s.to_json()) for s in specs) / 2


@pytest.mark.parametrize("cells, message", [
    ([], r"`cells` must be a non-empty list of \[strength, seed\] pairs"),
    ([[0.1]], r"`cells` must be a non-empty list"),
    ("0.1,0", r"`cells` must be a non-empty list"),
])
def test_compact_form_refuses_malformed_cells(cells, message):
    d = CellSpec.of(**TINY).to_dict()
    del d["strength"], d["seed"]
    with pytest.raises(ValueError, match=message):
        specs_from_json(json.dumps(d | {"cells": cells}))
    with pytest.raises(ValueError, match=r"`cells` must be .* instead of `strength` and `seed`"):
        specs_from_json(json.dumps(d | {"cells": [[0.1, 0]], "seed": 1}))
    # each pair's values are checked like a whole spec's: a string seed, a negative strength
    with pytest.raises(ValueError, match=r"cell spec\.seed: 'x' is not of type 'integer'"):
        specs_from_json(json.dumps(d | {"cells": [[0.1, 0], [0.1, "x"]]}))
    with pytest.raises(ValueError, match="strength"):
        specs_from_json(json.dumps(d | {"cells": [[0.1, 0], [-1.0, 1]]}))


def test_the_cli_runs_a_compact_group_as_its_cells(tmp_path):
    a = CellSpec.of(**TINY)
    specs = [a.replace(strength=s, seed=k) for s in (0.1, 0.3) for k in (0, 1)]
    outs = [tmp_path / f"{i}.parquet" for i in range(4)]
    assert main(["run", "--spec", *specs_to_json(specs), "--out", *map(str, outs)]) == 0
    for spec, out in zip(specs, outs):
        df = pd.read_parquet(out)
        assert set(df.strength) == {spec.strength} and set(df.seed) == {spec.seed}
    assert main(["run", "--spec", *specs_to_json(specs), "--seed", "1", "--out", *map(str, outs)]) == 2


@pytest.mark.parametrize("change, message", [
    (lambda d: d | {"stepz": 3}, r"cell spec: Additional properties are not allowed \('stepz' was unexpected\)"),
    (lambda d: d | {"sampling": d["sampling"] | {"steps": "ten"}}, r"cell spec\.sampling\.steps: 'ten' is not valid"),
    (lambda d: d | {"rounds": d["rounds"] | {"algorithm": "alg3"}}, r"cell spec\.rounds\.algorithm: 'alg3' is not one of"),
    (lambda d: d | {"params": {"schedule": 3}}, r"cell spec\.params\.schedule: 3 is not one of \['rms', 'constant', 'sqrt_ab_prev'\]"),
    (lambda d: d | {"params": {"sigma": 0.1}}, r"cell spec\.params: Additional properties are not allowed \('sigma'"),
    (lambda d: {k: v for k, v in d.items() if k != "method"}, r"cell spec: 'method' is a required property"),
])
def test_structure_layer_names_the_field(change, message):
    data = change(CellSpec.of(**TINY).to_dict())
    with pytest.raises(ValueError, match=message):
        CellSpec.from_dict(data)


@pytest.mark.parametrize("flat, message", [
    ({"strength": -1.0}, "strength must be >= 0"),
    ({"samples": 0}, "samples must be >= 1"),
    ({"eta": 2.0}, r"eta must be in \[0, 1\]"),
    ({"objective": "cube"}, "task 'subspace' has no objective 'cube'"),
    ({"algorithm": "alg2"}, "algorithm 'alg2' fine-tunes the score network; denoiser 'oracle'"),
    # Algorithm 2 fine-tunes on round k's batch for round k + 1, k = finetune_start .. rounds - 1 (TINY: rounds 1)
    ({"algorithm": "alg2", "finetune_start": 1},
     r"^algorithm 'alg2' with finetune_start = 1 and rounds = 1: no round is sampled after the fine-tuning, which "
     r"would be charged and never used; allowed: finetune_start in 0\.\.0 \(0: from the unguided batch, Guo et al.'s "
     r"default\), or rounds > 1$"),
    ({"algorithm": "alg2", "rounds": 0},
     r"^algorithm 'alg2' with finetune_start = 0 and rounds = 0: .*; allowed: rounds > 0$"),
    ({"finetune_start": -1}, r"^finetune_start must be >= 0, got -1$"),
    ({"finetune_steps": 0}, r"^finetune_steps must be >= 1, got 0$"),
    ({"finetune_lr": 0.0}, r"^finetune_lr must be > 0, got 0.0$"),
    ({"denoiser": "trained"}, r"denoiser 'trained' \(loader 'checkpoint'\) needs a source"),
    ({"task": "digits", "objective": "label"}, r"task 'digits' has no exact \(oracle\) denoiser"),
    ({"task_params": {"folder": "x"}}, r"task 'subspace' has no parameter\(s\) \['folder'\]"),
    ({"cfg": -1.0}, r"^cfg must be >= 0, got -1.0$"),
    ({"cfg": 7.5}, r"^sampling.cfg: denoiser 'oracle' \(loader 'oracle'\) has no classifier-free guidance; allowed: "
                   r"null, or a scale for loaders \['diffusers_latent'\]$"),
])
def test_meaning_layer_refuses_impossible_cells(flat, message):
    with pytest.raises(ValueError, match=message):
        CellSpec.of(**(TINY | flat))


def test_cfg_null_keeps_every_other_cells_id_and_one_scale_is_one_json_form():
    """sampling.cfg (the latent loader's guidance scale): null is neutral, so a cell without it keeps its variant;
    one value per experiment (not a sweep axis); 7 and 7.0 are the same setting; non-finite or boolean refused."""
    from dataclasses import fields

    from benchmark.spec import Sampling

    meta = {f.name: f.metadata for f in fields(Sampling)}["cfg"]
    assert not meta.get("axis") and meta["neutral"] is None and meta["minimum"] == 0
    assert "cfg" not in CellSpec.of(**TINY).variant()["sampling"]
    assert Sampling(cfg=7) == Sampling(cfg=7.0) and isinstance(Sampling(cfg=7).cfg, float)
    for bad in (math.inf, math.nan, True, "7.5"):
        with pytest.raises(ValueError, match=r"^cfg must be a finite number >= 0 or null, got "):
            Sampling(cfg=bad)


def test_method_schema_is_generated_from_the_dataclass():
    schema = method_schema("mpgd")
    assert schema["properties"]["schedule"] == {"enum": ["rms", "constant", "sqrt_ab_prev"]}
    assert "strength" not in schema["properties"] and schema["additionalProperties"] is False
    assert set(json_schema()["properties"]) == {f.name for f in dataclasses.fields(CellSpec)}
    assert set(json_schema()["properties"]["sampling"]["properties"]) == {f.name for f in dataclasses.fields(Sampling)}


def test_cli_flags_are_the_spec_fields():
    paths = {path for _, path, _, _ in cli_fields()}
    leaves = {(f.name,) for f in dataclasses.fields(CellSpec) if f.name not in ("denoiser", "sampling", "rounds")}
    for part, cls in (("denoiser", Denoiser), ("sampling", Sampling), ("rounds", Rounds)):
        leaves |= {(part, f.name) for f in dataclasses.fields(cls)}
    assert paths == leaves and set(flat_names().values()) == leaves


def test_cli_fields_and_spec_json_make_the_same_cell(tmp_path):
    spec = CellSpec.of(**TINY, params={"schedule": "sqrt_ab_prev"}, seed=2)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert main(["run", "--spec", spec.to_json(), "--seed", "2", "--out", str(a)]) == 0
    assert main(["run", "--task", "subspace", "--objective", "quadratic_off", "--method", "mpgd", "--strength", "0.1",
                 "--rounds", "1", "--samples", "4", "--steps", "5", "--param", "schedule=sqrt_ab_prev",
                 "--seed", "2", "--out", str(b)]) == 0
    da, db = pd.read_parquet(a), pd.read_parquet(b)
    assert da.run_id.iloc[0] == db.run_id.iloc[0]
    pd.testing.assert_series_equal(da.value, db.value)
    assert main(["run", "--spec", spec.to_json(), "--steps", "7", "--out", str(tmp_path / "c.parquet")]) == 2


def test_hyper_parameters_and_run_settings_are_recorded_apart(tmp_path):
    """MPGD's step rule `schedule` and the noise schedule: no name shadows the other, and the report
    shows MPGD's two step rules as two variants instead of averaging them as seeds."""
    files = []
    for rule in ("constant", "sqrt_ab_prev"):
        for seed in (0, 1):
            out = tmp_path / f"{rule}_{seed}.parquet"
            write_cell(CellSpec.of(**TINY, params={"schedule": rule}, seed=seed, schedule="linear"), out, "cpu")
            files.append(out)
    df = aggregate(files, tmp_path / "all.parquet").to_pandas()
    params = {json.loads(p)["schedule"] for p in df.params_json}
    settings = {json.loads(s)["sampling"]["schedule"] for s in df.settings_json}
    assert params == {"constant", "sqrt_ab_prev"} and settings == {"linear"} and set(df.schedule) == {"linear"}
    labels = label_results(df)
    assert set(labels.method) == {"mpgd schedule=constant", "mpgd schedule=sqrt_ab_prev"}
    assert labels.groupby("method").seed.nunique().tolist() == [2, 2]


def test_run_settings_that_differ_within_a_panel_are_tagged(tmp_path):
    """Two oracle schedules of one method in one panel are two variants (`sampling.schedule=...`)."""
    rows = []
    for schedule in ("cosine", "linear"):
        rows += run_cell(CellSpec.of(**(TINY | {"rounds": 0}), schedule=schedule), "cpu")
    labels = label_results(pd.DataFrame(rows))
    assert set(labels.method) == {"mpgd sampling.schedule=cosine", "mpgd sampling.schedule=linear"}
