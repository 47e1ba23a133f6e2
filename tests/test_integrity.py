"""Nothing silently wrong: damaged results and checkpoints are named, never aggregated or loaded;
each cell counts once; every row says which networks made it; disk errors are one line."""

import errno
import re
import hashlib
import json
import shutil
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.cell import Cell, CellSpec, run_cell, write_cell
from benchmark.checkpoints import file_sha256
from benchmark.cli import main
from benchmark.results import (BadResultsError, DiskError, ResultsFileError, aggregate, aggregate_or_retract,
                               read_cell, to_table, write_atomic)

TINY = dict(task="subspace", objective="negnorm_ones", method="none", rounds=1, samples=4, steps=5)


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


def test_verify_lists_and_removes_bad_cells_with_their_galleries(cell_file, tmp_path, capsys):
    results = tmp_path / "results"
    bad = _damaged_copies(cell_file, results / "cells" / "digits")
    for p in bad.values():
        p.with_suffix(".png").write_bytes(b"png")
    good = results / "cells" / "digits" / "good.parquet"
    shutil.copy(cell_file, good)
    good.with_suffix(".png").write_bytes(b"png")
    (results / "cells" / "digits" / ".good.parquet.123.tmp").write_bytes(b"")  # a write in progress: no cell

    assert main(["verify", str(results)]) == 1
    err = capsys.readouterr().err
    assert all(f"bad: {p}:" in err for p in bad.values()) and f"bad: {good}" not in err
    assert f"{len(bad) + 1} cell files checked, {len(bad)} bad" in err
    assert f"python -m benchmark verify {results} --remove-bad" in err
    assert all(p.exists() for p in bad.values())  # only listed

    assert main(["verify", str(results), "--remove-bad"]) == 0
    err = capsys.readouterr().err
    assert not any(p.exists() or p.with_suffix(".png").exists() for p in bad.values())
    assert good.exists() and good.with_suffix(".png").exists()
    assert f"removed: {bad['zero']}" in err and "snakemake --cores all" in err
    assert main(["verify", str(results)]) == 0
    assert "1 cell files checked, 0 bad" in capsys.readouterr().err


# --- checkpoints ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny subspace denoisers (seeds 0 and 1) as the workflow names them."""
    from benchmark.denoisers import pretrain, save_checkpoint
    from benchmark.tasks import make_task

    folder = tmp_path_factory.mktemp("models")
    task = make_task("subspace")
    paths = []
    for seed in (0, 1):
        model, schedule, report = pretrain(task, T=20, hidden=8, depth=1, n_train=64, n_heldout=64, epochs=1,
                                           batch_size=32, seed=seed)
        path = folder / f"seed{seed}" / "subspace_denoiser.safetensors"
        save_checkpoint(path, model, schedule, report)
        paths.append(path)
    return paths


def _trained(checkpoint) -> CellSpec:
    return CellSpec.of(**(TINY | {"rounds": 0, "steps": 2}), denoiser="trained", checkpoint=str(checkpoint))


def test_rows_record_the_checkpoint_and_its_id_follows_its_content(checkpoints, tmp_path):
    live = tmp_path / "subspace_denoiser.safetensors"
    shutil.copy(checkpoints[0], live)
    rows = run_cell(_trained(live))
    sha = file_sha256(live)
    assert {r["checkpoint_sha256"] for r in rows} == {sha}
    info = json.loads(rows[0]["checkpoint_info"])["denoiser"]
    assert (info["sha256"], info["file"], info["epochs"]) == (sha, str(live), 1)
    assert info["heldout_loss"] > 0 and info["n_params"] > 0
    first_id = Cell(_trained(live)).run_id()
    assert {r["run_id"] for r in rows} == {first_id}
    shutil.copy(checkpoints[1], live)  # another checkpoint under the same name: another cell
    assert Cell(_trained(live)).run_id() != first_id
    assert {r["checkpoint_sha256"] for r in run_cell(_trained(live))} == {file_sha256(live)}


