"""The config schema + semantic checks: a malformed config stops before any job, naming the key."""

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
from benchmark.jobs import jobs_from_cells
from benchmark.paths import CELL_ID_PATTERN, job_key
from benchmark.sweep import cells_from_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def load(name="config.yaml"):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(config, SCHEMA)
    return config


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml", "score_axis.yaml", "ddpm_cifar10.yaml"])
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


def test_jobs_group_the_seeds_of_a_cell():
    config = load()
    config["seeds"]["tuning"] = [0, 5]
    cells = cells_from_config(config)
    jobs = jobs_from_cells(cells)
    assert len(jobs) * 2 == len(cells)
    for key, members in jobs.items():
        assert [cells[m].spec.seed for m in members] == [0, 5]
        assert all(cells[m].spec.replace(seed=0) == cells[members[0]].spec for m in members)
        assert all(job_key(m) == key for m in members)
    with pytest.raises(ValueError, match="not a cell id"):
        job_key("subspace/oracle/x")


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


@pytest.mark.parametrize("seeds, pattern", [
    ([0, 1], r"seeds: give the two disjoint sets"),
    ({"tuning": [0, 1], "evaluation": [1, 2]}, r"seeds: \[1\] are both tuning and evaluation seeds"),
])
def test_protocol_seeds(seeds, pattern):
    config = load("smoke.yaml")
    config["seeds"] = seeds
    with pytest.raises(ConfigError, match=pattern):
        cells_from_config(config)


def test_extra_axes_fan_out():
    config = load("smoke.yaml")
    config["experiments"]["oracle"]["steps"] = [10, 20]
    cells = cells_from_config(config)
    assert {c.spec.sampling.steps for c in cells.values() if c.experiment == "oracle"} == {10, 20}
    assert sum(c.spec.rounds.algorithm == "alg2" for c in cells.values()) == 1


def _mutate(path, value):
    def f(config):
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return f


