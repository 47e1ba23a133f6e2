"""The workflow end to end on the smoke preset: every cell lands (an image task's with its gallery,
after its four networks), the report is self-contained, and a sweep killed with SIGKILL resumes,
recomputing only the unfinished cells, to the same aggregate."""

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from benchmark.report.verdict import chosen_jobs
from benchmark.jobs import job_priorities, jobs_from_cells, stage_jobs
from benchmark.paths import job_key
from benchmark.pretraining import task_networks
from benchmark.sweep import cells_from_config, evaluation_cells
from tests.report_page import first_words, panels

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "config/smoke.yaml"
# Columns that legitimately differ between two runs of the same cell.
VOLATILE = ["wall_seconds", "peak_memory_mb", "started_at", "hostname", "git_commit", "slurm_job_id"]

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *extra: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(SMOKE), "--cores", "2", *extra]
    if kw.get("background"):
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def smoke_cells():
    config = yaml.safe_load(SMOKE.read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return config, cells_from_config(config)


def stable(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["run_id", "round", "metric"]
    return df.drop(columns=VOLATILE).sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_every_cell_lands_and_report_is_self_contained(full_run):
    config, cells = smoke_cells()
    results = full_run / config["results_dir"]
    for cell in cells:
        assert (results / "cells" / f"{cell}.parquet").exists(), cell
    # The evaluation stage: the chosen setting of every method variant, on the evaluation seeds only.
    chosen = chosen_jobs(results / "selected")
    groups = {c.group for c in cells.values()}
    assert 0 < len(chosen) <= len(groups) and set(chosen) <= {job_key(c) for c in cells}
    evaluated = evaluation_cells(cells, chosen, config["seeds"]["evaluation"])
    for cell in evaluated:
        assert (results / "cells" / f"{cell}.parquet").exists(), cell
    df = pd.read_parquet(results / "all.parquet")
    assert df.run_id.nunique() == len(cells) + len(evaluated)
    assert set(df["cell"]) == set(cells) | set(evaluated)
    assert (df.status == "ok").all()
    html = (full_run / config["report"]).read_text()
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    # Every method has rows in some panel's leaderboard (labels are '<method> <variant tags>').
    shown = set().union(*(first_words(p.table("Leaderboard").column("method")) for p in panels(html)))
    assert shown == {c.spec.method for c in cells.values()}
    assert (full_run / config["models_dir"] / "subspace_denoiser.safetensors").exists()
    for network in task_networks("digits"):  # the image task's four networks, each with its training report
        assert (full_run / config["models_dir"] / f"digits_{network}.safetensors").exists()
        assert (full_run / config["models_dir"] / f"digits_{network}.json").exists()
    galleries = {str(p.relative_to(results / "cells").with_name(p.stem)) for p in (results / "cells").rglob("*.png")}
    assert galleries == {c for c, cell in (cells | evaluated).items() if cell.spec.task == "digits"}
    assert 'id="verdict"' in html
    assert html.count("<h3>Sample galleries</h3>") == len({(c.spec.task, c.spec.objective) for c in cells.values()
                                                            if c.spec.task == "digits"})
    assert not list(full_run.rglob("*.tmp"))


def test_killed_sweep_resumes_to_the_same_aggregate(full_run, tmp_path):
    config, cells = smoke_cells()
    proc = snakemake(tmp_path, background=True)
    cell_dir = tmp_path / config["results_dir"] / "cells"

    def registered():
        # A job whose file landed but that Snakemake had not yet registered keeps its incomplete marker
        # (.snakemake/incomplete/<base64 path>) and is rightly redone; a registered cell must not be.
        in_flight = {base64.b64decode(m.name).decode() for m in (tmp_path / ".snakemake/incomplete").glob("*")}
        return {p: p.stat().st_mtime_ns for p in cell_dir.rglob("*.parquet")
                if str(p.relative_to(tmp_path)) not in in_flight}

    deadline = time.time() + 120
    while time.time() < deadline and len(registered()) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = registered()
    assert 0 < len(done) and not (tmp_path / config["report"]).exists(), "the kill must land mid-sweep"
    # What a user does after a crash (README): release the stale lock, then run again.
    assert snakemake(tmp_path, "--unlock").returncode == 0
    finished = snakemake(tmp_path, "--rerun-incomplete")
    assert finished.returncode == 0, finished.stderr[-3000:]
    for path, mtime in done.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"
    a = pd.read_parquet(full_run / config["results_dir"] / "all.parquet")
    b = pd.read_parquet(tmp_path / config["results_dir"] / "all.parquet")
    pd.testing.assert_frame_equal(stable(a), stable(b))


def test_a_cell_job_whose_command_line_passes_the_system_limit_is_refused_naming_group_size(tmp_path):
    """Linux refuses one argument over 128 KiB, and a job's shell command is one (`bash -c`): the DAG is
    refused before anything runs, naming group_size, instead of every job failing with E2BIG."""
    from benchmark.config import ConfigError
    from benchmark.jobs import MAX_JOB_COMMAND, check_job_commands

    check_job_commands({"tune a": "x" * MAX_JOB_COMMAND})
    with pytest.raises(ConfigError, match=r"group_size: 1 cell job\(s\) have a command line over 120000 bytes .* "
                                          r"the longest 120001 bytes \(tune b\); lower group_size"):
        check_job_commands({"tune a": "x", "tune b": "x" * (MAX_JOB_COMMAND + 1)})
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    deep = "/".join(["r" * 200] * 4)          # long result paths: 900 bytes a cell
    config |= {"experiments": {"tf": config["experiments"]["training_free_oracle"]}, "group_size": 1000,
               "results_dir": deep}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cells = cells_from_config(config)
    n_cells = len(cells | evaluation_cells(cells, list(jobs_from_cells(cells)), config["seeds"]["evaluation"]))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True)
    if n_cells * 900 > MAX_JOB_COMMAND:
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "invalid config: group_size:" in out and "lower group_size" in out, out[-2000:]
    else:
        pytest.fail(f"the training-free oracle experiment has {n_cells} cells: too few to pass the limit")


def test_dry_run_of_default_config_builds_the_dag(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(ROOT / "config/config.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pretrain" in proc.stdout and "report" in proc.stdout
    # the tuning stage: one job per group of cells (config group_size), every tuning cell in exactly one
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cells = cells_from_config(config)
    assert config["protocol"]["evaluate"] == "all"   # every setting on the evaluation seeds too, in the same jobs
    cells |= evaluation_cells(cells, list(jobs_from_cells(cells)), config["seeds"]["evaluation"])
    chain = {"models/digits_evaluator.safetensors", "models/digits_denoiser.safetensors"}
    jobs = stage_jobs(cells, config["group_size"], spread=config["job_spread"], first=chain, models_dir="models")
    counts = dict(re.findall(r"^(tune_\w+)\s+(\d+)$", proc.stdout, re.M))
    assert len(counts) == len(jobs) and set(counts.values()) == {"1"}, counts
    assert sorted(c for job in jobs.values() for c in job) == sorted(cells)
    assert all(len(job) <= config["group_size"] for job in jobs.values())


def test_cell_jobs_are_few_even_where_they_run_side_by_side_and_the_critical_path_starts_first():
    """The default sweep's jobs: the digits cells (after the longest pre-training chain, so they start last)
    spread over job_spread jobs of even sampling work, every other task's cells in the fewest jobs that hold
    them (one job per task here: one process's start-up each); the digits jobs before every other cell job,
    heavier first."""
    from benchmark.batch import work

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cells = cells_from_config(config)
    cells |= evaluation_cells(cells, list(jobs_from_cells(cells)), config["seeds"]["evaluation"])
    chain = {"models/digits_evaluator.safetensors", "models/digits_denoiser.safetensors"}
    jobs = stage_jobs(cells, config["group_size"], spread=config["job_spread"], first=chain, models_dir="models")
    load = {j: sum(work(cells[c].spec) for c in ids) for j, ids in jobs.items()}
    tasks = {j: {cells[c].spec.task for c in ids} for j, ids in jobs.items()}
    assert all(len(t) == 1 for t in tasks.values())                     # a job holds one task's cells
    digits = [j for j in jobs if tasks[j] == {"digits"}]
    assert len(digits) == config["job_spread"] == 2
    assert max(load[j] for j in digits) <= 1.1 * min(load[j] for j in digits)
    others = [j for j in jobs if j not in digits]
    assert sorted(t for j in others for t in tasks[j]) == ["mixture", "sphere", "subspace"]   # one job per other task
    assert sorted(c for ids in jobs.values() for c in ids) == sorted(cells)
    prio = job_priorities(jobs, cells, chain, "models")
    assert min(prio[j] for j in digits) >= 2 > 0.5 >= max(prio[j] for j in others)
    a, b = sorted(digits, key=load.get)
    assert prio[a] < prio[b]
    # without the chain known, every task's cells spread over job_spread jobs (the old rule)
    spread = stage_jobs(cells, config["group_size"], spread=2)
    assert len(spread) == 2 * len({c.spec.task for c in cells.values()})
