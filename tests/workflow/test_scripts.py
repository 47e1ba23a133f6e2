"""workflow/scripts/ run from any directory: no script shadows a standard-library module (a script's own
folder is first on sys.path, so a `select.py` there broke every import of `select`)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from benchmark.report import verdict as vd
from tests.report.test_verdict import EVAL, TUNE, _hacked_panel, write_run

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def test_no_script_shadows_a_standard_library_module():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = set(sys.stdlib_module_names) | {p.stem for p in stdlib.glob("*.py")}
    assert not [p.name for p in SCRIPTS.glob("*.py") if p.stem in names]


def test_tables_verdict_runs_from_another_directory(tmp_path):
    write_run(_hacked_panel(TUNE + EVAL), tmp_path)
    out = subprocess.run([sys.executable, str(SCRIPTS / "tables.py"), "verdict", "all.parquet", "selected"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert vd.SUMMARY_RULE in out.stdout and "honest" in out.stdout