_DELETE = object()
BAD = [
    # (mutation, exception, pattern the message must contain)
    (_mutate(["experiments", "subspace_oracle", "methods", "glos"], {"strengths": [0.1]}), ConfigError,
     r"experiments.subspace_oracle.methods.glos: unknown method 'glos'; allowed: \['bon', 'cg', 'daps', 'ddnm', 'diffpir', 'dps', "),
    (_mutate(["seedz"], [0]), Exception, r"Additional properties are not allowed \('seedz' was unexpected\)"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "strengths"], ["strong"]), Exception,
     r"'strong' is not of type 'number'"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "strengths"], []), Exception,
     r"\[\] should be non-empty|is too short"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "strengths"], [-0.1]), Exception,
     r"-0.1 is less than the minimum of 0"),
    (_mutate(["seeds", "tuning"], []), Exception, r"should be non-empty|is too short"),
    (_mutate(["experiments", "subspace_oracle", "objectives"], ["quadratic"]), ConfigError,
     r"experiments.subspace_oracle.objectives: task 'subspace' has no objective 'quadratic'; allowed:"),
    (_mutate(["experiments", "subspace_oracle", "task"], "cube"), ConfigError,
     r"experiments.subspace_oracle.task: unknown task 'cube'; allowed: \['digits', 'images', 'latent', 'mixture', 'sphere', 'subspace'\]"),
    (_mutate(["experiments", "sphere", "denoiser"], "oracle"), ConfigError,
     r"experiments.sphere.denoiser: task 'sphere' has no oracle denoiser"),
    (_mutate(["experiments", "subspace_oracle", "algorithm"], "alg2"), ConfigError,
     r"'alg2' fine-tunes the network; needs denoiser 'trained'"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "params"], {"sgima": 0.1}), ConfigError,
     r"methods.gloss.params: method 'gloss' has no parameter\(s\) \['sgima'\]; allowed: \['sigma'\]"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "params"], {"sigma": "big"}), ConfigError,
     r"methods.gloss.params.sigma: method 'gloss': parameter sigma must be float, got 'big'"),
    (_mutate(["experiments", "subspace_oracle", "methods", "gloss", "params"], {"sigma": 0.0}), ConfigError,
     r"experiments.subspace_oracle.methods.gloss: method 'gloss': sigma must be > 0"),
    (_mutate(["experiments", "subspace_oracle", "methods", "none", "strengths"], [0.5]), ConfigError,
     r"'none' has no strength"),
    (_mutate(["experiments", "subspace_oracle", "steps"], 500), ConfigError,
     r"experiments.subspace_oracle.steps: 500 out of range; allowed: 1..200"),
    (_mutate(["experiments", "../escape"], {"task": "subspace", "denoiser": "oracle", "objectives": ["quadratic_on"],
                                             "methods": {"none": {"strengths": [0]}}}), Exception,
     r"does not match"),
    (_mutate(["experiments", "a/b"], {"task": "subspace", "denoiser": "oracle", "objectives": ["quadratic_on"],
                                       "methods": {"none": {"strengths": [0]}}}), Exception, r"does not match"),
    (_mutate(["experiments", "subspace_oracle", "denoiser"], _DELETE), Exception, r"'denoiser' is a required property"),
    (_mutate(["experiments", "subspace_trained", "rounds"], "many"), Exception, r"'many' is not of type 'integer'"),
    (_mutate(["experiments", "subspace_trained", "finetune_start"], -1), Exception, r"-1 is less than the minimum of 0"),
    # digits: per-network pre-training, objective parameters, methods restricted to some objectives
    (_mutate(["experiments", "digits", "objective_params"], {"traget": 3}), ConfigError,
     r"experiments.digits.objective_params: objective 'label' of task 'digits' has no parameter 'traget'; "
     r"allowed: \['target'\]"),
    (_mutate(["experiments", "digits", "objective_params"], {"target": 3}), ConfigError,
     r"objective 'inpaint' of task 'digits' has no parameter 'target'; allowed: \['image', 'mask', 'sigma_y'\] "
     r"\(the parameters reach every objective of the experiment"),
    (_mutate(["experiments", "subspace_oracle", "objective_params"], {"target": 3}), ConfigError,
     r"objective 'quadratic_off' of task 'subspace' has no parameter 'target'; allowed: none"),
    (_mutate(["experiments", "digits", "objective_params"], {"target": [1, 2]}), Exception,
     r"\[1, 2\] is not of type 'string', 'number', 'boolean'"),
    (_mutate(["experiments", "digits", "objective_params"], {"../x": 1}), Exception, r"does not match"),
    (_mutate(["experiments", "digits", "methods", "cg", "objectives"], ["superres"]), ConfigError,
     r"experiments.digits.methods.cg.objectives: 'superres' is not an objective of the experiment; "
     r"allowed: \['label', 'inpaint'\]"),
    (_mutate(["experiments", "digits", "methods", "cg", "objectives"], []), Exception, r"should be non-empty|is too short"),
    (_mutate(["pretrain", "digits", "evaluator", "epoch"], 3), Exception,
     r"Additional properties are not allowed \('epoch' was unexpected\)"),
    (_mutate(["pretrain", "digits", "denoiser", "width"], 0), Exception, r"0 is less than the minimum of 1"),
    (_mutate(["pretrain", "digits", "hidden"], 256), Exception,
     r"Additional properties are not allowed \('hidden' was unexpected\)"),
    (_mutate(["pretrain", "digits", "schedule"], "cubic"), Exception, r"'cubic' is not one of \['cosine', 'linear'\]"),
    (_mutate(["pretrain", "subspace", "width"], 32), Exception,
     r"Additional properties are not allowed \('width' was unexpected\)"),
    (_mutate(["experiments", "digits", "denoiser"], "oracle"), ConfigError,
     r"experiments.digits.denoiser: task 'digits' has no oracle denoiser"),
    (_mutate(["experiments", "digits", "steps"], 500), ConfigError,
     r"experiments.digits.steps: 500 out of range; allowed: 1..200"),
]


