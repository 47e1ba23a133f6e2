"""benchmark/checkpoints.py: a checkpoint's content hash (its networks, not its training times) is what the
rows record and what identifies the cell; a damaged checkpoint is one line naming it and the command that
rebuilds it."""

import json
import shutil

import pytest

from benchmark.cell import Cell, CellSpec, run_cell
from benchmark.checkpoints import file_sha256
from benchmark.cli import main
from tests.test_cell import TINY


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

