"""benchmark/results.py: nothing silently wrong. Damaged cell files are named, never aggregated (checksums,
missing columns, conflicting duplicates); each cell counts once; a failed aggregate retracts the stale report;
disk errors are one line and keep the previous file; every row names where it ran (on a GPU its model, the CUDA
version and the driver version) and every counter has its column."""

import errno
import shutil
import struct
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from benchmark import results
from benchmark.cell import CellSpec, run_cell, write_cell
from benchmark.cli import main
from benchmark.results import (COLUMNS, BadResultsError, DiskError, ResultsFileError, aggregate, aggregate_or_retract,
                               gpu_facts, provenance, read_cell, write_atomic)
from tests.test_cell import TINY


def test_cpu_rows_have_no_gpu_facts():
    facts = provenance("cpu")
    assert {"gpu_model", "cuda_version", "driver_version"} <= set(COLUMNS) and set(facts) <= set(COLUMNS)
    assert (facts["gpu_model"], facts["cuda_version"], facts["driver_version"]) == (None, None, None)


def test_gpu_facts_name_the_model_cuda_and_driver(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    calls = []

    def smi(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="570.86.15\n", stderr="")

    monkeypatch.setattr(results.subprocess, "run", smi)
    assert gpu_facts("cuda:1") == {"gpu_model": "NVIDIA H200 #1", "cuda_version": "12.8", "driver_version": "570.86.15"}
    assert calls and "--id=1" in calls[0]

    def missing(cmd, **kw):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(results.subprocess, "run", missing)
    assert gpu_facts("cuda") == {"gpu_model": "NVIDIA H200 #0", "cuda_version": "12.8", "driver_version": None}


@pytest.fixture(scope="module")
def cell_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cell") / "good.parquet"
    write_cell(CellSpec.of(**TINY), path)
    return path


def _flip_a_value(path: Path) -> None:
    """Flip one bit of a stored float of the `value` column, so that the file still decodes."""
    data = bytearray(path.read_bytes())
    for v in pq.read_table(path).column("value").to_pylist():
        i = data.find(struct.pack("<d", v)) if v == v else -1
        if i >= 0:
            data[i] ^= 1
            path.write_bytes(bytes(data))
            return
    raise AssertionError("no plain value found to flip")


def _damaged_copies(good: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.parquet" for name in
             ("zero", "truncated", "random", "flipped", "no_checksum", "no_columns")}
    files["zero"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["random"].write_bytes(bytes(range(256)) * 8)
    shutil.copy(good, files["flipped"])
    _flip_a_value(files["flipped"])
    table = pq.read_table(good)
    pq.write_table(table.replace_schema_metadata(None), files["no_checksum"])  # as before checksums
    write_atomic(table.drop_columns(["per_sample", "checkpoint_sha256"]), files["no_columns"])
    return files


def test_a_flipped_byte_that_still_decodes_is_caught(cell_file, tmp_path):
    flipped = tmp_path / "flipped.parquet"
    shutil.copy(cell_file, flipped)
    _flip_a_value(flipped)
    before, after = (pq.read_table(p).column("value").to_pylist() for p in (cell_file, flipped))
    assert before != after  # pyarrow reads it without complaint, with another value
    with pytest.raises(ResultsFileError, match="checksum mismatch"):
        read_cell(flipped)


def test_aggregate_lists_every_bad_file_at_once(cell_file, tmp_path):
    cells = tmp_path / "results" / "cells"
    bad = _damaged_copies(cell_file, cells / "subspace")
    good = cells / "subspace" / "good.parquet"
    shutil.copy(cell_file, good)
    out = tmp_path / "results" / "all.parquet"
    with pytest.raises(BadResultsError) as info:
        aggregate([good, *bad.values()], out)
    message = str(info.value)
    assert set(info.value.problems) == {str(p) for p in bad.values()}
    assert f"{len(bad)} of {len(bad) + 1} cell files are bad" in message
    for name, reason in [("zero", "empty (0 bytes)"), ("truncated", "unreadable"), ("random", "unreadable"),
                         ("flipped", "checksum mismatch"), ("no_checksum", "has no checksum"),
                         ("no_columns", "lacks columns ['checkpoint_sha256', 'per_sample']")]:
        assert f"{bad[name]}: {reason}" in message, name
    assert f"python -m benchmark verify {tmp_path / 'results'} --remove-bad" in message
    assert "snakemake --cores all" in message
    assert not out.exists()


def test_duplicate_cells_count_once_and_conflicting_ones_are_refused(cell_file, tmp_path):
    a, b, c = (tmp_path / f"{n}.parquet" for n in "abc")
    shutil.copy(cell_file, a)
    table = read_cell(cell_file)
    # The same cell computed twice (another host, another time): equal values, so one copy is kept.
    rerun = table.set_column(table.schema.get_field_index("hostname"), "hostname",
                             pa.array(["elsewhere"] * table.num_rows, pa.string()))
    write_atomic(rerun, b)
    notes = []
    out = aggregate([a, b], tmp_path / "all.parquet", log=notes.append)
    assert out.num_rows == table.num_rows and out.column("run_id").to_pylist() == table.column("run_id").to_pylist()
    assert len(notes) == 1 and "dropped duplicate cell" in notes[0] and str(b) in notes[0] and str(a) in notes[0]
    # The same run_id with other values: which one is right is unknown, both files are named.
    values = table.column("value").to_pylist()
    other = table.set_column(table.schema.get_field_index("value"), "value", pa.array([v + 1 for v in values]))
    write_atomic(other, c)
    with pytest.raises(BadResultsError) as info:
        aggregate([a, c], tmp_path / "all2.parquet")
    assert set(info.value.problems) == {str(a), str(c)}
    assert "with other values than" in str(info.value)


def test_aggregate_adds_the_cell_id_below_root(cell_file, tmp_path):
    path = tmp_path / "cells" / "subspace" / "oracle" / "x_seed0.parquet"
    path.parent.mkdir(parents=True)
    shutil.copy(cell_file, path)
    table = aggregate([path], tmp_path / "all.parquet", root=tmp_path / "cells")
    assert set(table.column("cell").to_pylist()) == {"subspace/oracle/x_seed0"}
    assert read_cell(tmp_path / "all.parquet").column("cell").to_pylist()[0] == "subspace/oracle/x_seed0"


def test_a_failed_aggregate_removes_the_stale_report(cell_file, tmp_path):
    report, figures = tmp_path / "reports" / "index.html", tmp_path / "results" / "figures"
    figures.mkdir(parents=True)
    (figures / "a.png").write_bytes(b"png")
    report.parent.mkdir()
    report.write_text("<html>the previous results</html>")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    shutil.copy(cell_file, good)
    aggregate_or_retract([good], tmp_path / "all.parquet", stale=[report, figures])
    assert report.exists() and figures.exists()  # success: the report rule rebuilds them
    bad.write_bytes(b"")
    with pytest.raises(BadResultsError):
        aggregate_or_retract([good, bad], tmp_path / "all.parquet", stale=[report, figures])
    assert not report.exists() and not figures.exists()


def test_aggregate_refuses_unreadable_file(tmp_path):
    good = tmp_path / "good.parquet"
    write_cell(CellSpec.of(task="subspace", objective="negnorm_ones", method="none", rounds=1, samples=2, steps=5), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match=r"1 of 2 cell files are bad.*\n  .*bad.parquet: unreadable"):
        aggregate([good, bad], tmp_path / "all.parquet")
    assert not (tmp_path / "all.parquet").exists()
    table = aggregate([good, good], tmp_path / "all.parquet")  # one file named twice is one cell
    assert table.num_rows == read_cell(good).num_rows


def test_every_counter_has_a_schema_column():
    """to_table keeps only schema columns: a counter without its column would vanish silently."""
    from benchmark.diffusion import Costs
    from benchmark.results import COLUMNS

    assert [f"cost_{k}" for k in Costs().as_dict()] == [c for c in COLUMNS if c.startswith("cost_")]


def test_slurm_job_id_in_provenance(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    rows = run_cell(CellSpec.of(task="subspace", objective="negnorm_ones", method="none", rounds=0, samples=2, steps=5))
    assert {r["slurm_job_id"] for r in rows} == {"4242"}


def _enospc(table, where, **kw):
    Path(where).write_bytes(b"PAR1 partial")
    raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(cell_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cell.parquet"
    shutil.copy(cell_file, out)
    previous = out.read_bytes()
    monkeypatch.setattr(pq, "write_table", _enospc)
    with pytest.raises(DiskError, match=rf"^cannot write {out}: No space left on device$"):
        write_atomic(read_cell(cell_file), out)
    assert out.read_bytes() == previous and list(tmp_path.iterdir()) == [out]  # no half file, no temporary
    args = ["run", "--task", "subspace", "--objective", "negnorm_ones", "--method", "none", "--rounds", "0",
            "--samples", "2", "--steps", "2", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the cell's progress lines, then one error line
    assert err[-1] == f"error: cannot write {out}: No space left on device"
    assert all(" INFO benchmark.cell: " in line for line in err[:-1]) and not any("Traceback" in e for e in err)
    assert out.read_bytes() == previous


def test_a_read_only_folder_reports_the_first_error_not_the_clean_up(cell_file, tmp_path, monkeypatch):
    def read_only(*args, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    def unlink(self, missing_ok=False):  # removing the temporary fails too on a read-only file system
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(pq, "write_table", read_only)
    monkeypatch.setattr(Path, "unlink", unlink)
    out = tmp_path / "cell.parquet"
    with pytest.raises(DiskError) as info:
        write_atomic(read_cell(cell_file), out)
    assert str(info.value) == f"cannot write {out}: Read-only file system"

