"""The linear measurement interface (benchmark/objectives/operator.py) of every built-in linear objective:
the adjoint identity, the pseudo-inverse's identities, the solve's residual, the per-row observation, the
log-likelihood, and the sweep's refusal of a method that needs the operator on an objective without one."""

import re

import pytest
import torch
from snakemake.utils import validate

from benchmark.config import ConfigError
from benchmark.objectives.deblur import Deblur
from benchmark.objectives.inpaint import Inpaint
from benchmark.objectives.operator import PINV_RCOND, LinearMeasurement, has_operator
from benchmark.objectives.superres import SuperRes
from benchmark.sweep import cells_from_config
from benchmark.tasks import make_task
from benchmark.tasks.images import ImagesTask
from tests.images_fixture import write_digit_folder
from tests.test_config_checks import _mutate
from tests.test_sweep import SCHEMA, load

N_IMAGES = 3


def _digits_like(L=N_IMAGES, shape=(1, 8, 8), seed=0):
    """(x_star [L, *shape], noise [L, *shape]): stand-ins for held-out digits (the digits objectives wrap
    the shared Inpaint / SuperRes on such arrays; building them for real needs the task's networks)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(L, *shape, generator=g) * 2 - 1, torch.randn(L, *shape, generator=g)


@pytest.fixture(scope="module")
def images_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("operator_images")
    write_digit_folder(folder, N_IMAGES, channels=1, size=16)
    return ImagesTask(folder=folder)


def _build(name, images_task):
    if name == "gaussian_inverse":
        return make_task("subspace").objective("gaussian_inverse")
    if name in ("mixture_inverse", "mixture_between"):
        return make_task("mixture").objective(name.split("_")[1])
    if name == "digits_inpaint":
        x, n = _digits_like()
        return Inpaint(x, n, 0.05, "all", "centre")
    if name == "digits_inpaint_lower":
        x, n = _digits_like()
        return Inpaint(x, n, 0.1, "all", "lower_half")
    if name == "digits_superres":
        x, n = _digits_like()
        return SuperRes(x, n[:, :, :4, :4], 0.05, "all")
    if name == "digits_deblur":
        x, n = _digits_like()
        return Deblur(x, n, 0.05, "all", blur_sigma=1.0)
    return images_task.objective(name.split("_", 1)[1])               # images_inpaint, images_superres, ...


NAMES = ["gaussian_inverse", "mixture_inverse", "mixture_between", "digits_inpaint", "digits_inpaint_lower",
         "digits_superres", "digits_deblur", "images_inpaint", "images_superres", "images_deblur"]


@pytest.fixture(scope="module", params=NAMES)
def objective(request, images_task):
    return _build(request.param, images_task)


def _x_shape(objective):
    shape = getattr(objective, "x_shape", None)
    return tuple(shape) if shape is not None else (objective.H.shape[1],)


def _pair(objective, B=5, seed=1):
    """(x [B, *x], v [B, *m]): random points of the signal and measurement spaces."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, *_x_shape(objective), generator=g)
    m = objective.A(x).shape[1:]
    return x, torch.randn(B, *m, generator=g)


def _dot(a, b):
    return (a.double() * b.double()).flatten(1).sum(-1)


def _norm(a):
    return torch.linalg.vector_norm(a.double().flatten(1), dim=-1)


def _largest_singular_value(objective):
    """||A||_2 by power iteration on A^T A (float64 accumulation of float32 operators)."""
    x = _pair(objective, B=1, seed=7)[0]
    for _ in range(200):
        x = objective.AT(objective.A(x))
        x = x / _norm(x).item()
    return _norm(objective.A(x)).item()


def test_every_builtin_linear_objective_is_covered(images_task):
    from benchmark.objectives import builtin_classes

    linear = {cls.__name__ for cls in builtin_classes() if has_operator(cls)}
    built = {type(_build(n, images_task)).__name__ for n in NAMES}
    # the digits objectives are the shared Inpaint / SuperRes (built here from arrays: no networks)
    assert linear - built <= {"DigitsInpaint", "DigitsSuperRes"}
    assert {"DigitsInpaint", "DigitsSuperRes"} <= linear
    assert all(isinstance(_build(n, images_task), LinearMeasurement) for n in NAMES)


def test_adjoint_identity(objective):
    """<A x, v> = <x, A^T v> for random x, v (float32 operators: relative 1e-5 of |A x| |v|)."""
    x, v = _pair(objective)
    lhs, rhs = _dot(objective.A(x), v), _dot(x, objective.AT(v))
    scale = _norm(objective.A(x)) * _norm(v)
    assert torch.all((lhs - rhs).abs() <= 1e-5 * scale), (lhs, rhs)
    # and the adjoint is not trivially zero
    assert torch.all(_norm(objective.AT(v)) > 0)


def test_pseudo_inverse_identities(objective):
    """A A^+ A = A and A^+ A A^+ = A^+ on random points. Exact (float32 rounding) for every operator whose
    singular values are all above PINV_RCOND x the largest; deblur's A^+ drops the singular values below
    that cut-off (PINV_RCOND = 1e-3), so A A^+ A x differs from A x by A (I - P) x, P the projection on the
    kept singular vectors: at most PINV_RCOND s_max ||x||."""
    x, v = _pair(objective)
    Ax = objective.A(x)
    err = _norm(objective.A(objective.A_pinv(Ax)) - Ax)
    cutoff = isinstance(objective, Deblur)
    s_max = _largest_singular_value(objective)
    bound = (PINV_RCOND * s_max * _norm(x) + 1e-4 * _norm(Ax)) if cutoff else 1e-4 * _norm(Ax)
    assert torch.all(err <= bound), (err, bound)
    Pv = objective.A_pinv(v)
    assert torch.all(_norm(objective.A_pinv(objective.A(Pv)) - Pv) <= 1e-4 * _norm(Pv) + 1e-6)
    # A^+ A is an orthogonal projection: symmetric, <A^+ A x, w> = <x, A^+ A w>
    w = _pair(objective, seed=3)[0]
    proj = lambda u: objective.A_pinv(objective.A(u))                      # noqa: E731
    assert torch.allclose(_dot(proj(x), w), _dot(x, proj(w)), rtol=1e-4, atol=1e-4 * float(_norm(x).max()))