def test_the_checkpoint_hash_is_the_networks_not_its_training_times(checkpoints, tmp_path):
    """A bit-identical retraining differs only in its report's wall times: the same hash, the same cell.
    Any change of a weight, of the architecture or schedule metadata is another hash."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    def rewrite(path, tensors=None, meta=None):
        with safe_open(str(checkpoints[0]), "pt") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
            m = dict(f.metadata())
        save_file(t | (tensors or {}), str(path), metadata=m | (meta or {}))
        return t, m

    a, b, c, d = (tmp_path / f"{x}.safetensors" for x in "abcd")
    t, m = rewrite(a)
    report = json.loads(m["report"])
    rewrite(b, meta={"report": json.dumps(report | {"wall_seconds": report.get("wall_seconds", 0) + 7.0})})
    assert a.read_bytes() != b.read_bytes() and file_sha256(a) == file_sha256(b)
    name = sorted(t)[0]
    rewrite(c, tensors={name: t[name] + 1e-6})
    rewrite(d, meta={"config": m["config"] + " "})
    assert len({file_sha256(p) for p in (a, c, d)}) == 3


def test_oracle_cells_are_identified_by_their_spec_and_record_no_checkpoint():
    from benchmark.cell import Cell

    spec = CellSpec.of(**TINY)
    blob = json.dumps({"spec": spec.identity(), "checkpoint_sha256": None}, sort_keys=True)
    assert Cell(spec).run_id() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    # where the files lie is not the cell; every setting that changes values is
    assert Cell(spec.replace(models_dir="elsewhere")).run_id() == Cell(spec).run_id()
    for change in ({"seed": 1}, {"steps": 3}, {"eta": 0.5}, {"schedule": "linear"}, {"task_seed": 1}):
        assert Cell(spec.replace(**change)).run_id() != Cell(spec).run_id(), change
    rows = run_cell(spec.replace(rounds=0))
    assert {r["checkpoint_sha256"] for r in rows} == {None} and {r["checkpoint_info"] for r in rows} == {None}


def test_digits_cells_hash_every_network_file_they_load(digits_models, tmp_path):
    from benchmark.tasks.digits import MODEL_FILES

    models = tmp_path / "models"
    shutil.copytree(digits_models, models)
    spec = CellSpec.of(task="digits", objective="label", method="cg", denoiser="trained",
                    checkpoint=str(models / MODEL_FILES["denoiser"]), models_dir=str(models))
    cell = Cell(spec)
    assert set(cell.networks) == {"denoiser", "classifier", "noisy_classifier", "evaluator"}
    digests = {k: file_sha256(models / MODEL_FILES[k]) for k in cell.networks}
    lines = "".join(f"{k} {digests[k]}\n" for k in sorted(digests))
    assert cell.checkpoint_sha256() == hashlib.sha256(lines.encode()).hexdigest()
    assert set(json.loads(cell.checkpoint_info())) == set(digests)
    inpaint = CellSpec.of(task="digits", objective="inpaint", method="dps", denoiser="trained",
                          checkpoint=spec.denoiser.source, models_dir=str(models))
    assert set(Cell(inpaint).networks) == {"denoiser", "evaluator"}
    before = cell.run_id()
    evaluator = models / MODEL_FILES["evaluator"]
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(evaluator), "pt") as f:  # any change of a loaded file is another cell
        t, m = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    name = sorted(t)[0]
    save_file(t | {name: t[name] + 1e-6}, str(evaluator), metadata=m)
    assert Cell(spec).run_id() != before


@pytest.mark.parametrize("damage", ["zero", "truncated", "random"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_its_rebuild(checkpoints, tmp_path, capsys, damage):
    path = tmp_path / "models" / "subspace_denoiser.safetensors"
    path.parent.mkdir()
    data = checkpoints[0].read_bytes()
    path.write_bytes({"zero": b"", "truncated": data[: len(data) // 2], "random": bytes(range(256)) * 16}[damage])
    out = tmp_path / "x.parquet"
    args = ["run", "--task", "subspace", "--objective", "negnorm_ones", "--method", "none", "--rounds", "0",
            "--samples", "2", "--steps", "2", "--denoiser", "trained", "--checkpoint", str(path), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path} is not a valid checkpoint (")
    assert (f"rebuild it: rm {path} and rerun `snakemake --cores all`, or `python -m benchmark pretrain --task "
            f"subspace --network denoiser --out {path}`") in err
    assert not out.exists()


def test_a_damaged_classifier_names_its_network(tmp_path):
    from benchmark.classifiers import load_classifier
    from benchmark.denoisers import CheckpointError

    path = tmp_path / "digits_evaluator.safetensors"
    path.write_bytes(b"\x08" + bytes(100))
    with pytest.raises(CheckpointError, match=r"--task digits --network evaluator --out .*digits_evaluator"):
        load_classifier(path, "evaluator")


# --- per-chain values -------------------------------------------------------------------------

def test_per_sample_values_on_the_reward_and_fidelity_rows():
    rows = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, rounds=1,
                             samples=5, steps=5))
    for r in rows:
        if r["metric"] in ("reward_mean", "r_off"):
            assert len(r["per_sample"]) == 5
            assert sum(r["per_sample"]) / 5 == pytest.approx(r["value"], rel=1e-6)
        else:
            assert r["per_sample"] is None
    # chain i of every method starts from the same noise: round 0 (unguided) agrees chain by chain
    other = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="naive", strength=0.3, rounds=0,
                              samples=5, steps=5))
    per = {(r["round"], r["metric"]): r["per_sample"] for r in rows}
    assert per[(0, "reward_mean")] == next(r["per_sample"] for r in other if r["metric"] == "reward_mean")
    assert to_table(rows).column("per_sample").type == pa.list_(pa.float64())


def test_sphere_fidelity_is_per_sample():
    import torch

    from benchmark.metrics import sample_measures
    from benchmark.tasks import make_task

    task = make_task("sphere")
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    means, per = sample_measures(x, task.objective("linear"), task)
    expected = (torch.linalg.vector_norm(x, dim=-1) - 1).abs()
    assert per["norm_error"] == pytest.approx(expected.tolist())
    assert means["norm_error"] == float(expected.mean())
    assert len(per["reward_mean"]) == 6 and set(per) == {"reward_mean", "norm_error"}


# --- disk errors ------------------------------------------------------------------------------

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


def test_after_remove_bad_the_normal_run_recomputes_exactly_those_cells(cell_file, tmp_path):
    """`verify --remove-bad` then Snakemake: only the removed cells' jobs are scheduled (dry run)."""
    import subprocess
    import sys

    import yaml

    from benchmark.sweep import cells_from_config

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config/smoke.yaml").read_text())
    config |= {"experiments": {"oracle": config["experiments"]["oracle"]}, "group_size": 1,
               "results_dir": "results"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    files = [tmp_path / "results" / "cells" / f"{c}.parquet" for c in cells_from_config(config)]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cell_file, f)
    damaged = files[1]
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert main(["verify", str(tmp_path / "results"), "--remove-bad"]) == 0
    assert not damaged.exists() and all(f.exists() for f in files if f != damaged)
    targets = [str(f.relative_to(tmp_path)) for f in files]  # every cell of the sweep
    proc = subprocess.run([sys.executable, "-m", "snakemake", *targets, "-n", "--snakefile", str(root / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = (proc.stdout + proc.stderr).partition("Building DAG of jobs")[2]  # not the command line echoed
    assert re.search(r"^tune_subspace_\d+\s+1$", out, re.M) and re.search(r"^total\s+1$", out, re.M), out[-3000:]
    assert str(damaged.relative_to(tmp_path)) in out
    assert not any(str(f.relative_to(tmp_path)) in out for f in files if f != damaged)