@pytest.mark.parametrize("mutate, exc, pattern", BAD)
def test_malformed_config_is_rejected_with_a_clear_message(mutate, exc, pattern):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    mutate(config)
    with pytest.raises(exc) as info:
        validate(config, SCHEMA)
        cells_from_config(config)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_trained_needs_pretrain_section():
    config = load()
    del config["pretrain"]["sphere"]
    with pytest.raises(ConfigError, match="experiments.sphere.denoiser: 'trained' needs a pretrain.sphere section"):
        cells_from_config(config)


@pytest.mark.parametrize("path, ok", [
    ("subspace/oracle/exp/quadratic_off/gloss/alg1/s0.2_nall", True), ("a/b.c/d_e+f=g-h", True),
    ("../x", False), ("a/../b", False), ("a/..", False), (".hidden/x", False), ("a/.x", False), ("/abs/x", False),
    ("a//b", False), ("-rf/x", False), ("a/-x", False), ("a b", False), ("a/b\\c", False),
])
def test_cell_wildcard_constraint(path, ok):
    """What a cell id may be (every id the sweep makes matches it, test above): a path that cannot leave the
    results folder; a requested path outside it never matches."""
    assert bool(re.fullmatch(CELL_ID_PATTERN, path)) is ok
    # As Snakemake embeds it: inside the output pattern, after a '/'.
    embedded = re.compile(rf"results/cells/(?P<task>subspace)/(?P<den>oracle)/(?P<cell>{CELL_ID_PATTERN})_seed0\.parquet$")
    assert bool(embedded.match(f"results/cells/subspace/oracle/{path}_seed0.parquet")) is ok


def test_unsafe_objective_names_cannot_escape_results(tmp_path):
    from benchmark.config import safe_name

    for bad in ("../x", "/etc", "..", ".hidden", "a/b", "-rf"):
        with pytest.raises(ConfigError, match="cannot be part of a file name"):
            safe_name("key", bad)


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


def test_config_values_reach_the_cli_as_it_parses_them():
    from benchmark.spec import _parse_value
    from benchmark.paths import cli_value

    for value in (True, False, 3, 0.05, 1e-06, "all", "centre"):
        assert _parse_value(cli_value(value)) == value
    config = load("smoke.yaml")
    config["experiments"]["oracle"]["methods"]["gloss"]["params"] = {"sigma": 0.1}
    config["experiments"]["digits_label"]["objective_params"] = {"target": "all"}
    cells = cells_from_config(config)
    (gloss,) = [c.spec for c in cells.values() if c.spec.method == "gloss" and c.spec.denoiser.name == "oracle"]
    (cg,) = [c.spec for c in cells.values() if c.spec.method == "cg"]
    assert gloss.params == {"sigma": 0.1} and cg.objective_params == {"target": "all"}
    assert CellSpec.from_json(gloss.to_json()).params == {"sigma": 0.1}


def test_pretrain_cli_per_network():
    from benchmark.pretraining import pretrain_cli, task_networks

    config = load("smoke.yaml")
    config["task_seed"] = 2
    config["pretrain"]["digits"]["classifier"] = {"epochs": 3, "lr": 0.01, "batch_size": None}

    def flags(args):
        return dict(zip(args[::2], args[1::2]))

    denoiser = flags(pretrain_cli(config, "digits", "denoiser"))
    assert denoiser == {"--network": "denoiser", "--seed": "0", "--task-seed": "2", "--schedule": "cosine", "--T": "50",
                        "--epochs": "1", "--width": "8", "--quality-samples": "16", "--quality-steps": "5"}
    classifier = flags(pretrain_cli(config, "digits", "classifier"))
    assert classifier == {"--network": "classifier", "--seed": "0", "--task-seed": "2", "--epochs": "3", "--lr": "0.01"}
    # classifier guidance checks that the noisy classifier shares the denoiser's schedule
    noisy = flags(pretrain_cli(config, "digits", "noisy_classifier"))
    assert (noisy["--schedule"], noisy["--T"]) == (denoiser["--schedule"], denoiser["--T"])
    assert "--schedule" not in flags(pretrain_cli(config, "digits", "evaluator"))
    with pytest.raises(ConfigError, match=r"pretrain.digits: no network 'unet'; allowed: \['denoiser', "):
        pretrain_cli(config, "digits", "unet")
    with pytest.raises(ConfigError, match=r"pretrain.subspace: task 'subspace' has one network; allowed: \['denoiser'\]"):
        pretrain_cli(config, "subspace", "evaluator")
    assert pretrain_cli(config, "subspace")[:2] == ["--schedule", "cosine"]
    assert set(task_networks("digits")) == {"denoiser", "classifier", "noisy_classifier", "evaluator"}
    assert task_networks("digits")["denoiser"].needs == ("evaluator",) and set(task_networks("subspace")) == {"denoiser"}


