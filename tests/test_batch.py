"""Batched cells (benchmark/batch.py): cells that differ only in strength and seed share one sampling pass,
and each cell's rows equal a solo run of it:

- exactly (every value, per-chain value and count) where batch independence already holds: the denoiser
  gives bit-identical rows for a batch of n B as for n batches of B (`_batch_invariant`; on this machine's
  BLAS the oracle at B = 8 does);
- else to the contract's atol = rtol = 1e-5 (matrix products that round differently with the batch size);
- counts, statuses, run ids and every setting column always exactly;

and a long cell killed mid-run resumes from its round checkpoint with the rows of an uninterrupted run.
"""

import math
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch

from benchmark.batch import check_group, group_key, groups, pack, passes
from benchmark.cell import resume_path, run_cell, run_cells, write_cells
from benchmark.cli import main
from benchmark.results import RUN_COLUMNS, read_cell
from benchmark.spec import CellSpec

BASE = dict(task="subspace", objective="quadratic_off", samples=8, steps=12)


def _batch_invariant(spec: CellSpec, n: int) -> bool:
    """Whether the cell's denoiser gives a batch of n B rows bit-identically to n batches of B."""
    from benchmark.cell import Cell

    model, B = Cell(spec, "cpu").sampler.denoiser.model, spec.rounds.samples
    x, t = torch.randn(n * B, 64, generator=torch.Generator().manual_seed(0)), torch.full((n * B,), 25)
    with torch.no_grad():
        return torch.equal(model(x, t), torch.cat([model(x[i * B:(i + 1) * B], t[:B]) for i in range(n)]))


def _tolerance(spec: CellSpec, n: int) -> float:
    return 0.0 if _batch_invariant(spec, n) else 1e-5


def _same_rows(batched: list[dict], solo: list[dict], atol: float = 0.0, rtol: float = 0.0) -> float:
    """Assert two cells' rows agree (values within atol + rtol |solo|, everything else equal, the run facts
    aside); return the largest difference of a value."""
    assert len(batched) == len(solo)
    worst = 0.0
    for a, b in zip(batched, solo):
        for key in a:
            if key in RUN_COLUMNS:
                continue
            if key in ("value", "per_sample") and a[key] is not None and b[key] is not None:
                xs, ys = (a[key], b[key]) if key == "per_sample" else ([a[key]], [b[key]])
                assert len(xs) == len(ys)
                for x, y in zip(xs, ys):
                    if math.isnan(x) and math.isnan(y):
                        continue
                    worst = max(worst, abs(x - y))
                    assert abs(x - y) <= atol + rtol * abs(y), (key, a["round"], a["metric"], x, y)
            else:
                assert a[key] == b[key], (key, a[key], b[key])
    return worst


# One setting per kind of method: Algorithm 1 (per chain and batch-mean linearisation), training-free,
# strength 0 with and without gradients (tfg), inference compute (bon: strengths apart; smc: lambda per chain).
ORACLE = [
    ("gloss", [0.05, 0.2, 0.2], {"rounds": 2}),
    ("naive", [0.1, 0.9, 0.9], {"rounds": 2, "linearise": "batch_mean", "objective": "negnorm_ones"}),
    ("dps", [0.1, 1.0, 1.0], {"rounds": 1}),
    ("tfg", [0.0, 0.1, 0.1], {"rounds": 1}),
    ("smc", [1.0, 3.0, 3.0], {"rounds": 1, "params": {"particles": 3}}),
    ("bon", [0.0, 0.0, 0.0], {"rounds": 1}),
    ("bon", [0.1, 0.3, 0.3], {"rounds": 1, "params": {"proposal": "dps", "n": 2}}),   # strengths in separate passes
    ("none", [0.0, 0.0, 0.0], {"rounds": 1}),
]


@pytest.mark.parametrize("method,strengths,extra", ORACLE, ids=[f"{m}-{e.get('params', '')}" for m, _, e in ORACLE])
def test_a_group_on_the_oracle_equals_solo_runs_exactly(method, strengths, extra):
    seeds = [0, 0, 1] if len(set(strengths)) > 1 else [0, 1, 2]
    specs = [CellSpec.of(**(BASE | extra), method=method, strength=s, seed=d) for s, d in zip(strengths, seeds)]
    tol = _tolerance(specs[0], len(specs))
    for spec, rows in zip(specs, run_cells(specs, "cpu", progress=False)):
        _same_rows(rows, run_cell(spec, "cpu", progress=False), atol=tol, rtol=tol)
        assert {r["batch_cells"] for r in rows} <= set(range(1, len(specs) + 1))
        assert {r["status"] for r in rows} == {"ok"}


