"""The workflow's plan (benchmark.plan.workflow_plan): the one function whose results workflow/rules/*.smk wire
into rules, checked on the smoke preset against what its config file says; and the names on disk
(benchmark.paths), each format written once."""

import shlex
from pathlib import Path

import pytest
import yaml

from benchmark import paths
from benchmark.config import ConfigError
from benchmark.plan import workflow_plan
from benchmark.spec import specs_from_json

ROOT = Path(__file__).resolve().parents[1]


def smoke() -> dict:
    return yaml.safe_load((ROOT / "config/smoke.yaml").read_text())


@pytest.fixture(scope="module")
def plan():
    return workflow_plan(smoke())


def test_the_networks_to_pretrain_and_the_longest_path(plan):
    # smoke.yaml: a trained subspace experiment; digits cells load all four of its networks (cg on label:
    # the classifiers; the evaluator scores every digits cell and the denoiser's training report)
    assert plan.pretrain == [("digits", "classifier"), ("digits", "denoiser"), ("digits", "evaluator"),
                             ("digits", "noisy_classifier"), ("subspace", "denoiser")]
    assert plan.pretrain_chain == [("digits", "denoiser"), ("digits", "evaluator")]
    assert plan.chain_files == {"models/smoke/digits_denoiser.safetensors", "models/smoke/digits_evaluator.safetensors"}
    assert plan.pretrain_wildcards() == {"task": "digits|subspace",
                                         "network": "classifier|denoiser|evaluator|noisy_classifier"}
    assert plan.pretrain_wildcards(chain=True) == {"task": "digits", "network": "denoiser|evaluator"}
    assert plan.pretrain_outputs() == {"checkpoint": "models/smoke/{task}_{network}.safetensors",
                                       "report": "models/smoke/{task}_{network}.json"}
    assert plan.pretrain_reports()[-1] == "models/smoke/subspace_denoiser.json"


def test_pretrain_arguments_come_from_the_config_and_name_the_files_needed(plan):
    needs = plan.pretrain_needs("digits", "denoiser")
    assert needs == ["models/smoke/digits_evaluator.safetensors"] and plan.pretrain_needs("digits", "evaluator") == []
    args = shlex.split(plan.pretrain_args("digits", "denoiser", needs))
    assert args[:2] == ["--network", "denoiser"] and args[-2:] == ["--need", "evaluator=" + needs[0]]
    given = dict(zip(args[2:-2:2], args[3:-2:2]))   # pretrain.digits: shared settings, then the denoiser's own
    assert given == {"--schedule": "cosine", "--T": "50", "--seed": "0", "--epochs": "1", "--width": "8",
                     "--quality-samples": "16", "--quality-steps": "5", "--task-seed": "0"}
    sub = shlex.split(plan.pretrain_args("subspace", "denoiser", []))
    assert dict(zip(sub[::2], sub[1::2])) == {"--schedule": "cosine", "--T": "50", "--seed": "0", "--hidden": "64",
                                              "--depth": "2", "--epochs": "1", "--batch-size": "256",
                                              "--lr": "0.002", "--n-train": "4096", "--task-seed": "0"}


def test_every_cell_is_in_exactly_one_job_of_its_stage(plan):
    config = plan.config
    assert config["protocol"]["evaluate"] != "all" and set(plan.jobs) == {"tune", "eval"}
    for stage, cells in (("tune", plan.cells), ("eval", plan.eval_cells)):
        members = [c for job in plan.jobs[stage].values() for c in job]
        assert sorted(members) == sorted(cells)
        assert all(len(job) <= config["group_size"] for job in plan.jobs[stage].values())
    # the evaluation cells: every tuning setting (cell id less `_seed0`) on the evaluation seed 1
    assert sorted(plan.eval_cells) == sorted(c.removesuffix("_seed0") + "_seed1" for c in plan.cells)
    assert plan.select_groups() == {c.removesuffix("_seed0"): cell.group for c, cell in plan.cells.items()}