def test_network_files_are_the_tasks_contract():
    """The rules name `<models_dir>/<task>_<network>.safetensors`; the task loads the same files, and
    every task that loads networks is an image task (its cells' rule declares the galleries; the images
    task is an image task that loads none: its model is declared under `denoisers`)."""
    from benchmark.pretraining import pretrain_targets, task_networks
    from benchmark.tasks import TASKS
    from benchmark.tasks.digits import MODEL_FILES

    assert MODEL_FILES == {n: f"digits_{n}.safetensors" for n in task_networks("digits")}
    assert all(t.is_image for t in TASKS.values() if t.uses_models)
    assert {name for name, t in TASKS.items() if t.is_image and not t.uses_models} == {"images"}
    assert pretrain_targets(cells_from_config(load())) == [
        ("digits", n) for n in sorted(task_networks("digits"))] + [("sphere", "denoiser"), ("subspace", "denoiser")]


# --- everything a job would refuse is refused at DAG build (issue 10) -------------------------

NAN, INF = float("nan"), float("inf")
REFUSED_BEFORE_ANY_JOB = [
    # cg needs a noise-conditional classifier: only digits' label has one (Task.noisy_log_prob_objectives)
    (["experiments", "oracle", "methods", "cg"], {"strengths": [1.0]},
     r"experiments.oracle.methods.cg: 'cg' needs an objective with a noise-conditional classifier; "
     r"\['quadratic_off'\] of task 'subspace' have none; allowed: none$"),
    (["experiments", "oracle", "methods", "bon"], {"strengths": [1.0], "params": {"proposal": "cg"}},
     r"experiments.oracle.methods.bon: 'bon' needs an objective with a noise-conditional classifier"),
    (["experiments", "digits_inpaint", "methods", "cg"], {"strengths": [1.0]},
     r"\['inpaint'\] of task 'digits' have none; allowed: \['label'\] \(restrict it with `objectives: \['label'\]`\)"),
    # the objective's own checks, without loading its networks
    (["experiments", "digits_label", "objective_params", "target"], 99,
     r"experiments.digits_label.objective_params: objective 'label': target must be an integer class 0..9 or "
     r"'all', got 99"),
    (["experiments", "digits_inpaint", "objective_params", "sigma_y"], -0.1,
     r"experiments.digits_inpaint.objective_params: objective 'inpaint': sigma_y must be a finite number >= 0"),
    (["experiments", "digits_inpaint", "objective_params", "image"], 270,
     r"objective 'inpaint': image must be 'all' or an index 0..269 of the test split, got 270"),
    (["experiments", "digits_inpaint", "objective_params", "mask"], "left",
     r"objective 'inpaint': unknown mask 'left'; allowed: \['centre', 'lower_half'\]"),
    # every number finite: NaN and infinities pass the schema's bounds
    (["experiments", "digits_inpaint", "objective_params", "sigma_y"], NAN,
     r"experiments.digits_inpaint.objective_params.sigma_y: nan is not a finite number"),
    (["experiments", "oracle", "eta"], NAN, r"experiments.oracle.eta: nan is not a finite number"),
    (["experiments", "trained", "finetune_lr"], INF, r"experiments.trained.finetune_lr: inf is not a finite number"),
    # Algorithm 2 whose fine-tuning no round would sample after (smoke's trained experiment: rounds 2, alg1 + alg2)
    (["experiments", "trained", "finetune_start"], 2,
     r"experiments.trained.finetune_start: 2 with experiments.trained.rounds: 2 and algorithm 'alg2': no round is "
     r"sampled after the fine-tuning, which would be charged and never used; allowed: finetune_start in 0\.\.1 "
     r"\(0: from the unguided batch, Guo et al.'s default\), or rounds > 2$"),
    (["experiments", "trained", "rounds"], 0,
     r"experiments.trained.finetune_start: 0 with experiments.trained.rounds: 0 and algorithm 'alg2': .*"
     r"allowed: rounds > 0$"),
    (["experiments", "oracle", "methods", "naive", "strengths"], [0.9, INF],
     r"experiments.oracle.methods.naive.strengths\[1\]: inf is not a finite number"),
    (["pretrain", "subspace", "lr"], INF, r"pretrain.subspace.lr: inf is not a finite number"),
]


