"""benchmark/cli.py: the command line explains itself (every subcommand listed with one line of help, every
option with help text, choices and defaults shown, and --version); `run` writes a cell, the same seed giving
the same values; bad values and impossible combinations are refused naming what is allowed; `verify` lists and
removes bad cell files so that the normal run recomputes exactly those."""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import benchmark
from benchmark.cli import main
from benchmark.results import SCHEMA
from tests.test_results import _damaged_copies, cell_file  # noqa: F401  (cell_file: a fixture)


def _parser():
    """The CLI's parser, captured as main() builds it."""
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured.setdefault("parser", self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            main(["--help"])
    finally:
        argparse.ArgumentParser.parse_args = original
    return captured["parser"]


def test_help_lists_every_subcommand_with_a_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 10
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name in sub.choices:
        assert name in text and helps.get(name), name


def test_every_option_has_help_and_shows_its_default(capsys):
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        text = parser.format_help()
        for action in parser._actions:
            if action.choices and action.option_strings:
                assert "{" + ",".join(action.choices) + "}" in text, (name, action.dest)
    run = sub.choices["run"].format_help()
    assert "--algorithm {alg1,alg2}" in run and "(default: 1.0)" in run  # eta
    assert "one of: none, naive, gloss" in run  # the method registry's names


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and benchmark.__version__ in capsys.readouterr().out


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

