"""DPS's step rules (benchmark/methods/dps.py), against arithmetic written out here.

The default normalise="auto" runs the published rule for the objective's declared kind: Chung et al.'s
x_{t-1} = DDIM(x_t) - zeta' grad_{x_t} ||y - A x0h|| on inverse problems, TFG's zeta / |log p| on
log-probabilities, a constant step on any other reward (which then is invariant to adding a constant
to r and cannot divide by a reward crossing 0). With the oracle x0h = alpha P x_t (P = A A^T).
"""

import math

import pytest
import torch
from torch.nn import functional as F

from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, ddim_update,
                                 make_schedule, sample)
from benchmark.methods import Guide, make_method
from benchmark.methods.dps import DPS
from benchmark.objectives import FeatureReward, GaussianInverse, Inpaint, Label, Linear, NegNorm, Objective, Quadratic
from benchmark.objectives import SuperRes
from benchmark.objectives.deblur import Deblur


def _sampler(task, steps, eta=1.0, costs=None):
    sched = make_schedule("cosine", 200)
    return Sampler(CountingDenoiser(task.oracle(sched), costs or Costs()), sched, steps=steps, eta=eta)


def _draw(task, objective, steps, n, tag, strength=0.1, **params):
    noise = PerSampleNoise.for_chains((tag,), n, (64,))
    return sample(_sampler(task, steps), make_method("dps", strength, **params), noise.draw(), noise, Guide(objective))


class Shifted:
    """r(x) + offset, a reward from outside the package that declares no kind (a general reward)."""

    def __init__(self, base, offset):
        self.base, self.offset = base, offset

    def __call__(self, x):
        return self.base(x) + self.offset


def test_default_on_a_general_reward_is_invariant_to_a_constant(subspace):
    """quadratic_on + 0 and + 100, the same noise, 10 steps: the default's samples are identical (the
    gradient is, and nothing divides by r); "abs_reward" divides by |r + c| and changes."""
    r = subspace.objective("quadratic_on")
    run = lambda offset, **p: _draw(subspace, Shifted(r, offset), 10, 16, "dps-offset", **p)    # noqa: E731
    assert torch.equal(run(0.0), run(100.0))
    assert torch.equal(run(0.0), run(0.0, normalise="none"))
    assert (run(0.0, normalise="abs_reward") - run(100.0, normalise="abs_reward")).abs().max() > 0.1


def test_default_on_quadratic_on_stays_within_its_exact_law(subspace):
    """No blow-up: quadratic_on (theta = A beta, unit, in span(A)), oracle, 50 steps, zeta = 0.1.

    With u_t = theta^T x_t: theta^T x0h = alpha u_t, theta^T e = sqrt(h) u_t and theta^T g_t =
    -2 alpha (alpha u_t - 3), so the constant step gives the scalar Gaussian recursion
        u_{t-1} = m_t u_t + 6 zeta alpha + s_t xi,   m_t = alpha sqrt(ab_prev) + c_t sqrt(h) - 2 zeta ab_t,
    c_t = sqrt(1 - ab_prev - s_t^2), xi ~ N(0, 1), u_T ~ N(0, 1): u_0 ~ N(mu, v) from mean and variance
    recursions. Every one of 128 chains has r = 10 - (u_0 - 3)^2 >= 10 - (|mu - 3| + 6 sqrt v)^2 (a 6-sd
    bound, 9.75 here), and the batch's moments match N(mu, v); "abs_reward" (zeta / |r|, r crossing 0
    on the way) sends chains far below it."""
    objective = subspace.objective("quadratic_on")
    zeta, n = 0.1, 128
    mu, v = 0.0, 1.0
    for s in _sampler(subspace, 50).steps:
        c = math.sqrt(max(1 - s.ab_prev - s.sigma ** 2, 0.0))
        m = s.alpha * math.sqrt(s.ab_prev) + c * math.sqrt(s.h) - 2 * zeta * s.ab_t
        mu, v = m * mu + 6 * zeta * s.alpha, m * m * v + s.sigma ** 2
    bound = 10 - (abs(mu - 3) + 6 * math.sqrt(v)) ** 2
    assert bound > 9.5

    x = _draw(subspace, objective, 50, n, "dps-bound", zeta)
    u = (x @ objective.theta).double()
    assert (objective(x) >= bound).all(), float(objective(x).min())
    assert abs(float(u.mean()) - mu) < 4 * math.sqrt(v / n)
    assert 0.7 < float(u.var()) / v < 1.4                              # chi^2_127 / 127: sd 0.125
    old = objective(_draw(subspace, objective, 50, n, "dps-bound", zeta, normalise="abs_reward"))
    assert float(old.min()) < bound - 10


