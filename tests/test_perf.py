"""The perf command's bookkeeping (not its timings): counted evaluations per sample and step equal
each method's formula, and the formula's time ratio of unguided sampling to itself is 1."""

import pytest

from benchmark.perf import _parse_methods, format_table, measure


def test_perf_counts_and_formula_ratio_bookkeeping():
    rows, prim = measure({"none": 0.0, "dps": 1.0, "shen": 0.01}, denoiser="oracle", samples=4, repeats=1,
                         steps=5, device="cpu")
    by = {r["method"]: r for r in rows}
    assert (by["none"]["f"], by["none"]["v"], by["none"]["g"]) == (1, 0, 0)
    assert (by["dps"]["f"], by["dps"]["v"], by["dps"]["g"]) == (1, 1, 1)
    assert (by["shen"]["f"], by["shen"]["v"], by["shen"]["g"]) == (2, 2, 20)
    assert by["none"]["formula_ratio"] == pytest.approx(1.0)
    assert by["none"]["measured_over_formula"] == pytest.approx(1.0)
    assert by["shen"]["formula_ratio"] > by["dps"]["formula_ratio"] > 1.0
    assert set(prim) == {"forward", "vjp", "objective_grad"}
    assert "meas/form" in format_table(rows, prim)


def test_perf_method_list_always_includes_the_unguided_baseline():
    assert _parse_methods(["dps=2", "tfg"]) == {"none": 0.0, "dps": 2.0, "tfg": 0.1}


# --- throughput mode (`perf --throughput`): the table's shape, never its speed -----------------------------

@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """--threads sets torch's thread count for the process: put it back for the tests that follow."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _throughput(tmp_path, *extra):
    """A tiny grid (2 batch sizes, 3 steps, 1 timed pass) on one thread: on a loaded machine, torch's
    default threads can make even this take many times longer."""
    from benchmark.cli import main

    return main(["perf", "--throughput", "--batch-sizes", "2,4", "--steps", "3", "--repeats", "1", "--threads", "1",
                 "--models-dir", str(tmp_path / "empty"), *extra])


def test_throughput_cli_one_row_per_setting_method_and_batch_size(tmp_path, capsys, monkeypatch):
    """No checkpoint under --models-dir (nor models/): a small ScoreMLP is trained on the spot for timing."""
    import csv

    from benchmark.perf import THROUGHPUT_COLUMNS

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "throughput.csv"
    assert _throughput(tmp_path, "--denoiser", "oracle", "trained", "--methods", "none,dps",
                       "--device", "cpu", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "chain-steps/s" in text and "x smallest N" in text and "torch threads" in text
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:len(THROUGHPUT_COLUMNS)] == list(THROUGHPUT_COLUMNS)
    assert {"torch", "torch_threads", "load_average_1min"} <= set(reader.fieldnames)
    keys = [(r["setting"], r["method"], int(r["batch"])) for r in rows]
    assert sorted(keys) == sorted((s, m, n) for s in ("oracle", "trained") for m in ("none", "dps") for n in (2, 4))
    for r in rows:
        assert float(r["seconds_per_pass"]) > 0 and float(r["chain_steps_per_second"]) > 0
        assert int(r["steps"]) == 3 and r["device"] == "cpu" and r["device_name"]
        assert float(r["chain_steps_per_second"]) == pytest.approx(int(r["batch"]) * 3 / float(r["seconds_per_pass"]))
        if int(r["batch"]) == 2:
            assert float(r["speedup"]) == 1.0
    dps = next(r for r in rows if r["method"] == "dps")
    assert (float(dps["fwd"]), float(dps["vjp"]), float(dps["G"])) == (1, 1, 1)
    for setting in ("oracle", "trained"):  # one table line per (setting, batch size) and method
        assert sum(line.split()[1:2] == [setting] for line in text.splitlines()) == 4


def test_throughput_json_and_device_all(tmp_path, capsys):
    """--device all times the CPU and, where there is one, CUDA; JSON names what produced the numbers."""
    import json

    import torch

    out = tmp_path / "t.json"
    assert _throughput(tmp_path, "--denoiser", "oracle", "--methods", "gloss", "--device", "all",
                       "--out", str(out)) == 0
    data = json.loads(out.read_text())
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert list(data["system"]["devices"]) == devices and data["system"]["torch"] == torch.__version__
    assert data["system"]["torch_threads"] == 1
    assert [(r["device"], r["batch"]) for r in data["rows"]] == [(d, n) for d in devices for n in (2, 4)]
    assert _throughput(tmp_path, "--denoiser", "oracle", "--out", str(tmp_path / "t.txt")) == 2
    assert ".csv or .json" in capsys.readouterr().err


def test_throughput_cuda_without_cuda_is_an_error_naming_what_is_allowed(tmp_path, capsys):
    """Chosen behaviour: asking for CUDA where there is none is refused (exit 2), never silently timed on the CPU."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: --device cuda is valid")
    assert _throughput(tmp_path, "--denoiser", "oracle", "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "'cuda'" in err and "CUDA is not available" in err and "allowed here: cpu, auto, all" in err


def test_perf_oracle_takes_no_checkpoint(capsys):
    """`perf --denoiser oracle` (per-method mode) does not pass the default checkpoint to the oracle."""
    from benchmark.cli import main

    assert main(["perf", "--denoiser", "oracle", "--methods", "none", "--samples", "2", "--steps", "2",
                 "--repeats", "1", "--threads", "1", "--device", "cpu"]) == 0
    assert "s/round" in capsys.readouterr().out
