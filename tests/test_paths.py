"""benchmark/paths.py: where the workflow's files lie and what their names may be. A cell id cannot leave the
results folder; values reach the command line as it parses them; the names of cells, jobs and checkpoints
round-trip."""

import re

import pytest

from benchmark.paths import (CELL_ID_PATTERN, cell_id, checkpoint_file, group_id, job_key, report_file,
                             setting_name, task_of_checkpoint, variant_path)
from benchmark.spec import CellSpec
from benchmark.sweep import cells_from_config
from tests.test_sweep import load


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


def test_a_cell_id_is_its_parts_and_its_job_key_drops_only_the_seed():
    variant = variant_path("digits", "trained", "label", "dps", "alg1", "0123abcd")
    setting = setting_name(0.5, [("sigma", 0.1), ("flag", True)], 50)
    assert setting == "s0.5_sigma=0.1_flag=true_n50"                        # values as the CLI parses them
    cid = cell_id(variant, setting, 7)
    assert cid == "digits/trained/label/dps/alg1/v0123abcd/s0.5_sigma=0.1_flag=true_n50_seed7"
    assert re.fullmatch(CELL_ID_PATTERN, cid)
    assert job_key(cid) == f"{variant}/{setting}" and group_id(variant, None) == f"{variant}/nall"
    assert job_key("results/all_seed_x", strict=False) == "results/all"     # any name, not only a cell id
    for bad in ("digits/x", "digits/x_seed", "digits/x_seedA"):
        with pytest.raises(ValueError, match=f"not a cell id: '{bad}'"):
            job_key(bad)


def test_a_checkpoints_file_names_its_task_and_network():
    path = checkpoint_file("models/run", "digits", "noisy_classifier")
    assert path == "models/run/digits_noisy_classifier.safetensors"
    assert report_file("models/run", "digits", "noisy_classifier") == "models/run/digits_noisy_classifier.json"
    name = path.rpartition("/")[2]
    assert task_of_checkpoint(name, "noisy_classifier") == "digits"
    assert task_of_checkpoint(name, "classifier") == "digits_noisy"          # the name alone: as written
    assert task_of_checkpoint(name, "denoiser") is None
    assert task_of_checkpoint("_denoiser.safetensors", "denoiser") is None   # no task before the network
