"""One declaration per setting (benchmark.schema, issue 23): the spec's fields generate the config's experiment
run settings (schema block and README table, kept current), every default shared by config, spec and CLI
agrees, the sweep maps config to spec by name, and the cell id's variant hash comes from the spec."""

import argparse
import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from benchmark import schema
from benchmark.config import ConfigError, validate_config
from benchmark.spec import CellSpec, Rounds, Sampling, add_spec_arguments
from benchmark.sweep import cells_from_config

ROOT = Path(__file__).resolve().parents[1]


def _load(name="smoke.yaml"):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_config(config)
    return config


def _literal(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def test_generated_parts_are_current():
    """workflow/schemas/config.schema.yaml and config/README.md hold what `python -m benchmark schema --write`
    writes: a field added to the spec without rerunning it fails here."""
    assert schema.stale() == [], "run `python -m benchmark schema --write`"
    text = schema.SCHEMA_FILE.read_text()
    props, _ = schema.experiment_properties(text)
    assert {k: props[k] for k in schema.run_settings()} == schema.experiment_schema()
    readme = schema.README_FILE.read_text()
    for key, (_, f, _) in schema.run_settings().items():  # a row per run setting: its default, its field's help
        row = re.search(rf"^\| `{key}` \| `([^`]+)` \| (.*) \|$", readme, re.M)
        assert row and f.metadata["help"].replace("|", "\\|") in row.group(2), key
        assert _literal(row.group(1)) == f.default, key


def test_run_settings_are_the_spec_parts_fields():
    keys = set(schema.run_settings())
    assert keys == {"steps", "eta", "clip_x0", "cfg", "rounds", "samples", "algorithm", "linearise", "finetune_start",
                    "finetune_lr", "finetune_steps"}
    generated = schema.experiment_schema()
    assert generated["eta"] == {"type": "number", "minimum": 0, "maximum": 1, "default": 1.0,
                                     "description": generated["eta"]["description"]}
    assert generated["linearise"]["enum"] == ["per_sample", "batch_mean"]
    for axis in ("steps", "algorithm"):  # a list is a sweep axis
        assert any(b.get("type") == "array" for b in generated[axis]["oneOf"])


def _cli_defaults() -> dict:
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    return {a.dest.split("__")[-1]: a.default for a in parser._actions if a.dest.startswith("spec__")}


def test_every_shared_default_agrees():
    """Each default that config, spec and CLI share: the schema's (what Snakemake fills in), the spec field's
    and the `run` option's; the pre-training epochs of `python -m benchmark pretrain` and of the workflow."""
    props, _ = schema.experiment_properties(schema.SCHEMA_FILE.read_text())
    cli = _cli_defaults()
    for key, (path, f, _) in schema.run_settings().items():
        assert props[key]["default"] == f.default == cli[key], key
    assert Rounds().rounds == props["rounds"]["default"] == 50
    top = yaml.safe_load(schema.SCHEMA_FILE.read_text())["properties"]
    assert top["task_seed"]["default"] == CellSpec.__dataclass_fields__["task_seed"].default == cli["task_seed"] == 0
    # a config that leaves every run setting out makes the cells of the spec's defaults
    config = _load()
    for exp in config["experiments"].values():
        for key in schema.run_settings():
            exp.pop(key, None)
    config["experiments"] = {"oracle": config["experiments"]["oracle"]}
    validate_config(config)
    for cell in cells_from_config(config).values():
        assert (cell.spec.sampling, cell.spec.rounds) == (Sampling(), Rounds())


def test_pretrain_defaults_have_one_owner(monkeypatch, tmp_path):
    """`python -m benchmark pretrain --task subspace` trains with the declaration's settings, as the workflow does
    (benchmark.pretraining.network_settings): 10 epochs, not the trainer's own 20."""
    from benchmark.cli import main
    from benchmark.pretraining import pretrain_cli, task_networks
    from benchmark.tasks import task_class

    config = {"pretrain": {"subspace": {}}}
    args = pretrain_cli(config, "subspace")
    workflow = dict(zip(args[::2], args[1::2]))
    assert workflow["--epochs"] == "10"
    seen = {}

    def trainer(task, network, settings, **kw):
        seen.update(settings)
        raise SystemExit(0)

    net = task_networks("subspace")["denoiser"]
    monkeypatch.setattr(task_class("subspace"), "networks", {"denoiser": dataclasses.replace(net, trainer=trainer)})
    with pytest.raises(SystemExit):
        main(["pretrain", "--task", "subspace", "--out", str(tmp_path / "x.safetensors")])
    assert {f"--{k.replace('_', '-')}": str(v) for k, v in seen.items()} == {
        k: v for k, v in workflow.items() if k != "--task-seed"}


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_eta_has_one_range(value):
    config = _load()
    config["experiments"]["oracle"]["eta"] = value
    with pytest.raises(ConfigError, match=r"^experiments\.oracle\.eta: "):
        validate_config(config)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        Sampling(eta=value)


def _other(key: str):
    """A value of run setting `key` other than its default, within its schema (a new setting needs no line here)."""
    gen = schema.experiment_schema()[key]
    value = next((b for b in gen.get("oneOf", [gen]) if b.get("type") != "null"), gen)
    default = gen["default"]
    if "enum" in value:
        return next(v for v in value["enum"] if v != default)
    if value["type"] == "boolean":
        return not default
    if value["type"] == "integer":
        return value.get("minimum", 0) if default is None else default + 1
    return default / 2 if default else min(0.5, value.get("maximum", 0.5))


def test_every_run_setting_reaches_the_cells_by_name():
    """No key is dropped on the way: each run setting the experiment gives is the cells' spec field."""
    other = {key: _other(key) for key in schema.run_settings()}
    assert other["algorithm"] == "alg2" and other["clip_x0"] is True and other["eta"] == 0.5 and other["cfg"] == 0.5
    # cfg needs a text-conditional denoiser (the latent preset's); every other setting goes on a task with a data
    # range and a trainable network (digits)
    latent = _load("sd15_reward.yaml")
    config = _load()
    config["experiments"] = {"digits": config["experiments"]["digits_label"]}
    config["experiments"]["digits"].update({k: v for k, v in other.items() if k != "cfg"})
    for name, cfg, keys in ((None, config, set(other) - {"cfg"}), ("sd15_aesthetic", latent, {"cfg", "steps", "eta"})):
        if name:
            cfg["experiments"][name].update({k: other[k] for k in keys})
        validate_config(cfg)
        cells = cells_from_config(cfg)
        assert cells
        for cell in cells.values():
            for key in keys:
                path = schema.run_settings()[key][0]
                assert getattr(getattr(cell.spec, path[0]), path[1]) == other[key], key


def _ids(config):
    validate_config(config)
    return {c for c in cells_from_config(config)}


def test_the_variant_hash_is_the_specs_identity():
    """Every run setting outside the path changes the ids of the cells it applies to, and nothing else: the
    fine-tuning settings only Algorithm 2's cells; ids are deterministic."""
    config = _load()
    before = _ids(copy.deepcopy(config))
    assert before == _ids(copy.deepcopy(config))
    for key, value in [("eta", 0.5), ("rounds", 3), ("samples", 5), ("linearise", "batch_mean")]:
        changed = copy.deepcopy(config)
        changed["experiments"]["oracle"][key] = value
        ids = _ids(changed)
        oracle = {c for c in before if c.startswith("subspace/oracle/")}
        assert oracle and oracle.isdisjoint(ids) and before - oracle <= ids, key
    changed = copy.deepcopy(config)
    changed["experiments"]["trained"]["finetune_lr"] = 1e-4       # smoke's trained: alg1 and alg2
    ids = _ids(changed)
    alg2 = {c for c in before if "/alg2/" in c}
    assert alg2 and alg2.isdisjoint(ids) and before - alg2 == ids - {c for c in ids if "/alg2/" in c}
    spec = next(cells_from_config(config).values().__iter__()).spec
    assert "clip_x0" not in spec.variant()["sampling"]                  # its neutral value: left out
    assert {"task", "objective", "method", "strength", "seed", "models_dir"}.isdisjoint(spec.variant())
    assert set(spec.variant()["rounds"]) == {"rounds", "samples", "linearise"}   # Algorithm 1: no fine-tuning