def test_passes_share_what_can_be_shared():
    spec = CellSpec.of(**BASE, method="tfg", rounds=1)
    cells = [spec.replace(strength=s, seed=d) for s in (0.0, 0.1, 0.3) for d in (0, 1)]
    # tfg at strength 0 takes no gradient (a cheaper cost formula): its cells run apart from the others
    assert passes(cells) == [[0, 1], [2, 3, 4, 5]]
    bon = CellSpec.of(**BASE, method="bon", rounds=1, params={"proposal": "dps"})
    cells = [bon.replace(strength=s, seed=d) for s in (0.1, 0.3) for d in (0, 1)]
    assert passes(cells) == [[0, 1], [2, 3]]                         # bon batches seeds, not strengths
    alg2 = CellSpec.of(**BASE, method="gloss", rounds=1, algorithm="alg2", denoiser="trained", checkpoint="x.st")
    assert passes([alg2.replace(seed=0), alg2.replace(seed=1)]) == [[0], [1]]   # each fine-tunes its own network
    gloss = CellSpec.of(**BASE, method="gloss", rounds=1)
    assert passes([gloss.replace(strength=s, seed=d) for s in (0.1, 0.2) for d in (0, 1)]) == [[0, 1, 2, 3]]


def test_round_zero_is_sampled_once_per_job_and_every_cell_still_counts_it(monkeypatch):
    """Round 0 (unguided) of a seed is the same batch for every method: later passes of a job reuse the first
    pass's, and each cell's rows (counted costs included) are those of its group run alone."""
    import benchmark.optimize as optimize

    calls = []
    real = optimize.sample

    def spy(sampler, method, x_T, noise, *rest, **kw):
        calls.append((method.name, len(x_T)))
        return real(sampler, method, x_T, noise, *rest, **kw)

    monkeypatch.setattr(optimize, "sample", spy)
    specs = [CellSpec.of(**BASE, method=m, strength=s, seed=d, rounds=1)
             for m, s in (("dps", 0.3), ("freedom", 0.1), ("none", 0.0)) for d in (0, 1)]
    joint = run_cells(specs, "cpu", progress=False)
    B = BASE["samples"]
    # round 0 of seeds 0 and 1 once, in the first pass; then each pass's round 1 ("none": unguided too)
    assert calls == [("none", 2 * B), ("dps", 2 * B), ("freedom", 2 * B), ("none", 2 * B)]
    for i in (0, 2, 4):
        for rows, alone in zip(joint[i:i + 2], run_cells(specs[i:i + 2], "cpu", progress=False)):
            _same_rows(rows, alone)                    # same values and counted costs, exactly
    reused = [r for r in joint[4] if r["round"] == 0 and r["metric"] == "reward_mean"][0]
    assert reused["cost_denoiser_forwards"] == B * BASE["steps"]
    assert reused["wall_seconds"] > 0                 # and the seconds it took when it was sampled
    # the key: the objective and method do not matter to a built-in loader's model; a plug-in's may read them
    from benchmark.cell import Cell
    from benchmark.denoisers import DENOISERS
    from benchmark.denoisers.loaders import DenoiserLoader

    assert Cell(specs[0], "cpu").round0_key() == Cell(specs[0].replace(objective="negnorm_ones"), "cpu").round0_key()
    assert all(DENOISERS[name].reads == () for name in ("oracle", "checkpoint", "diffusers"))
    assert DenoiserLoader.reads == ("objective", "objective_params", "rounds")
    # another batch size or grid is another round 0
    calls.clear()
    run_cells([specs[0], specs[2].replace(samples=4), specs[4].replace(steps=6)], "cpu", progress=False)
    assert [n for m, n in calls if m == "none"] == [B, 4, B, B]   # three rounds 0, and none's round 1


