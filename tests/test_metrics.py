"""benchmark/metrics.py: what a cell measures. The reward statistics are declared once, here; every metric a
built-in task records is declared (its directions: tests/report/test_directions.py); fidelity is per sample."""

from __future__ import annotations

import pytest

from benchmark.metrics import METRIC_DIRECTIONS as MEASURED
from benchmark.metrics import sample_measures
from benchmark.report import aggregate as agg


def _declared(task: str) -> dict:
    return agg.declared_directions(task)


def _undeclared(metrics, task: str) -> set[str]:
    return set(metrics) - set(MEASURED) - set(_declared(task))


def test_reward_statistics_are_declared_once_in_benchmark_metrics():
    assert MEASURED["reward_mean"] == "higher" and MEASURED["reward_topk"] == "higher"
    assert MEASURED["gap"] == MEASURED["gap_support"] == "lower" and MEASURED["reward_std"] is None
    assert agg.metric_direction(agg.REWARD_METRIC, "subspace") == "higher"


@pytest.mark.parametrize("objective", ["quadratic_on", "quadratic_off", "negnorm_ones", "negnorm_random",
                                       "gaussian_inverse"])
def test_subspace_cells_record_only_declared_metrics(objective):
    from benchmark.cell import CellSpec, run_cell

    rows = run_cell(CellSpec.of(task="subspace", objective=objective, method="none", rounds=0, samples=8, steps=5),
                    "cpu", progress=False)
    metrics = {r["metric"] for r in rows}
    assert {r["status"] for r in rows} == {"ok"} and "r_off" in metrics
    assert ({"w2", "var_ratio"} <= metrics) == (objective == "gaussian_inverse")
    assert ({"w2_sampler", "var_ratio_sampler"} <= metrics) == (objective == "gaussian_inverse")   # the oracle's law
    assert _undeclared(metrics, "subspace") == set()


def test_sphere_cell_records_only_declared_metrics(tmp_path):
    from benchmark.cell import CellSpec, run_cell
    from benchmark.denoisers import pretrain, save_checkpoint
    from benchmark.tasks import make_task

    model, schedule, report = pretrain(make_task("sphere"), T=20, hidden=16, depth=1, n_train=256, n_heldout=64,
                                       epochs=1, batch_size=128)
    path = tmp_path / "sphere.safetensors"
    save_checkpoint(path, model, schedule, report)
    rows = run_cell(CellSpec.of(task="sphere", objective="linear", method="none", denoiser="trained",
                                checkpoint=str(path), rounds=0, samples=8, steps=5), "cpu", progress=False)
    metrics = {r["metric"] for r in rows}
    assert "norm_error" in metrics and _undeclared(metrics, "sphere") == set()


def test_digits_measures_only_declared_metrics(digits_models):
    """Every digits objective's measures (the task's sample_metrics on real test images, tiny networks)."""
    from benchmark.tasks import make_task

    task = make_task("digits", models_dir=digits_models)
    x = task.split("test")[0][:8]
    seen = set()
    for name in task.objectives:
        metrics, _ = sample_measures(x, task.objective(name), task)
        assert _undeclared(metrics, "digits") == set(), name
        seen |= set(metrics)
    assert set(_declared("digits")) <= seen                     # and no declaration is of a metric never measured


def test_images_measures_only_declared_metrics(tmp_path):
    from images_fixture import write_digit_folder

    from benchmark.tasks.images import ImagesTask

    from reward_fixture import FIXTURES

    write_digit_folder(tmp_path, 4, channels=1)
    clip = str(FIXTURES / "tiny_clip.safetensors")   # every optional metric on, so every declared one is measured
    task = ImagesTask(folder=tmp_path, metric_features=clip, metric_lpips=str(FIXTURES / "tiny_lpips.safetensors"),
                      metric_clip=clip, metric_prompt="a digit")
    x = task.images.clone()
    seen = set()
    needed = {"reward": {"fn": "images_fixture:brightness"},
              "reward_model": {"model": "aesthetic", "weights": str(FIXTURES / "aesthetic_head.safetensors"),
                               "encoder": clip}}
    for name in task.objectives:
        params = needed.get(name, {})
        metrics, _ = sample_measures(x, task.objective(name, params), task)
        assert _undeclared(metrics, "images") == set(), name
        seen |= set(metrics)
    assert set(_declared("images")) <= seen


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