@pytest.mark.parametrize("path, value, pattern", REFUSED_BEFORE_ANY_JOB)
def test_what_a_job_would_refuse_is_refused_at_dag_build(path, value, pattern):
    config = load("smoke.yaml")
    _mutate(path, value)(config)
    validate(config, SCHEMA)  # the schema lets them through ...
    with pytest.raises(ConfigError) as info:  # ... the semantic check does not, naming the key
        cells_from_config(config)
    assert re.search(pattern, str(info.value)), str(info.value)


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


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml", "digits.yaml", "training_free.yaml",
                                  "score_axis.yaml", "ddpm_cifar10.yaml"])
def test_size_guard_counts_what_the_sweep_makes(name):
    """count_cells is an upper bound of the cells made (exact but for cells two experiments share)."""
    from benchmark.config_checks import count_cells

    config = load(name)
    cells = cells_from_config(config)
    tuning, evaluation = count_cells(config)
    assert tuning >= len(cells)
    for name, exp in config["experiments"].items():  # one experiment alone shares no cell: exact
        alone = config | {"experiments": {name: exp}}
        assert count_cells(alone)[0] == len(cells_from_config(alone)), name
    groups = {args.group for args in cells.values()}
    assert evaluation >= len(groups) * len(config["seeds"]["evaluation"])
    if (config.get("protocol") or {}).get("evaluate") == "all":   # every setting on every evaluation seed
        assert evaluation >= len(cells) * len(config["seeds"]["evaluation"]) // max(1, len(config["seeds"]["tuning"]))


def test_size_guard_counts_before_making_cells(monkeypatch):
    from benchmark import config_checks, sweep

    config = load("smoke.yaml")
    tuning, evaluation = config_checks.count_cells(config)
    assert tuning == len(cells_from_config(config))
    assert evaluation == len(cells_from_config(config)) * len(config["seeds"]["evaluation"])  # one setting each
    config["experiments"]["oracle"]["methods"]["gloss"]["strengths"] = [i / 1e6 for i in range(1, 200_001)]
    made = []
    monkeypatch.setattr(sweep, "CellSpec", lambda **kw: made.append(kw))
    with pytest.raises(ConfigError, match=r"^max_cells: the sweep asks for 200,0\d\d cells .* more than max_cells = "
                                          r"100,000; .* raise the limit with `max_cells: 200\d\d\d` in the config file "
                                          r"or `--config max_cells=200\d\d\d`"):
        cells_from_config(config)
    assert not made
    config["max_cells"] = 10
    with pytest.raises(ConfigError, match="more than max_cells = 10;"):
        config_checks.check_config(load("smoke.yaml") | {"max_cells": 10})