def test_a_group_is_cells_that_differ_only_in_strength_and_seed():
    spec = CellSpec.of(**BASE, method="dps", rounds=1)
    with pytest.raises(ValueError, match=r"differ only in strength and seed; these also differ in \['sampling'\]"):
        check_group([spec, spec.replace(steps=20, seed=1)])
    with pytest.raises(ValueError, match="lists a cell twice"):
        check_group([spec, spec])
    assert group_key(spec) == group_key(spec.replace(strength=3.0, seed=9))
    cells = {f"c{i}": spec.replace(strength=0.1 * i) for i in range(5)} | {"other": spec.replace(steps=20)}
    assert groups(cells, 2) == {"c0+2": ["c0", "c1"], "c2+2": ["c2", "c3"], "c4": ["c4"], "other": ["other"]}
    with pytest.raises(ValueError, match="group size must be >= 1"):
        groups(cells, 0)


def test_jobs_are_packed_whole_and_of_even_work():
    w = {f"c{i}": float(v) for i, v in enumerate([9, 1, 1, 5, 5, 4, 3, 2, 2, 8])}
    chunks = [["c0"], ["c1", "c2"], ["c3", "c4"], ["c5", "c6"], ["c7", "c8"], ["c9"]]
    jobs = pack(chunks, w, 4)
    assert len(jobs) == 3                                              # ceil(10 / 4)
    assert sorted(c for j in jobs for c in j) == sorted(w)             # every cell once
    for chunk in chunks:                                               # chunks whole
        assert any(all(c in j for c in chunk) for j in jobs)
    loads = [sum(w[c] for c in j) for j in jobs]
    assert loads == sorted(loads, reverse=True) and max(loads) - min(loads) <= max(w.values())
    assert loads == [15.0, 13.0, 12.0]                                 # LPT: 8+7, 9+4, 10+2
    # sizes that do not fit ceil(n / size) jobs open another; no job over size
    jobs = pack([["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]], dict.fromkeys("abcdefghi", 1.0), 4)
    assert len(jobs) == 3 and all(len(j) <= 4 for j in jobs)
    # spread: at least that many jobs (so few cells still use several cores), at most one per chunk
    assert len(pack(chunks, w, 100)) == 1
    assert [sum(w[c] for c in j) for j in pack(chunks, w, 100, spread=2)] == [21.0, 19.0]   # 10+7+4, 9+8+2
    assert len(pack(chunks, w, 100, spread=10)) == len(chunks)


def test_a_diverging_cell_leaves_the_pass_and_the_others_are_unchanged():
    # mpgd with a huge step overflows to inf in its first guided round; the other goes on alone (rounds 2, 3)
    specs = [CellSpec.of(**BASE, method="mpgd", rounds=3, strength=s) for s in (0.1, 1e38)]
    ok, bad = run_cells(specs, "cpu", progress=False)
    assert {r["status"] for r in bad} == {"diverged"} and "non-finite samples in round 1" in bad[0]["error"]
    assert {r["status"] for r in ok} == {"ok"}
    assert {r["round"] for r in bad} == {0, 1} and {r["round"] for r in ok} == {0, 1, 2, 3}
    tol = _tolerance(specs[0], 2)
    _same_rows(ok, run_cell(specs[0], "cpu", progress=False), atol=tol, rtol=tol)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny trained subspace denoiser."""
    from benchmark.denoisers import pretrain, save_checkpoint
    from benchmark.tasks import make_task

    path = tmp_path_factory.mktemp("models") / "subspace_denoiser.safetensors"
    model, schedule, report = pretrain(make_task("subspace"), T=50, hidden=32, depth=2, n_train=512, n_heldout=64,
                                       epochs=1, batch_size=64, seed=0)
    save_checkpoint(path, model, schedule, report)
    return path


@pytest.mark.parametrize("method,strengths", [("gloss", [0.05, 0.2]), ("freedom", [0.1, 1.0])])
def test_a_group_on_a_trained_network_equals_solo_runs_to_the_tolerance(checkpoint, method, strengths):
    base = CellSpec.of(**BASE, method=method, rounds=2, denoiser="trained", checkpoint=str(checkpoint))
    specs = [base.replace(strength=s, seed=d) for s in strengths for d in (0, 1)]
    tol = _tolerance(specs[0], len(specs))
    for spec, rows in zip(specs, run_cells(specs, "cpu", progress=False)):
        _same_rows(rows, run_cell(spec, "cpu", progress=False), atol=tol, rtol=tol)


def test_algorithm2_cells_of_one_group_each_fine_tune_a_fresh_network(checkpoint):
    """Two Algorithm-2 cells in one call: each starts from the checkpoint, as alone (not from the weights
    the other left behind)."""
    base = CellSpec.of(**BASE, method="gloss", strength=0.1, rounds=3, algorithm="alg2", denoiser="trained",
                       checkpoint=str(checkpoint), finetune_start=1, finetune_steps=2)
    specs = [base.replace(seed=0), base.replace(seed=1)]
    for spec, rows in zip(specs, run_cells(specs, "cpu", progress=False)):
        assert _same_rows(rows, run_cell(spec, "cpu", progress=False)) == 0.0
        assert sum(r["cost_finetune_samples"] for r in rows if r["metric"] == "reward_mean") > 0


def test_the_cli_runs_a_group_and_writes_each_cell(tmp_path, capsys):
    outs = [tmp_path / f"c{i}.parquet" for i in range(3)]
    spec = CellSpec.of(**BASE, method="dps", rounds=1)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--spec", spec.to_json(), "--seed", "0", "1", "0",
                           "--strengths", "0.1", "0.1", "1.0", "--out", *map(str, outs)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tables = [read_cell(o).to_pylist() for o in outs]
    assert [(t[0]["strength"], t[0]["seed"], t[0]["batch_cells"]) for t in tables] == [(0.1, 0, 3), (0.1, 1, 3),
                                                                                         (1.0, 0, 3)]
    solo = run_cell(spec.replace(strength=1.0), "cpu", progress=False)
    tol = _tolerance(spec, 3)
    _same_rows(tables[2], solo, atol=tol, rtol=tol)
    # the other forms in this process (the entry point itself is checked above)
    assert main(["run", "--spec", spec.to_json(), "--seed", "0", "1", "--strengths", "0.1",
                 "--out", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]) == 2
    assert "--strengths and --seed must pair up one to one" in capsys.readouterr().err
    # one spec and no --seed: the spec's own seed (an evaluation job of one cell), and several specs
    seeded = [spec.replace(seed=7, strength=0.3), spec.replace(seed=8, strength=0.1)]
    for given in ([seeded[0]], seeded):
        outs = [str(tmp_path / f"own{i}.parquet") for i in range(len(given))]
        assert main(["run", "--spec", *(s.to_json() for s in given), "--out", *outs]) == 0
        assert [(read_cell(o)["seed"][0].as_py(), read_cell(o)["strength"][0].as_py()) for o in outs] == \
            [(s.seed, s.strength) for s in given]


# --- long cells that resume -----------------------------------------------------------------------------

LONG = dict(task="subspace", objective="quadratic_off", method="gloss", strength=0.1, samples=4, steps=5, rounds=400)


def _kill_after(args: list[str], checkpoint, round_at_least: int, cwd) -> None:
    """Run `python -m benchmark run ARGS`, SIGKILL it once its round checkpoint has passed a round."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if checkpoint.exists():
                try:
                    state = torch.load(checkpoint, weights_only=True)
                except Exception:  # being replaced: try again
                    state = None
                if state is not None and state["round"] >= round_at_least:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the cell ended before it could be killed: make it longer"


@pytest.mark.slow   # end to end: a process killed and rerun, a 400-round cell three times (28 s here)
@pytest.mark.parametrize("algorithm", ["alg1", "alg2"])
def test_a_killed_long_cell_resumes_from_its_round_checkpoint(checkpoint, tmp_path, algorithm):
    """Killed after its round checkpoint at round >= 10 (k = 5), a 400-round cell resumes there and ends with
    the rows of an uninterrupted run; Algorithm 2 restores the fine-tuned weights, optimiser and RNG too."""
    spec = CellSpec.of(**LONG, algorithm=algorithm, denoiser="trained", checkpoint=str(checkpoint),
                       finetune_steps=2, finetune_start=1)   # fine-tuning from round 1: its state is restored
    out = tmp_path / "cell.parquet"
    args = ["--spec", spec.to_json(), "--seed", "0", "--out", str(out), "--checkpoint-every", "5"]
    _kill_after(args, resume_path(out), 10, tmp_path)
    assert not out.exists()
    state = torch.load(resume_path(out), weights_only=True)
    assert state["round"] % 5 == 0 and state["round"] >= 10 and not state["finished"]
    assert state["z"].shape == (4, 64) and state["target_g"].shape == (4, 64) and state["target_y"].shape == (4,)
    assert ("trainable" in state and "ft_gen" in state) == (algorithm == "alg2")
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming 1 cell(s) after round {state['round']}" in proc.stderr
    assert not resume_path(out).exists()                                  # removed once the file is written
    resumed = pq.read_table(out).to_pylist()
    assert max(r["round"] for r in resumed) == 400
    whole = run_cell(spec, "cpu", progress=False)
    assert _same_rows(resumed, whole) == 0.0


def test_a_group_resumes_cell_by_cell(tmp_path, monkeypatch):
    """A tfg group of two passes (strengths 0.1 and 0.2; strength 0, which takes no gradient) killed after the
    first pass's round 8 and after the second pass finished: the rerun takes the finished cell's rows from its
    checkpoint, resumes the first pass after round 8, and ends with the rows of an uninterrupted run. (Saved
    rows are marked wall_seconds = -1 to see which were reused.)"""
    from benchmark import cell as cell_module

    spec = CellSpec.of(**(LONG | {"rounds": 12, "method": "tfg"}))
    specs = [spec.replace(strength=0.1), spec.replace(strength=0.2), spec.replace(strength=0.0)]
    outs = [tmp_path / f"c{i}.parquet" for i in range(3)]
    saved: dict = {}
    real_save = cell_module._save_resume
    monkeypatch.setattr(cell_module, "_save_resume",
                        lambda path, state: (saved.setdefault(path, []).append(state), real_save(path, state)))
    full = write_cells(specs, outs, "cpu", progress=False, checkpoint_every=4)
    monkeypatch.setattr(cell_module, "_save_resume", real_save)
    for i, out in enumerate(outs):
        out.unlink()
        state = next(s for s in saved[resume_path(out)] if (s["finished"] if i == 2 else s["round"] == 8))
        state["rows"] = [r | {"wall_seconds": -1.0} for r in state["rows"]]
        real_save(resume_path(out), state)
    again = write_cells(specs, outs, "cpu", progress=False, checkpoint_every=4)
    for i, (a, b) in enumerate(zip(again, full)):
        assert _same_rows(a, b) == 0.0
        reused = {r["round"] for r in read_cell(outs[i]).to_pylist() if r["wall_seconds"] == -1.0}
        assert reused == (set(range(13)) if i == 2 else set(range(9)))
    assert not any(resume_path(o).exists() for o in outs)


@pytest.mark.parametrize("damage, warning", [
    (lambda path, state: path.write_bytes(path.read_bytes()[:50]), "ignoring the round checkpoint"),
    (lambda path, state: torch.save(state | {"git_commit": "0" * 40}, path), "made by other code"),
    (lambda path, state: torch.save(state | {"rows": "[{"}, path), "its rows are unreadable"),
    (lambda path, state: None, None),                                   # intact: resumed
])
def test_a_damaged_foreign_or_unreadable_round_checkpoint_is_ignored_with_a_warning(tmp_path, caplog, damage,
                                                                                     warning):
    """The cell then runs from round 0 and its rows are those of a fresh run (an intact one is resumed)."""
    from benchmark import cell as cell_module

    spec = CellSpec.of(**(LONG | {"rounds": 4}))
    out = tmp_path / "c.parquet"
    saved = []
    real_save = cell_module._save_resume
    cell_module._save_resume = lambda path, state: (saved.append(state), real_save(path, state))
    try:
        full = write_cells([spec], [out], "cpu", progress=False, checkpoint_every=2)[0]
    finally:
        cell_module._save_resume = real_save
    out.unlink()
    state = next(s for s in saved if not s["finished"] and s["round"] == 2)
    real_save(resume_path(out), state)
    raw = torch.load(resume_path(out), weights_only=True)
    assert isinstance(raw["rows"], str)                      # the rows as one JSON string
    damage(resume_path(out), raw)
    with caplog.at_level("INFO", logger="benchmark.cell"):
        again = write_cells([spec], [out], "cpu", progress=False, checkpoint_every=2)[0]
    if warning is None:
        assert "resuming 1 cell(s) after round 2" in caplog.text and "ignoring" not in caplog.text
    else:
        assert warning in caplog.text and "resuming" not in caplog.text
    assert _same_rows(again, full) == 0.0
