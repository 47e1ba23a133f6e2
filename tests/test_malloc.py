"""benchmark/malloc.py: every `python -m benchmark` process keeps freed memory for the next step (glibc's
mallopt); where that cannot apply, nothing changes; either way the numbers are the same."""

import os
import subprocess
import sys

import pyarrow.parquet as pq

from benchmark import malloc
from benchmark.spec import CellSpec


def test_tune_applies_on_glibc_and_steps_aside_when_asked(monkeypatch):
    """In a child process (this one keeps glibc's defaults, for the comparison below): True on Linux with glibc;
    False with GUIDEBENCH_MALLOC=default or on another platform, before touching the allocator."""
    import ctypes

    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    code = "from benchmark import malloc; print(malloc.tune())"
    env = {k: v for k, v in os.environ.items() if k != "GUIDEBENCH_MALLOC"}
    for extra, expected in (({}, glibc), ({"GUIDEBENCH_MALLOC": "default"}, False)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env | extra, check=True)
        assert out.stdout.strip() == str(expected)
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    monkeypatch.setattr(malloc.ctypes, "CDLL", None)                  # never reached
    assert malloc.tune() is False


def test_a_cell_gives_the_same_rows_with_either_allocator(tmp_path):
    """`python -m benchmark run` (allocator tuned) against the same cell in this process (pytest's: glibc's
    defaults, tune() is not called here)."""
    from benchmark.cell import run_cell

    spec = CellSpec.of(task="subspace", objective="quadratic_off", method="dps", strength=1.0, rounds=1, samples=8,
                       steps=10)
    out = tmp_path / "tuned.parquet"
    env = {k: v for k, v in os.environ.items() if k != "GUIDEBENCH_MALLOC"}
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--spec", spec.to_json(), "--out", str(out)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    a = pq.read_table(out).to_pylist()
    b = run_cell(spec, "cpu", progress=False)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert (x["run_id"], x["metric"], x["value"], x["per_sample"]) == (y["run_id"], y["metric"], y["value"],
                                                                           y["per_sample"])
