"""The smoke preset through the SLURM profile on a real SLURM (`.ci/slurm.sh start` makes a
single-node one): every cell lands, the report is written, and every row carries the id of the
SLURM job that computed it.

The test is required. Where no controller answers and the test runs as root on a Debian-like machine
(a fresh machine running README's test command, as CI's is), it starts one itself with
`.ci/slurm.sh start` and stops it afterwards. Without a reachable controller it then FAILS, saying
why. On a machine that has no SLURM, skip it explicitly, either by deselecting it
(`python -m pytest -m "not slurm"`) or with the escape hatch GUIDEBENCH_SKIP_SLURM=1, which turns
that failure into a skip with the same reason. CI never sets it (.ci/run unsets it, and fails
before pytest runs when the SLURM daemons cannot start).
"""

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from benchmark.report.verdict import chosen_jobs
from benchmark.sweep import cells_from_config, evaluation_cells

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "config/smoke.yaml"
PROFILE = ROOT / "workflow/profiles/slurm"
TIMEOUT_S = int(os.environ.get("GUIDEBENCH_SLURM_TIMEOUT_S", "900"))

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


#: The escape hatch for machines without SLURM (never set in CI): skip instead of fail.
SKIP_VARIABLE = "GUIDEBENCH_SKIP_SLURM"


def _unavailable(reason: str):
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{reason} ({SKIP_VARIABLE}=1)")
    pytest.fail(f"{reason}. Start a single-node SLURM with `.ci/slurm.sh start`; on a machine without SLURM "
                f"deselect this test (-m 'not slurm') or set {SKIP_VARIABLE}=1", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def own_slurm():
    """Start a single-node SLURM for this module when none answers and we may (root, apt-get), and stop
    it afterwards; a SLURM that was already running (CI's, a real cluster's) is left alone."""
    started = False
    if os.environ.get(SKIP_VARIABLE) != "1" and not _answers() and os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run(["bash", str(ROOT / ".ci/slurm.sh"), "start"], capture_output=True, text=True)
        started = proc.returncode == 0
        if not started:
            _unavailable(f"`.ci/slurm.sh start` failed: {proc.stderr.strip()[-1500:]}")
    yield
    if started:
        subprocess.run(["bash", str(ROOT / ".ci/slurm.sh"), "stop"], capture_output=True, text=True)


def _answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "--noheader"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def node_cpus() -> int:
    """CPUs of the smallest usable node; fails without one (skips when GUIDEBENCH_SKIP_SLURM=1)."""
    if shutil.which("sinfo") is None:
        _unavailable("no SLURM here: `sinfo` is not on PATH")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install .[slurm])")
    try:
        out = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%t %c"], capture_output=True,
                             text=True, timeout=30)
    except subprocess.TimeoutExpired:
        _unavailable("the SLURM controller does not answer: `sinfo` timed out")
    if out.returncode != 0:
        _unavailable(f"the SLURM controller is not reachable: `sinfo` failed: {out.stderr.strip()}")
    cpus = [int(c) for state, c in (line.split() for line in out.stdout.splitlines())
            if state.rstrip("*~#!%$@^-") in ("idle", "mix", "alloc")]
    if not cpus:
        _unavailable(f"SLURM has no usable node (sinfo: {out.stdout.strip() or 'none'})")
    return min(cpus)


def smoke_cells() -> tuple[dict, dict]:
    config = yaml.safe_load(SMOKE.read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return config, cells_from_config(config)


def test_smoke_preset_runs_on_slurm(tmp_path, capsys):
    cores = min(node_cpus(), 2)
    config, cells = smoke_cells()
    # Jobs inherit the submitting environment (sbatch --export=ALL): put this interpreter's
    # environment first so `python -m benchmark` inside a job finds the package.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(PROFILE), "--configfile", str(SMOKE), "--cores", str(cores),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
           "--seconds-between-status-checks", "2"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        log = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o
                      for o in (exc.stdout or "", exc.stderr or ""))
        cancel_run(log)
        queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
        pytest.fail(f"the SLURM run did not finish in {TIMEOUT_S} s\nsqueue:\n{queue}\nsnakemake:\n{log[-4000:]}")
    wall = time.monotonic() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{log[-6000:]}"

    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    with capsys.disabled():
        print(f"\nSLURM run: {len(submitted)} SLURM jobs for {len(cells)} cells, {wall:.1f} s wall time")

    results = tmp_path / config["results_dir"]
    landed = sorted(str(p.relative_to(results / "cells"))[: -len(".parquet")]
                    for p in (results / "cells").rglob("*.parquet"))
    # both stages: every tuning cell, and the chosen settings on the evaluation seeds
    evaluated = evaluation_cells(cells, chosen_jobs(results / "selected"), config["seeds"]["evaluation"])
    assert evaluated and landed == sorted(cells | evaluated)
    assert (tmp_path / config["report"]).stat().st_size > 0

    df = pd.read_parquet(results / "all.parquet")
    assert df.run_id.nunique() == len(cells) + len(evaluated)
    assert df.slurm_job_id.notna().all(), df[df.slurm_job_id.isna()][["run_id"]].drop_duplicates()
    assert set(df.slurm_job_id) <= submitted, (set(df.slurm_job_id), submitted)
    # Small cells are bundled into few submissions (the profile's group-components).
    assert len(set(df.slurm_job_id)) <= math.ceil((len(cells) + len(evaluated)) / 2)


def cancel_run(log: str) -> None:
    """Cancel the SLURM jobs of a run that timed out (they are named after its run id)."""
    for run_id in set(re.findall(r"SLURM run ID: (\S+)", log)):
        subprocess.run(["scancel", "--name", run_id], capture_output=True)