def test_a_job_rule_writes_its_cells_files_and_loads_their_networks(plan):
    for stage, jobs in plan.jobs.items():
        for number, (job, cells) in enumerate(jobs.items()):
            task = cells[0].split("/")[0]
            assert plan.job_rule(stage, job, number) == f"{stage}_{task}_{number}"
            assert plan.job_outputs(stage, job, "parquet") == [f"results/smoke/cells/{c}.parquet" for c in cells]
            assert plan.job_outputs(stage, job, "png") == ([f"results/smoke/cells/{c}.png" for c in cells]
                                                           if task == "digits" else [])
            assert plan.job_log(stage, job, "cells") == f"logs/cells/{job}_{stage}.log"
            inputs = plan.job_inputs(stage, job)
            if task == "digits":   # every digits cell loads the denoiser and the evaluator (its metrics)
                assert {"models/smoke/digits_denoiser.safetensors", "models/smoke/digits_evaluator.safetensors"} \
                    <= set(inputs)
                assert plan.priorities[stage][job] >= 2   # the longest path starts first
            else:
                assert plan.priorities[stage][job] < 2
            args = shlex.split(plan.job_args(stage, job))
            assert args[0] == "--spec" and args[-2:] == ["--checkpoint-every", str(plan.config["checkpoint_every"])]
            outs = args[args.index("--out") + 1:-2]
            assert outs == plan.job_outputs(stage, job, "parquet")
            specs = [s for blob in args[1:args.index("--out")] for s in specs_from_json(blob)]
            cells_of_stage = plan.cells if stage == "tune" else plan.eval_cells
            assert specs == [cells_of_stage[c].spec for c in cells]


def test_the_tuning_files_and_the_chosen_settings_evaluation_files(plan, monkeypatch):
    import benchmark.report.verdict as verdict

    assert plan.tuning_files() == [f"results/smoke/cells/{c}.parquet" for c in plan.cells]
    assert plan.tuning_galleries() == [f"results/smoke/cells/{c}.png" for c in plan.cells if c.startswith("digits/")]
    settings = sorted(c.removesuffix("_seed0") for c in plan.cells)
    chosen = [settings[0], settings[-1]]   # a digits and a subspace setting
    assert chosen[0].startswith("digits/") and chosen[1].startswith("subspace/")
    monkeypatch.setattr(verdict, "chosen_jobs", lambda folder: chosen)
    assert plan.evaluation_files("results/smoke/selected") == [f"results/smoke/cells/{j}_seed1.parquet" for j in chosen]
    assert plan.evaluation_galleries("results/smoke/selected") == [f"results/smoke/cells/{chosen[0]}_seed1.png"]


def test_the_plan_fills_in_the_config_as_snakemake_holds_it():
    config = smoke()
    config["experiments"]["oracle"]["samples"] = "8e0"        # YAML 1.2's number, a string to PyYAML
    assert "group_size" not in config
    plan = workflow_plan(config)
    assert config["experiments"]["oracle"]["samples"] == 8 and config["group_size"] >= 1   # the schema's default
    assert plan.config is config


def test_a_config_that_cannot_run_is_refused_naming_the_key():
    config = smoke()
    config["experiments"]["oracle"]["methods"]["naive"]["strenghts"] = [1.0]
    with pytest.raises(ConfigError, match="strenghts"):
        workflow_plan(config)


def test_a_job_command_over_the_system_limit_is_refused_naming_group_size():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config |= {"experiments": {"tf": config["experiments"]["training_free_oracle"]}, "group_size": 1000,
               "results_dir": "/".join(["r" * 200] * 4)}   # 900 bytes a cell path
    with pytest.raises(ConfigError, match=r"^group_size: \d+ cell job\(s\) have a command line over 120000 bytes"):
        workflow_plan(config)


def test_the_names_on_disk():
    variant = paths.variant_path("subspace", "trained.epochs=50", "negnorm_ones", "gloss", "alg1", "0123abcd")
    setting = paths.setting_name(0.2, [("sigma", 0.5), ("mode", "x")], 20)
    cell = paths.cell_id(variant, setting, 3)
    assert cell == "subspace/trained.epochs=50/negnorm_ones/gloss/alg1/v0123abcd/s0.2_sigma=0.5_mode=x_n20_seed3"
    assert paths.setting_name(1.0, [], None) == "s1.0_nall"
    assert paths.group_id(variant, None) == "subspace/trained.epochs=50/negnorm_ones/gloss/alg1/v0123abcd/nall"
    assert paths.job_key(cell) == cell[:-len("_seed3")]
    with pytest.raises(ValueError, match="not a cell id"):
        paths.job_key("subspace/oracle/x")
    assert paths.job_key("good", strict=False) == "" and paths.job_key("a_seedx", strict=False) == "a"
    assert paths.cell_file("results", cell, "png") == f"results/cells/{cell}.png"
    assert paths.checkpoint_file("models", "digits", "noisy_classifier") == "models/digits_noisy_classifier.safetensors"
    assert paths.report_file("m", "subspace", "denoiser.epochs=50") == "m/subspace_denoiser.epochs=50.json"
    assert paths.task_of_checkpoint("my_task_denoiser.safetensors", "denoiser") == "my_task"
    assert paths.task_of_checkpoint("_denoiser.safetensors", "denoiser") is None
    assert paths.task_of_checkpoint("x.safetensors", "denoiser") is None
