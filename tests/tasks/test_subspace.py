"""benchmark/tasks/subspace.py: data on a 16-dimensional subspace of R^64 (Guo et al. 2024, Sec. 6.1): A with
orthonormal columns from the task seed, the projection, the off-support ratio r_off in closed form, and the
calibration metrics added for objectives that know their posterior."""

import torch

from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.diffusion import make_schedule
from benchmark.tasks.subspace import SubspaceTask


def test_A_has_orthonormal_columns_drawn_from_the_task_seed():
    a, b, c = SubspaceTask(), SubspaceTask(), SubspaceTask(task_seed=1)
    assert a.A.shape == (64, 16) and a.shape == (64,)
    assert torch.allclose(a.A.T @ a.A, torch.eye(16), atol=1e-6)
    assert torch.equal(a.A, b.A) and not torch.allclose(a.A, c.A)
    small = SubspaceTask(dim=8, d=3)
    assert small.A.shape == (8, 3) and torch.allclose(small.A.T @ small.A, torch.eye(3), atol=1e-6)


def test_data_lies_on_the_subspace_and_the_projection_is_idempotent():
    task = SubspaceTask()
    x = task.sample_data(200, torch.Generator().manual_seed(0))
    assert x.shape == (200, 64) and torch.allclose(task.project(x), x, atol=1e-5)
    assert float(task.r_off(x).max()) < 1e-5
    y = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    p = task.project(y)
    assert torch.allclose(task.project(p), p, atol=1e-5) and (p @ (y - p).T).diagonal().abs().max() < 1e-4
    cov = (x.T @ x / 200).double()                                             # ~ A A^T: rank 16
    assert int((torch.linalg.eigvalsh(cov) > 0.1).sum()) == 16


def test_r_off_is_the_off_support_over_the_on_support_norm():
    """x = A u + v with A^T v = 0: r_off = ||v|| / ||u|| per sample."""
    task = SubspaceTask()
    g = torch.Generator().manual_seed(2)
    u = torch.randn(5, 16, generator=g)
    w = torch.randn(5, 64, generator=g)
    v = w - task.project(w)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True) * torch.arange(1.0, 6.0)[:, None]
    r = task.r_off(u @ task.A.T + v)
    assert torch.allclose(r, torch.arange(1.0, 6.0) / torch.linalg.vector_norm(u, dim=-1), rtol=1e-4)
    m = task.sample_metrics(u @ task.A.T + v, task.objective("quadratic_on"))
    assert set(m) == {"r_off"} and torch.allclose(m["r_off"], r)
    assert task.metric_directions["r_off"] == "lower"


def test_objectives_with_a_known_posterior_add_their_calibration():
    task = SubspaceTask()
    obj = task.objective("gaussian_inverse")
    x = task.sample_data(32, torch.Generator().manual_seed(3))
    m = task.sample_metrics(x, obj)
    calibration = obj.calibration(x)
    assert {"w2", "mean_error", "var_ratio"} <= set(calibration)
    assert set(m) == {"r_off"} | set(calibration) and all(m[k] == v for k, v in calibration.items())
    assert set(m) <= set(task.metric_directions)
    assert isinstance(task.oracle(make_schedule("cosine", 20)), SubspaceOracle) and task.has_oracle
