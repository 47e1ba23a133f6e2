"""benchmark/sweep.py: a config into its cells. The presets are valid; every setting of every grid once per
tuning seed, a cell two experiments share computed once; settings reach the cells' specs; a bad config stops
Snakemake before any job. The helpers `load` and SCHEMA are shared with the config tests (tests/test_config*.py,
tests/test_jobs.py, ...)."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from benchmark.spec import CellSpec
from benchmark.config import ConfigError
from benchmark.paths import CELL_ID_PATTERN, job_key
from benchmark.sweep import cells_from_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def load(name="config.yaml"):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(config, SCHEMA)
    return config


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml", "score_axis.yaml", "ddpm_cifar10.yaml",
                                  "sd15_reward.yaml", "sd35_reward.yaml"])
def test_presets_are_valid(name):
    cells = cells_from_config(load(name))
    assert cells
    assert all(re.fullmatch(CELL_ID_PATTERN, c) for c in cells)


def as_list(v):
    return list(v) if isinstance(v, list) else [v]


def _settings(m: dict) -> int:
    from benchmark.config import method_grid, method_variants

    return len(method_grid(m)) * len(method_variants(m))


def test_default_sweep_table():
    """Every setting of every grid once per tuning seed; evaluation seeds make no tuning cells."""
    config = load()
    cells = cells_from_config(config)
    n = 0
    for exp in config["experiments"].values():
        axes = len(as_list(exp.get("steps"))) * len(as_list(exp.get("algorithm", "alg1")))
        for obj in exp["objectives"]:
            n += sum(_settings(m) for m in exp["methods"].values()
                     if obj in m.get("objectives", exp["objectives"])) * len(config["seeds"]["tuning"]) * axes
    # cells that two experiments ask for are one cell: compute_axis shares nothing (10, 25 steps) with
    # training_free_oracle (50 steps), so none are shared in the default
    assert n == len(cells) and len(cells) == len(set(cells))
    assert {c.spec.seed for c in cells.values()} == set(config["seeds"]["tuning"])
    gloss = [(k, c) for k, c in cells.items() if c.spec.method == "gloss" and c.experiment == "subspace_oracle"
             and c.spec.objective == "quadratic_off" and c.spec.strength == 0.2]
    assert len(gloss) == 1
    key, c = gloss[0]
    assert re.fullmatch(r"subspace/oracle/quadratic_off/gloss/alg1/v[0-9a-f]{8}/s0\.2_n100_seed0", key)
    assert c.group == key.rpartition("/")[0] + "/n100"
    s = c.spec
    assert (s.task, s.method, s.strength, s.seed, s.denoiser.name) == ("subspace", "gloss", 0.2, 0, "oracle")
    assert (s.objective, s.sampling.steps, s.rounds.rounds) == ("quadratic_off", 100, 20)
    # the job receives the spec serialised once and parses it back to the same spec
    assert CellSpec.from_json(s.to_json()) == s


def test_evaluation_cells_are_the_chosen_jobs_on_the_evaluation_seeds():
    from benchmark.sweep import evaluation_cells

    config = load("smoke.yaml")
    cells = cells_from_config(config)
    job = job_key(next(iter(cells)))
    ev = evaluation_cells(cells, [job], [7, 8])
    assert list(ev) == [f"{job}_seed7", f"{job}_seed8"]
    assert [c.spec.seed for c in ev.values()] == [7, 8]
    assert ev[f"{job}_seed7"].spec == cells[f"{job}_seed0"].spec.replace(seed=7)
    with pytest.raises(ValueError, match="not tuning jobs of this config"):
        evaluation_cells(cells, ["subspace/oracle/nothing/s1.0_n20"], [7])


def test_a_cell_two_experiments_share_is_one_cell():
    """The same cell asked for twice (another experiment name, same settings) is computed once; a
    different checkpoint configuration is a different cell."""
    config = load("smoke.yaml")
    before = cells_from_config(config)
    config["experiments"]["oracle_again"] = copy.deepcopy(config["experiments"]["oracle"])
    after = cells_from_config(config)
    assert list(after) == list(before)
    config = load("smoke.yaml")
    config["experiments"]["trained_again"] = copy.deepcopy(config["experiments"]["trained"])
    config["experiments"]["trained_again"]["rounds"] = 3          # not the same cell
    assert len(cells_from_config(config)) == len(before) + 2
    config = load("smoke.yaml")
    ids = set(cells_from_config(config))
    config["pretrain"]["subspace"]["epochs"] = 2                  # another checkpoint: other cells
    changed = set(cells_from_config(config))
    trained = {c for c in ids if c.startswith("subspace/trained/")}
    assert trained and not (trained & changed) and (ids - trained) <= changed


def test_grid_and_variants():
    config = load("smoke.yaml")
    config["experiments"]["oracle"]["methods"]["tfg"] = {"strengths": [0.1], "grid": {"mu": [0.0, 0.5]},
                                                         "variants": {"n_s": [1, 2]}}
    cells = cells_from_config(config)
    tfg = {k: c for k, c in cells.items() if c.spec.method == "tfg"}
    assert len(tfg) == 4 and {c.tuned for c in tfg.values()} == {("mu",)}
    assert len({c.group for c in tfg.values()}) == 2                 # n_s: two variants, mu: tuned within each
    assert any("_mu=0.5_" in k for k in tfg)
    config["protocol"]["budget"] = 3
    with pytest.raises(ConfigError, match=r"experiments.oracle.methods.tfg: 2 settings .* protocol.budget is 3"):
        cells_from_config(config)
    config["protocol"]["budget"] = None
    config["experiments"]["oracle"]["methods"]["tfg"]["grid"] = {"mu": [-1.0]}
    with pytest.raises(ConfigError, match=r"experiments.oracle.methods.tfg.grid: .*mu"):
        cells_from_config(config)


def test_extra_axes_fan_out():
    config = load("smoke.yaml")
    config["experiments"]["oracle"]["steps"] = [10, 20]
    cells = cells_from_config(config)
    assert {c.spec.sampling.steps for c in cells.values() if c.experiment == "oracle"} == {10, 20}
    assert sum(c.spec.rounds.algorithm == "alg2" for c in cells.values()) == 1


def test_snakemake_stops_before_any_job(tmp_path):
    """A bad config fails at DAG build time: no job runs, the message names the key."""
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["experiments"]["oracle"]["methods"]["glos"] = {"strengths": [0.1]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "experiments.oracle.methods.glos: unknown method 'glos'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_task_seed_and_exact_strengths_reach_the_cells():
    config = load()
    config["task_seed"] = 3
    config["experiments"]["subspace_oracle"]["methods"]["gloss"]["strengths"] = [0.1234561, 0.1234562, 0.1]
    cells = cells_from_config(config)
    gloss = [c for k, c in cells.items() if c.spec.method == "gloss" and c.experiment == "subspace_oracle"]
    assert sorted({c.spec.strength for c in gloss}) == [0.1, 0.1234561, 0.1234562]  # no two cells share a file
    assert all(c.spec.task_seed == 3 for c in cells.values())
    config["experiments"]["subspace_oracle"]["methods"]["gloss"]["strengths"] = [0.2, 0.2, 0.1]
    with pytest.raises(ConfigError, match="methods.gloss.strengths: setting 's0.2' appears twice"):
        cells_from_config(config)


def test_digits_cells_get_models_dir_and_objective_params():
    config = load("smoke.yaml")
    config["models_dir"] = "elsewhere/models"
    cells = cells_from_config(config)
    (label,) = [c.spec for c in cells.values() if c.spec.method == "cg"]
    assert label.models_dir == "elsewhere/models" and label.objective_params == {"target": 3}
    assert label.denoiser.source == "elsewhere/models/digits_denoiser.safetensors"
    (inpaint,) = [c.spec for c in cells.values() if c.spec.objective == "inpaint"]
    assert inpaint.objective_params == {"sigma_y": 0.1}
    for c in cells.values():
        assert (c.spec.models_dir is not None) == (c.spec.task == "digits")
        assert bool(c.spec.objective_params) == (c.spec.task == "digits")


def test_methods_run_on_their_objectives_only():
    config = load()
    exp = config["experiments"]["digits"]
    cells = cells_from_config(config)
    digits = [c for c in cells.values() if c.experiment == "digits"]
    assert {c.spec.objective for c in digits if c.spec.method == "cg"} == {"label"}
    assert {c.spec.objective for c in digits if c.spec.method == "none"} == set(exp["objectives"])


def test_declared_capabilities_match_the_objectives():
    """The sweep's knowledge (Task.noisy_log_prob_objectives, Method.uses_noisy_log_prob) is what the
    objectives and methods do."""
    from benchmark.methods import METHODS, make_method
    from benchmark.objectives import FeatureReward, Inpaint, Label, SuperRes
    from benchmark.tasks import TASKS

    assert [m for m in METHODS if make_method(m).uses_noisy_log_prob] == ["cg"]
    assert make_method("bon", 1.0, proposal="cg").uses_noisy_log_prob
    assert TASKS["digits"].noisy_log_prob_objectives == ("label",)
    assert hasattr(Label, "noisy_log_prob")
    assert not any(hasattr(cls, "noisy_log_prob") for cls in (Inpaint, SuperRes, FeatureReward))
    assert all(not TASKS[t].noisy_log_prob_objectives for t in ("subspace", "sphere"))


def test_check_config_names_file_and_line(tmp_path, capsys):
    from benchmark.cli import main

    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "config/smoke.yaml").read_text().replace("lr: 0.002", "lr: 2e-3"))
    assert main(["check-config", str(good)]) == 0
    assert f"{good}: ok, " in capsys.readouterr().err
    lines = (ROOT / "config/smoke.yaml").read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("seeds:"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines[:i] + ["seeds: {tuning: [0], evaluation: [1}"] + lines[i + 1:]))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.match(rf"error: {re.escape(str(bad))}:{i + 1}:\d+: YAML syntax error: ", err), err
    twice = tmp_path / "twice.yaml"
    j = next(n for n, line in enumerate(lines) if "naive: {strengths" in line)
    twice.write_text("\n".join(lines[:j + 1] + [lines[j].replace("0.9", "0.1")] + lines[j + 1:]))
    assert main(["check-config", str(twice)]) == 2
    duplicate = f"{twice}:{j + 2}:7: YAML syntax error: duplicate key 'naive' (first at line {j + 1})"
    assert duplicate in capsys.readouterr().err
    nan = tmp_path / "nan.yaml"
    nan.write_text((ROOT / "config/smoke.yaml").read_text().replace("steps: 20", "steps: 20\n    eta: .nan"))
    assert main(["check-config", str(nan)]) == 2
    assert "experiments.oracle.eta: nan is not a finite number" in capsys.readouterr().err


def _snakemake_dry_run(tmp_path, config_text, *args):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text)
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(cfg), *args],
                          capture_output=True, text=True)


def test_a_million_cells_stop_at_dag_build_and_yaml_1_2_numbers_pass(tmp_path):
    """Through Snakemake: `1e-3`-style numbers reach the size guard as numbers (else the schema would
    stop first), and 10^6 cells stop with the limit's message before any cell is made."""
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["experiments"] = {"oracle": config["experiments"]["oracle"]}
    config["seeds"] = {"tuning": list(range(1000)), "evaluation": [1000]}
    text = re.sub(r"^( *)- 0.9\n", lambda m: "".join(f"{m.group(1)}- {i}e-3\n" for i in range(1, 1001)),
                  yaml.safe_dump(config), count=1, flags=re.M)
    assert yaml.safe_load(text)["experiments"]["oracle"]["methods"]["naive"]["strengths"][:2] == ["1e-3", "2e-3"]
    proc = _snakemake_dry_run(tmp_path, text)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"max_cells: the sweep asks for 1,00\d,\d\d\d cells", out), out[-2000:]
    assert "--config max_cells=" in out
    assert not (tmp_path / "results").exists()


