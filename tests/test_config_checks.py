"""benchmark/config_checks.py: the config's semantic checks. A malformed config, or one whose cells a job would
refuse, stops before any job, naming the key and what is allowed there; the size guard counts the cells before
making them."""

import re

import pytest
import yaml
from snakemake.utils import validate

from benchmark.config import ConfigError
from benchmark.sweep import cells_from_config
from tests.test_sweep import ROOT, SCHEMA, load


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


@pytest.mark.parametrize("seeds, pattern", [
    ([0, 1], r"seeds: give the two disjoint sets"),
    ({"tuning": [0, 1], "evaluation": [1, 2]}, r"seeds: \[1\] are both tuning and evaluation seeds"),
])
def test_protocol_seeds(seeds, pattern):
    config = load("smoke.yaml")
    config["seeds"] = seeds
    with pytest.raises(ConfigError, match=pattern):
        cells_from_config(config)


def test_trained_needs_pretrain_section():
    config = load()
    del config["pretrain"]["sphere"]
    with pytest.raises(ConfigError, match="experiments.sphere.denoiser: 'trained' needs a pretrain.sphere section"):
        cells_from_config(config)


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

