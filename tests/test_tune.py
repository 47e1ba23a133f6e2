"""TFG's beam search: the search logic on a known function, and one real (tiny) search."""

import math

import pytest

from benchmark.cell import CellSpec
from benchmark.tune import TFG_FACTORS, TFG_START, beam_search, best, cell_score


def test_beam_search_climbs_a_known_function_and_scores_each_setting_once():
    calls = []

    def score(p):                                   # best at strength = 2, mu = 1 (on the grid 0.25 * 2^k)
        calls.append(p)
        return -(math.log2(p["strength"]) - 1) ** 2 - math.log2(p["mu"]) ** 2

    trials = beam_search(score, {"strength": 0.25, "mu": 0.25}, {"strength": 2.0, "mu": 2.0}, beam=2, rounds=6)
    assert best(trials).as_dict() == {"strength": 2.0, "mu": 1.0}
    assert len(calls) == len({tuple(sorted(c.items())) for c in calls}) == len(trials)
    assert len(trials) <= 1 + 6 * 2 * 2


def test_diverged_settings_rank_last():
    trials = beam_search(lambda p: math.nan if p["strength"] > 1 else p["strength"], {"strength": 0.25},
                         {"strength": 2.0}, beam=1, rounds=4)
    assert best(trials).as_dict() == {"strength": 1.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="beam must be >= 1"):
        beam_search(lambda p: 0.0, {"strength": 1.0}, {"strength": 2.0}, beam=0)
    with pytest.raises(ValueError, match="without a start value: \\['gamma'\\]"):
        beam_search(lambda p: 0.0, {"strength": 1.0}, {"gamma": 10.0})


def _fake_cells(monkeypatch, value):
    """run_cell replaced by a known function of a cell's settings: value(strength, params) on the guided
    round's reward_mean (round 0 and other metrics carry decoys); returns the specs run."""
    import benchmark.cell

    specs = []

    def run_cell(spec, device="auto", progress=None):
        specs.append(spec)
        row = {"status": "ok", "metric": "reward_mean"}
        return [row | {"round": 0, "value": 1e9}, row | {"metric": "r_off", "round": 1, "value": 1e9},
                row | {"round": 1, "value": value(spec.strength, spec.params)}]

    monkeypatch.setattr(benchmark.cell, "run_cell", run_cell)
    return specs


def test_tfg_search_through_cells_finds_a_known_optimum(monkeypatch):
    """TFG's moves from TFG's start over cells whose guided-round reward peaks at strength 1, mu 0.5,
    gamma 2.5 (on the grids 0.25 * 2^i, 0.25 * 2^j, 0.25 * 10^k): the search ends there, each cell run
    for one guided round with the method's fixed parameters kept and the strength as the cell's."""
    def reward(strength, params):
        return -math.log2(strength) ** 2 - math.log2(params["mu"] / 0.5) ** 2 - math.log10(params["gamma"] / 2.5) ** 2

    specs = _fake_cells(monkeypatch, reward)
    base = CellSpec.of(task="subspace", objective="negnorm_random", method="tfg", samples=4, steps=10, rounds=50)
    trials = beam_search(cell_score(base, {"n_s": 2}), TFG_START, TFG_FACTORS, beam=2, rounds=6)
    assert best(trials).as_dict() == pytest.approx({"strength": 1.0, "mu": 0.5, "gamma": 2.5})
    assert best(trials).score == pytest.approx(0.0, abs=1e-12)
    assert len(specs) == len(trials)
    assert all(s.rounds.rounds == 1 and s.params["n_s"] == 2 and "strength" not in s.params for s in specs)
    assert {(s.strength, s.params["mu"], s.params["gamma"]) for s in specs} == {
        tuple(t.as_dict()[k] for k in ("strength", "mu", "gamma")) for t in trials}

    # A metric to minimise: the search finds the lowest value.
    _fake_cells(monkeypatch, lambda strength, params: (math.log2(strength) - 2) ** 2)
    score = cell_score(base, {}, maximise=False)
    trials = beam_search(score, {"strength": 0.25}, {"strength": 2.0}, beam=1, rounds=6)
    assert best(trials).as_dict() == {"strength": 4.0}


def test_tfg_search_on_the_oracle_improves_on_its_start():
    base = CellSpec.of(task="subspace", objective="negnorm_random", method="tfg", samples=4, steps=10,
                    denoiser="oracle")
    trials = beam_search(cell_score(base, {"n_s": 2}, device="cpu"), TFG_START, TFG_FACTORS, beam=2, rounds=2)
    start = next(t for t in trials if t.round == 0)
    assert best(trials).score > start.score


def test_tune_cli_prints_every_setting_and_the_best(capsys):
    from benchmark.cli import main

    assert main(["tune", "--task", "subspace", "--objective", "negnorm_random", "--samples", "4", "--steps", "5",
                 "--rounds", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "best: --method tfg --strength" in out and "(4 settings scored)" in out
    assert main(["tune", "--task", "subspace", "--objective", "nope"]) == 2