def _inverse_step_by_hand(x_t, step, x0h_of, residual, e_of, zeta):
    """Chung et al.'s step written out: DDIM(x0h, e) (eta = 0) - zeta grad_{x_t} ||residual(x0h)||, the
    norm per sample, by autograd here; also returns grad_{x_t} of ||residual||."""
    x = x_t.clone().requires_grad_(True)
    x0h = x0h_of(x)
    rho = torch.linalg.vector_norm(residual(x0h).flatten(1), dim=-1)
    (grad_rho,) = torch.autograd.grad(rho.sum(), x)
    x0h = x0h.detach()
    return ddim_update(x0h, e_of(x_t, x0h), step, torch.zeros_like(x_t)) - zeta * grad_rho, x0h, rho.detach()


@pytest.mark.parametrize("normalise", [None, "residual"])
def test_default_on_gaussian_inverse_is_chungs_rule(subspace, normalise):
    """gaussian_inverse (r = -||y - H x||^2 / (2 sigma_y^2)), oracle, one eta = 0 step at zeta' = 0.3:
    x_{t-1} = DDIM - zeta' grad ||y - H x0h||; on g_t = grad r this is the step zeta' sigma_y^2 / ||v||,
    not "none"'s zeta'."""
    objective = subspace.objective("gaussian_inverse")
    sampler = _sampler(subspace, 20, eta=0.0)
    step = sampler.steps[10]
    A, H, y = subspace.A, objective.H, objective.y
    x_t = torch.randn(5, 64, generator=torch.Generator().manual_seed(7))
    a, h = step.alpha, step.h
    want, x0h, rho = _inverse_step_by_hand(x_t, step, lambda x: a * (x @ A) @ A.T, lambda z: y - z @ H.T,
                                           lambda xt, z: (xt - a * z) / math.sqrt(h), 0.3)
    got = make_method("dps", 0.3, **({"normalise": normalise} if normalise else {})).step(
        x_t, step, sampler, Guide(objective), PerSampleNoise(list(range(5)), (64,)))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()

    grad_r = a * ((y - x0h @ H.T) @ H / objective.sigma_y ** 2) @ A @ A.T          # grad_{x_t} r(alpha P x_t)
    unguided = ddim_update(x0h, (x_t - a * x0h) / math.sqrt(h), step, torch.zeros_like(x_t))
    rescaled = unguided + (0.3 * objective.sigma_y ** 2 / rho).unsqueeze(-1) * grad_r
    assert torch.allclose(want, rescaled, atol=1e-5, rtol=1e-4)
    none = make_method("dps", 0.3, normalise="none").step(x_t, step, sampler, Guide(objective),
                                                          PerSampleNoise(list(range(5)), (64,)))
    assert not torch.allclose(none, want, atol=1e-2)


def test_default_on_inpainting_is_chungs_rule_with_a_linear_denoiser(subspace):
    """Inpaint (r = -||y - M x||, M hiding the centre 4x4 of 8x8), a linear 'denoiser' e = 0.5 x_t, one
    eta = 0 step: Chung's step with zeta' = 0.5, y = M (x* + sigma_y n) built here."""
    g = torch.Generator().manual_seed(11)
    x_star, n = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    M = torch.ones(1, 8, 8)
    M[:, 2:6, 2:6] = 0
    y = M * (x_star + 0.05 * n)
    objective = Inpaint(x_star, n, sigma_y=0.05, image="all")
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(lambda x, t: 0.5 * x, Costs()), sched, steps=20, eta=0.0)
    step = sampler.steps[8]
    a, h = step.alpha, step.h
    x_t = torch.randn(3, 1, 8, 8, generator=g)
    want, _, _ = _inverse_step_by_hand(x_t, step, lambda x: (x - math.sqrt(h) * 0.5 * x) / a, lambda z: y - M * z,
                                       lambda xt, z: 0.5 * xt, 0.5)
    got = make_method("dps", 0.5).step(x_t, step, sampler, Guide(objective), PerSampleNoise([0, 1, 2], (1, 8, 8)))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


