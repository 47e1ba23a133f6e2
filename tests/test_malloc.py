"""benchmark/malloc.py: every `python -m benchmark` process keeps freed memory for the next step (glibc's
mallopt); where that cannot apply, nothing changes; either way the numbers are the same."""

import os
import subprocess
import sys

import pyarrow.parquet as pq

from benchmark import malloc
from benchmark.spec import CellSpec


def test_tune_applies_on_glibc_and_steps_aside_when_asked(monkeypatch):
    import ctypes

    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    monkeypatch.delenv("GUIDEBENCH_MALLOC", raising=False)
    assert malloc.tune() is glibc
    monkeypatch.setenv("GUIDEBENCH_MALLOC", "default")
    assert malloc.tune() is False
    monkeypatch.delenv("GUIDEBENCH_MALLOC")
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc.tune() is False


def test_a_cell_gives_the_same_rows_with_either_allocator(tmp_path):
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method="dps", strength=1.0, rounds=1, samples=8,
                       steps=10)
    tables = {}
    for mode in ("tuned", "default"):
        out = tmp_path / f"{mode}.parquet"
        env = dict(os.environ, GUIDEBENCH_MALLOC=mode)     # "tuned": anything but "default"
        proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--spec", spec.to_json(), "--out", str(out)],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        tables[mode] = pq.read_table(out).to_pandas()
    a, b = tables["tuned"], tables["default"]
    assert len(a) > 0 and a.run_id.equals(b.run_id) and a.value.equals(b.value)
    assert [list(x) for x in a.per_sample.dropna()] == [list(x) for x in b.per_sample.dropna()]