@pytest.mark.parametrize("a, b", [(1.0, 0.5), (0.3, 1e-2), ("per_sample", "per_sample")])
def test_solve_residual(objective, a, b):
    """u = solve(v, a, b) solves (a A A^T + b I) u = v, with a, b floats or per-sample [B] tensors."""
    _, v = _pair(objective)
    if a == "per_sample":
        a = torch.tensor([0.0, 0.5, 1.0, 2.0, 0.1])
        b = torch.tensor([1.0, 0.2, 1e-2, 3.0, 0.5])
    u = objective.solve(v, a, b)
    av = a.view(-1, *[1] * (v.dim() - 1)) if isinstance(a, torch.Tensor) else a
    bv = b.view(-1, *[1] * (v.dim() - 1)) if isinstance(b, torch.Tensor) else b
    residual = av * objective.A(objective.AT(u)) + bv * u - v
    assert torch.all(_norm(residual) <= 1e-4 * _norm(v)), _norm(residual) / _norm(v)


def test_measurement_is_each_rows_observation(objective):
    """y of each row: the shared y of a matrix measurement; chain i's own image (i mod L) for the image
    problems. It reads the observation only, never x's values."""
    B = 7
    x, _ = _pair(objective, B=B)
    y = objective.measurement(x)
    assert y.shape == objective.A(x).shape
    assert torch.equal(y, objective.measurement(torch.zeros_like(x)))
    if hasattr(objective, "rows"):
        rows = objective.rows(B, x.device)
        assert torch.equal(rows, torch.arange(B) % len(objective.x_star))
        assert torch.equal(y, objective.y[rows])
        # the observation is A x* + noise of the row's own ground truth, within sigma_y's noise
        resid = _norm(y - objective.A(objective.ground_truth(B, x.device)))
        assert torch.all(resid <= 6 * objective.sigma_y * y[0].numel() ** 0.5)
    else:
        assert torch.equal(y, objective.y.expand(B, -1))


def test_log_likelihood_is_the_gaussian_one(objective):
    x, _ = _pair(objective)
    y = objective.measurement(x)
    expected = -((y - objective.A(x)).double() ** 2).flatten(1).sum(-1) / (2 * objective.sigma_y ** 2)
    assert torch.allclose(objective.log_likelihood(x).double(), expected, rtol=1e-5)


def test_log_likelihood_needs_noise():
    x, n = _digits_like()
    noiseless = Inpaint(x, n, 0.0, "all", "centre")
    with pytest.raises(ValueError, match=r"objective 'inpaint': the log-likelihood needs sigma_y > 0, got 0.0"):
        noiseless.log_likelihood(x)


def test_a_method_that_needs_the_operator_is_refused_without_one():
    """The sweep's config check refuses pigdm (needs_operator) on quadratic_off, naming the method, what it
    needs, the objective and the task's objectives that have it."""
    config = load("smoke.yaml")
    _mutate(["experiments", "oracle", "methods", "pigdm"], {"strengths": [1.0]})(config)
    validate(config, SCHEMA)
    with pytest.raises(ConfigError) as info:
        cells_from_config(config)
    assert re.search(r"experiments.oracle.methods.pigdm: 'pigdm' needs an objective with a linear measurement "
                     r"y = A x \+ sigma_y n .*\['quadratic_off'\] of task 'subspace' have none; "
                     r"allowed: \['gaussian_inverse'\]", str(info.value)), str(info.value)


@pytest.mark.parametrize("method", ["pigdm", "ddnm", "diffpir"])
def test_skip_reads_needs_operator(method, images_task):
    from benchmark.methods import make_method
    from benchmark.objectives import builtin_objectives

    built = make_method(method, 1.0)
    own = builtin_objectives("subspace")
    assert built.skip(own["quadratic_off"])[0] and not built.skip(own["gaussian_inverse"])[0]
    assert not built.skip(_build("images_deblur", images_task))[0]


def test_has_operator_sees_through_the_counting_wrapper():
    """A method is handed the objective behind CountingObjective: it must still find the linear measurement
    (RED-diff and DAPS read log_likelihood through it)."""
    from benchmark.diffusion import Costs, CountingObjective

    sub = make_task("subspace")
    inverse, reward = sub.objective("gaussian_inverse"), sub.objective("quadratic_off")
    assert has_operator(CountingObjective(inverse, Costs())) and has_operator(type(inverse))
    assert not has_operator(CountingObjective(reward, Costs()))


def test_default_conjugate_gradients_are_per_row():
    """The generic solve (CG) of one chain does not depend on its batch neighbours' convergence."""
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = SuperRes(x, torch.zeros(3, 1, 4, 4), 0.05).double()
    v = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v[0] = 0.0                                           # converged at once; the others need iterations
    batch = LinearMeasurement.solve(op, v, 0.7, 0.3)
    alone = torch.cat([LinearMeasurement.solve(op, v[i:i + 1], 0.7, 0.3) for i in range(3)])
    assert torch.allclose(batch, alone, atol=1e-12, rtol=0)
    assert torch.allclose(batch, op.solve(v, 0.7, 0.3), atol=1e-10, rtol=0)
