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