def test_numbers_as_yaml_1_2_writes_them_are_numbers():
    from benchmark.config import coerce_numbers

    text = (ROOT / "config/smoke.yaml").read_text()
    text = (text.replace("lr: 0.002", "lr: 2e-3")
            .replace("naive: {strengths: [0.9]}", "naive: {strengths: [9e-1], params: {sigma: 1.0e-1}}")
            .replace("samples: 8\n    steps: 20", "samples: 8e0\n    steps: 2.0e1"))
    config = yaml.safe_load(text)
    assert config["pretrain"]["subspace"]["lr"] == "2e-3"  # PyYAML (YAML 1.1) leaves these strings
    coerce_numbers(config)
    validate(config, SCHEMA)
    oracle = config["experiments"]["oracle"]
    assert (config["pretrain"]["subspace"]["lr"], oracle["methods"]["naive"]["strengths"]) == (0.002, [0.9])
    assert (oracle["samples"], oracle["steps"], oracle["methods"]["naive"]["params"]["sigma"]) == (8, 20, 0.1)
    assert type(oracle["samples"]) is int and type(oracle["steps"]) is int
    assert config["results_dir"] == "results/smoke"  # strings stay strings
    assert cells_from_config(config)


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


def test_pretrain_keys_come_from_the_tasks_network_declarations():
    """`pretrain.<task>` is checked against the schema its task's networks generate: flat for one network,
    shared settings plus one block per network for several; defaults filled; a misspelt key named with
    what is allowed there."""
    from benchmark.pretraining import check_pretrain, pretrain_schema

    assert set(pretrain_schema("subspace")["properties"]) == {"schedule", "T", "seed", "hidden", "depth", "epochs",
                                                              "batch_size", "lr", "n_train"}
    digits = pretrain_schema("digits")["properties"]
    assert set(digits) == {"schedule", "T", "seed", "denoiser", "classifier", "noisy_classifier", "evaluator"}
    assert set(digits["denoiser"]["properties"]) == {"epochs", "batch_size", "lr", "width", "quality_samples",
                                                     "quality_steps"}
    config = load("smoke.yaml")
    config["pretrain"]["subspace"].pop("epochs")
    check_pretrain(config)
    assert config["pretrain"]["subspace"]["epochs"] == 10  # the declaration's default
    config["pretrain"]["digits"]["classifier"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"^pretrain.digits.classifier: Additional properties are not allowed "
                                          r"\('epoch' was unexpected\); allowed: \['batch_size', 'epochs', 'lr', "
                                          r"'width'\]"):
        check_pretrain(config)
    config = load("smoke.yaml")
    config["pretrain"]["subspace"]["T"] = 1
    with pytest.raises(ConfigError, match=r"^pretrain.subspace.T: 1 is less than the minimum of 2"):
        cells_from_config(config)


def test_a_list_of_pretraining_values_is_a_checkpoint_family():
    """`pretrain.subspace.epochs: [10, 50]`: one checkpoint per value, each its own denoiser of the sweep
    (`trained.epochs=10`, ...), pre-trained with its own value; no list: the names stay `trained`."""
    from benchmark.pretraining import checkpoint_family, pretrain_cli, pretrain_targets

    config = load("smoke.yaml")
    assert checkpoint_family(config, "subspace") == [("", config["pretrain"]["subspace"])]
    config["pretrain"]["subspace"]["epochs"] = [1, 3]
    cells = cells_from_config(config)
    trained = {c.spec.denoiser.name: c.spec.denoiser.source for c in cells.values() if c.spec.task == "subspace"
               and c.spec.denoiser.name != "oracle"}
    assert trained == {"trained.epochs=1": "models/smoke/subspace_denoiser.epochs=1.safetensors",
                       "trained.epochs=3": "models/smoke/subspace_denoiser.epochs=3.safetensors"}
    assert {("subspace", "denoiser.epochs=1"), ("subspace", "denoiser.epochs=3")} <= set(pretrain_targets(cells))
    args = pretrain_cli(config, "subspace", "denoiser.epochs=3")
    assert args[args.index("--epochs") + 1] == "3"
    ids = [c for c in cells if "/trained.epochs=" in c]
    assert len({c.split("/")[5] for c in ids if "/alg1/" in c}) == 2  # each checkpoint its own variant hash
    config["pretrain"]["subspace"]["epochs"] = [0, 3]
    with pytest.raises(ConfigError, match=r"^pretrain.subspace.epochs"):
        cells_from_config(config)
