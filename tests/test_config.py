"""benchmark/config.py: reading a config. A misspelt config key stops the workflow with one clear line
(benchmark.config.validate_config): the key,
where it is and the closest allowed names, not jsonschema's message followed by the whole schema; through
`python -m benchmark check-config` (with file:line) and through Snakemake (`snakemake -n`). Numbers as YAML 1.2
writes them are numbers; names that become file names cannot leave the results folder."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from benchmark.config import ConfigError, validate_config
from benchmark.sweep import cells_from_config
from tests.test_sweep import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config/smoke.yaml"

# (line as in config/smoke.yaml, the misspelling, the message's start)
TOP = (r"^experiments:", "experiment:",
       "unknown key 'experiment' at the top level: did you mean 'experiments'? allowed there: results_dir, ")
METHOD = (r"^(\s+)naive: \{strengths", r"\1naive: {strenghts",
          "unknown key 'strenghts' in experiments.oracle.methods.naive: did you mean 'strengths'? "
          "allowed there: strengths, params, variants, grid, objectives")


def misspelt(tmp_path: Path, pattern: str, replacement: str) -> tuple[Path, int]:
    """config/smoke.yaml with one key misspelt; returns the file and the key's line (1-based)."""
    lines = SMOKE.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if re.search(pattern, line))
    lines[i] = re.sub(pattern, replacement, lines[i])
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, i + 1


@pytest.mark.parametrize("case", [TOP, METHOD], ids=["top_level", "in_method"])
def test_check_config_names_the_misspelt_key_its_line_and_the_closest_name(tmp_path, case):
    pattern, replacement, message = case
    path, line = misspelt(tmp_path, pattern, replacement)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "check-config", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith(f"error: {path}:{line}: {message}"), err[0]


def test_validate_config_still_fills_in_the_schema_defaults():
    config = yaml.safe_load(SMOKE.read_text())
    validate_config(config)
    assert config["max_cells"] == 100000 and config["protocol"]["bootstrap"] == 2000
    assert config["experiments"]["oracle"]["eta"] == 1.0 and config["experiments"]["oracle"]["algorithm"] == "alg1"
    assert config["experiments"]["oracle"]["methods"]["naive"]["grid"] == {}
    config["device"] = "cdua"
    with pytest.raises(ConfigError, match=r"^device: 'cdua' is not allowed; did you mean 'cuda'\? allowed: auto"):
        validate_config(config)
    config["device"] = "cpu"
    del config["seeds"]["tuning"]
    with pytest.raises(ConfigError, match=r"^missing key 'tuning' in seeds$"):
        validate_config(config)


@pytest.mark.parametrize("case", [TOP, METHOD], ids=["top_level", "in_method"])
def test_snakemake_stops_with_one_short_message(tmp_path, case):
    pattern, replacement, message = case
    path, _ = misspelt(tmp_path, pattern, replacement)
    # Without `experiments` the Snakefile loads the default config too (from the working directory).
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config/config.yaml", tmp_path / "config/config.yaml")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    out = (proc.stdout + proc.stderr).splitlines()
    start = next((n for n, line in enumerate(out) if "invalid config:" in line), None)
    assert start is not None, "\n".join(out)
    assert out[start] == f"invalid config: {message}" or out[start].startswith(f"invalid config: {message}"), out[start]
    assert len(out) - start < 10, "\n".join(out)  # our error, then at most Snakemake's few traceback lines
    assert not any("Failed validating" in line or "$schema" in line for line in out), "\n".join(out)


def test_unsafe_objective_names_cannot_escape_results(tmp_path):
    from benchmark.config import safe_name

    for bad in ("../x", "/etc", "..", ".hidden", "a/b", "-rf"):
        with pytest.raises(ConfigError, match="cannot be part of a file name"):
            safe_name("key", bad)


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