class LogProb(Objective):
    """log softmax(W x)_0: a log-probability objective (kind "log_prob")."""

    kind = "log_prob"

    def __init__(self, W):
        super().__init__()
        self.W = W

    def forward(self, x):
        return F.log_softmax(x @ self.W.T, dim=-1)[:, 0]


def test_default_on_a_log_probability_is_tfgs_abs_reward_rule(subspace):
    """One eta = 0 step, oracle: x_{t-1} = DDIM + (zeta / |log p(x0h)|) grad_{x_t} log p(x0h)."""
    g = torch.Generator().manual_seed(5)
    W = torch.randn(3, 64, generator=g)
    sampler = _sampler(subspace, 20, eta=0.0)
    step = sampler.steps[12]
    a, A = step.alpha, subspace.A
    x_t = torch.randn(4, 64, generator=g)
    x = x_t.clone().requires_grad_(True)
    x0h = a * (x @ A) @ A.T
    log_p = F.log_softmax(x0h @ W.T, dim=-1)[:, 0]
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    x0h = x0h.detach()
    unguided = ddim_update(x0h, (x_t - a * x0h) / math.sqrt(step.h), step, torch.zeros_like(x_t))
    want = unguided + (0.3 / log_p.detach().abs()).unsqueeze(-1) * grad
    got = make_method("dps", 0.3).step(x_t, step, sampler, Guide(LogProb(W)), PerSampleNoise(list(range(4)), (64,)))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("cls,rule", [(Inpaint, "residual"), (SuperRes, "residual"), (Deblur, "residual"),
                                      (GaussianInverse, "residual"), (Label, "abs_reward"), (Quadratic, "none"),
                                      (NegNorm, "none"), (Linear, "none"), (FeatureReward, "none"),
                                      (Shifted, "none")])
def test_auto_picks_the_rule_of_the_objectives_kind(cls, rule):
    assert make_method("dps", 0.1).rule(cls) == rule


class _Bad:
    def __init__(self, kind):
        self.kind, self.name = kind, "bad"

    def __call__(self, x):
        return -(x ** 2).sum(-1)


@pytest.mark.parametrize("objective,params,message", [
    ("quadratic_on", {"normalise": "residual"}, "normalise='residual' needs an inverse-problem objective .*"
                                               "'quadratic_on' is of kind 'reward'"),
    (_Bad("loss"), {}, "objective 'bad': kind must be one of \\['inverse', 'log_prob', 'reward'\\], got 'loss'"),
    (_Bad("inverse"), {}, "objective 'bad' declares kind 'inverse' but has no residual_norm"),
])
def test_a_rule_the_objective_cannot_take_is_refused_by_name(subspace, objective, params, message):
    objective = subspace.objective(objective) if isinstance(objective, str) else objective
    with pytest.raises(ValueError, match=message):
        _draw(subspace, objective, 2, 2, "dps-bad", **params)


@pytest.mark.parametrize("params,per_step", [({}, (1, 1, 1, 1)), ({"augment": 2}, (1, 1, 2, 2))])
def test_chungs_rule_costs_what_the_formula_declares(subspace, params, per_step):
    """The residual norm is counted as the objective (its evaluations and gradients), 4 chains x 10 steps."""
    costs = Costs()
    objective = CountingObjective(subspace.objective("gaussian_inverse"), costs)
    noise = PerSampleNoise.for_chains(("dps-costs",), 4, (64,))
    method = make_method("dps", 0.3, **params)
    assert isinstance(method, DPS)
    sample(_sampler(subspace, 10, costs=costs), method, noise.draw(), noise, Guide(objective, augment=subspace.augment))
    counted = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert counted == tuple(4 * c for c in method.costs_per_sample(10)) == tuple(40 * c for c in per_step)


def test_chungs_rule_is_per_sample(subspace):
    """4 chains in one batch give what 4 batches of 1 give: the residual norm is per sample."""
    objective = subspace.objective("gaussian_inverse")
    seeds = [3, 4, 5, 6]

    def run(ss):
        noise = PerSampleNoise(ss, (64,))
        return sample(_sampler(subspace, 10), make_method("dps", 0.3), noise.draw(), noise, Guide(objective))
    together = run(seeds)
    alone = torch.cat([run([s]) for s in seeds])
    assert torch.allclose(together, alone, atol=1e-5, rtol=1e-5)
