"""benchmark/objectives/subspace.py: the subspace task's objectives built from the task (A [D, d] with orthonormal
columns): quadratic_on's theta in span(A), quadratic_off's mostly off it (||theta_perp|| / ||theta_par|| =
off_ratio), the negative distances' centres b, and gaussian_inverse's parameter checks made before anything is
built."""

import pytest
import torch

from benchmark.objectives.subspace import (NegNormOnes, NegNormRandom, QuadraticOff, QuadraticOn,
                                           SubspaceGaussianInverse)
from benchmark.tasks.subspace import SubspaceTask


def _split(task, v):
    par = task.project(v[None])[0]
    return par, v - par


def test_quadratic_on_lies_in_the_support_and_off_mostly_outside(subspace):
    on, off = QuadraticOn(subspace), QuadraticOff(subspace)
    for objective in (on, off):
        assert float(objective.theta.norm()) == pytest.approx(1.0, abs=1e-5)
        assert (objective.target, objective.top) == (3.0, 10.0)
    par, perp = _split(subspace, on.theta)
    assert float(perp.norm()) < 1e-5
    par, perp = _split(subspace, off.theta)
    assert float(perp.norm() / par.norm()) == pytest.approx(subspace.off_ratio, rel=1e-4)
    # both reach the top on the support (A^T theta != 0)
    assert on.optimum_on_support == off.optimum_on_support == 10.0


def test_negnorm_centres(subspace):
    ones, random = NegNormOnes(subspace), NegNormRandom(subspace)
    assert torch.equal(ones.b, torch.full((subspace.dim,), 4.0))
    assert (ones.top, ones.scale) == (5.0, 0.5)
    assert not torch.equal(random.b, ones.b)
    assert torch.equal(NegNormRandom(subspace).b, random.b)                      # drawn from the task seed
    assert abs(float(random.b.mean()) - 4.0) < 3 * 3.0 / subspace.dim ** 0.5


def test_gaussian_inverse_params_are_checked_without_building():
    defaults = SubspaceGaussianInverse.param_defaults()
    assert defaults == {"m": 8, "sigma_y": 0.25}
    SubspaceGaussianInverse.check_params(defaults, SubspaceTask)
    for bad, message in (({"m": 0}, r"m must be an integer in \[1, 64\], got 0"),
                         ({"m": 65}, r"m must be an integer in \[1, 64\], got 65"),
                         ({"m": True}, r"m must be an integer in \[1, 64\], got True"),
                         ({"sigma_y": 0.0}, r"sigma_y must be a finite number > 0, got 0.0"),
                         ({"sigma_y": float("inf")}, r"sigma_y must be a finite number > 0, got inf")):
        with pytest.raises(ValueError, match=r"objective 'gaussian_inverse': " + message):
            SubspaceGaussianInverse.check_params(defaults | bad, SubspaceTask)
