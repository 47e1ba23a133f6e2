import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.cell import CellSpec, run_cell, write_cell
from benchmark.cli import main
from benchmark.methods import METHODS
from benchmark.methods.base import GuidanceMethod
from benchmark.results import SCHEMA, aggregate, read_cell

ARGS = ["run", "--task", "subspace", "--objective", "quadratic_off", "--method", "gloss", "--strength", "0.2",
        "--seed", "0", "--rounds", "2", "--samples", "4", "--denoiser", "oracle", "--steps", "20"]


def test_run_writes_schema_and_metrics(tmp_path):
    out = tmp_path / "cell.parquet"
    assert main(ARGS + ["--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    df = table.to_pandas()
    assert {"reward_mean", "r_off", "reward_topk", "gap", "gap_support"} <= set(df.metric)
    assert sorted(df["round"].unique()) == [0, 1, 2]
    assert (df.status == "ok").all() and df.error.isna().all()
    assert (df.torch_version == torch.__version__).all() and (df.device == "cpu").all()
    r1 = df[(df["round"] == 1) & (df.metric == "reward_mean")].iloc[0]
    assert (r1.cost_denoiser_forwards, r1.cost_denoiser_vjps, r1.cost_objective_grads) == (80, 80, 4)
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_same_seed_gives_identical_values(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.parquet", "b.parquet", "c.parquet"))
    assert main(ARGS + ["--out", str(a)]) == 0
    assert main(ARGS + ["--out", str(b)]) == 0
    assert main([x if x != "0" else "1" for x in ARGS] + ["--out", str(c)]) == 0  # seed 1
    va, vb, vc = (pd.read_parquet(p).value.to_numpy() for p in (a, b, c))
    assert (va == vb).all()
    assert not (va == vc).all()


def test_several_seeds_in_one_process_equal_separate_runs(tmp_path):
    """Batching seeds into one process (to share start-up) changes nothing in the numbers."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    both = [tmp_path / "both0.parquet", tmp_path / "both1.parquet"]
    main(ARGS + ["--out", str(a)])
    main([x if x != "0" else "1" for x in ARGS] + ["--out", str(b)])
    i = ARGS.index("--seed")
    assert main(ARGS[:i + 1] + ["0", "1"] + ARGS[i + 2:] + ["--out", *map(str, both)]) == 0
    for single, batched in ((a, both[0]), (b, both[1])):
        sa, sb = pd.read_parquet(single), pd.read_parquet(batched)
        assert (sa.value.to_numpy() == sb.value.to_numpy()).all() and (sa.run_id == sb.run_id).all()


def test_methods_share_initial_noise(tmp_path):
    """Round 0 (unguided) is the same batch for every method of a comparison: paired comparisons."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    main(ARGS + ["--out", str(a)])
    main([x if x != "gloss" else "naive" for x in ARGS] + ["--out", str(b)])
    ra, rb = (pd.read_parquet(p).query("round == 0").value.to_numpy() for p in (a, b))
    assert (ra == rb).all()


@pytest.mark.parametrize("change, message", [
    (("--method", "gradient"), "unknown method 'gradient'; allowed:"),
    (("--task", "cube"), "unknown task 'cube'; allowed: \\['digits', 'images', 'latent', 'mixture', 'sphere', 'subspace'\\]"),
    (("--objective", "quadratic"), "has no objective 'quadratic'; allowed:"),
    (("--strength", "-0.5"), "strength must be >= 0"),
    (("--denoiser", "exact"), "denoiser 'exact' \\(loader 'checkpoint'\\) needs a source: --checkpoint FILE"),
    (("--loader", "exact"), "unknown denoiser loader 'exact'; allowed: \\['checkpoint', 'diffusers', 'diffusers_flow', 'diffusers_latent', 'oracle'\\]"),
    (("--samples", "0"), "samples must be >= 1"),
    (("--algorithm", "alg3"), "--algorithm: invalid choice: 'alg3' \\(choose from 'alg1', 'alg2'\\)"),
    (("--linearise", "mean"), "--linearise: invalid choice: 'mean' \\(choose from 'per_sample', 'batch_mean'\\)"),
    (("--steps", "500"), "steps must be in \\[1, T=200\\]"),
    (("--steps", "0"), "steps must be >= 1, got 0"),
])
def test_cli_errors_name_the_value_and_what_is_allowed(tmp_path, capsys, change, message):
    import re
    args = list(ARGS)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    out = tmp_path / "x.parquet"
    try:  # argparse refuses a value outside a field's choices itself (exit status 2)
        status = main(args + ["--out", str(out)])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_impossible_combinations(tmp_path, capsys):
    out = str(tmp_path / "x.parquet")
    assert main(["run", "--task", "sphere", "--objective", "linear", "--method", "gloss", "--denoiser", "oracle",
                 "--out", out]) == 2
    assert "no exact (oracle) denoiser" in capsys.readouterr().err
    assert main(ARGS + ["--algorithm", "alg2", "--out", out]) == 2
    assert "use denoiser 'trained'" in capsys.readouterr().err
    assert main(ARGS[:-6] + ["--denoiser", "trained", "--out", out]) == 2
    assert "needs a source: --checkpoint FILE" in capsys.readouterr().err


def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--task", "subspace", "--objective", "nope",
                           "--method", "none", "--out", str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert proc.returncode == 2 and "allowed" in proc.stderr


class _Exploding(GuidanceMethod):
    name = "exploding"

    def step(self, x_t, step, sampler, guide, noise):
        return x_t * float("nan")


class _Raising(GuidanceMethod):
    name = "raising"

    def step(self, x_t, step, sampler, guide, noise):
        raise RuntimeError("boom at step")


@pytest.mark.parametrize("cls, status, text", [(_Exploding, "diverged", "non-finite samples in round 1"),
                                                (_Raising, "failed", "RuntimeError: boom at step")])
def test_divergence_and_failure_are_recorded(tmp_path, monkeypatch, cls, status, text):
    monkeypatch.setitem(METHODS, cls.name, cls)
    spec = CellSpec.of(task="subspace", objective="quadratic_off", method=cls.name, rounds=3, samples=4, steps=10)
    rows = write_cell(spec, tmp_path / "bad.parquet")
    df = pd.read_parquet(tmp_path / "bad.parquet")
    assert len(df) == len(rows) > 0
    assert (df.status == status).all() and df.error.str.contains(text, regex=False).all()
    assert df["round"].max() == 1  # round 0 measured, the sweep stops at the failing round
    assert df.query("round == 0 and metric == 'reward_mean'").value.notna().all()


def test_every_counter_has_a_schema_column():
    """to_table keeps only schema columns: a counter without its column would vanish silently."""
    from benchmark.diffusion import Costs
    from benchmark.results import COLUMNS

    assert [f"cost_{k}" for k in Costs().as_dict()] == [c for c in COLUMNS if c.startswith("cost_")]


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


def test_slurm_job_id_in_provenance(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    rows = run_cell(CellSpec.of(task="subspace", objective="negnorm_ones", method="none", rounds=0, samples=2, steps=5))
    assert {r["slurm_job_id"] for r in rows} == {"4242"}


def test_cell_runs_on_the_test_device(device):
    """Every metric of a subspace cell is computed wherever the samples live (pytest --device cuda)."""
    rows = run_cell(CellSpec.of(task="subspace", objective="quadratic_off", method="gloss", strength=0.2, rounds=1,
                             samples=4, steps=10), device)
    assert {r["status"] for r in rows} == {"ok"} and {r["device"] for r in rows} == {device}
    assert {"r_off", "reward_mean"} <= {r["metric"] for r in rows}
