"""workflow/scripts/ run from any directory: no script shadows a standard-library module (a script's own
folder is first on sys.path, so a `select.py` there broke every import of `select`)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa

from benchmark.report import verdict as vd
from benchmark.results import to_table, write_atomic
from test_verdict import HEADER, TUNE, EVAL, _frame, _groups, _hacked_panel

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def test_no_script_shadows_a_standard_library_module():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = set(sys.stdlib_module_names) | {p.stem for p in stdlib.glob("*.py")}
    assert not [p.name for p in SCRIPTS.glob("*.py") if p.stem in names]


def test_tables_verdict_runs_from_another_directory(tmp_path):
    cells = _hacked_panel(TUNE + EVAL)
    rows = [r for c in cells for r in c]
    write_atomic(to_table(rows).append_column("cell", pa.array([r["cell"] for r in rows], pa.string())),
                 tmp_path / "all.parquet")
    tune = _frame(cells)[lambda d: d["seed"].isin(TUNE)]
    vd.write_selection(vd.select(tune, _groups(tune), HEADER), HEADER, HEADER["seeds"], tmp_path / "selected")
    out = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), "verdict", "all.parquet", "selected"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert vd.SUMMARY_RULE in out.stdout and "honest" in out.stdout
