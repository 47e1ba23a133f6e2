"""benchmark/tasks/sphere.py: data uniform on the unit sphere in R^64 (Guo et al. 2024), its fidelity metric
| ||x|| - 1 | per sample, its jitter, and no oracle."""

import pytest
import torch

from benchmark.tasks.sphere import SphereTask


def test_data_lies_on_the_unit_sphere_and_is_seeded():
    task = SphereTask()
    x = task.sample_data(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 64) and task.shape == (64,)
    assert torch.allclose(torch.linalg.vector_norm(x, dim=-1), torch.ones(500), atol=1e-6)
    assert abs(float(x.mean(0).norm())) < 0.15                                 # uniform: no preferred direction
    assert torch.equal(x, task.sample_data(500, torch.Generator().manual_seed(0)))
    assert SphereTask(dim=3).sample_data(2, torch.Generator()).shape == (2, 3)


def test_norm_error_is_per_sample():
    task = SphereTask()
    u = task.sample_data(4, torch.Generator().manual_seed(1))
    scale = torch.tensor([1.0, 0.5, 2.0, 0.0])
    m = task.sample_metrics(u * scale[:, None])
    assert set(m) == set(task.metric_directions) == {"norm_error"} and task.metric_directions["norm_error"] == "lower"
    assert torch.allclose(m["norm_error"], torch.tensor([0.0, 0.5, 1.0, 1.0]), atol=1e-6)


def test_jitter_and_no_oracle():
    task = SphereTask()
    x, z = torch.randn(3, 64), torch.randn(3, 64)
    assert torch.equal(task.augment(x, z), x + 0.01 * z)                        # coordinates ~ 1/8: a small jitter
    assert not task.has_oracle
    with pytest.raises(ValueError, match="task 'sphere' has no exact \\(oracle\\) denoiser"):
        task.oracle(None)
