"""benchmark/methods/bon.py: best-of-N keeps the best of its N draws, is its proposal at one draw, refuses bad
settings (its own and, in the same table, smc's), and its mean best reward is the order statistic with the oracle
denoiser on the subspace task; also the particles' noise streams that bon and smc draw from.

Closed forms. For theta a unit vector of span(A) (P theta = theta), the oracle gives
theta^T e = sqrt(1 - ab_t) s_t and theta^T x0h = sqrt(ab_t) s_t with s_t = theta^T x_t, so the
DDIM(eta) step moves s on its own:
    s_{t'} = c_t s_t + sigma_t xi,   c_t = sqrt(ab_{t'} ab_t) + sqrt((1 - ab_{t'} - sigma_t^2)(1 - ab_t)),
xi ~ N(0, 1), s_T ~ N(0, 1). Hence s_0 ~ N(0, v_0) exactly under the sampler itself, with
v_{t'} = c_t^2 v_t + sigma_t^2, v_T = 1 (v_0 -> 1 as the grid refines; 0.81 with 20 steps), and
the reward r = 10 - (s - 3)^2 of `quadratic_on` depends on x through s alone (smc's tilted target in s:
tests/methods/test_smc.py's module docstring).
Best-of-N: r <= 10 with CDF F(10 - a^2) = P(|s - 3| >= a) = 1 - Phi((3 + a) / sd) + Phi((3 - a) / sd),
    sd = sqrt(v_0), a >= 0; the best of N i.i.d. draws has CDF F^N, so
        E[max_N r] = 10 - int_{-inf}^{10} F(y)^N dy = 10 - int_0^inf 2 a F(10 - a^2)^N da
    (N = 1: 10 - E[(s - 3)^2] = 1 - v_0, checked).
"""

import math

import pytest
import torch

from benchmark.denoisers import SubspaceOracle
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler,
                                 make_schedule, sample)
from benchmark.methods import Guide, LinearTarget, make_method
from benchmark.methods.bon import BestOfN


def _sampler(task, steps=20, eta=1.0, costs=None, dtype=torch.float32):
    sched = make_schedule("cosine", 200)
    model = SubspaceOracle(task.A.to(dtype), sched)
    return Sampler(CountingDenoiser(model, costs if costs is not None else Costs()), sched, steps=steps, eta=eta)


def _draw(task, sampler, method, objective, B, seed="bon-smc", guide=None):
    noise = PerSampleNoise.for_chains((seed,), B, (task.dim,))
    return sample(sampler, method, noise.draw(), noise, guide or Guide(objective))


def _sampler_variance(sampler, theta) -> float:
    """v_0 of s = theta^T x_0 under the oracle sampler: the recursion of the module docstring."""
    t2 = float(theta.double() @ theta.double())
    v = t2
    for st in sampler.steps:
        c = math.sqrt(st.ab_prev * st.ab_t) + math.sqrt(max(1 - st.ab_prev - st.sigma ** 2, 0.0) * (1 - st.ab_t))
        v = c * c * v + st.sigma ** 2 * t2
    return v


def _expected_best(v0: float, N: int) -> float:
    """E[max of N rewards r = 10 - (s - 3)^2], s ~ N(0, v0), by the order-statistic integral."""
    sd = math.sqrt(v0)
    a = torch.linspace(0, 3 + 12 * sd, 200_001, dtype=torch.float64)
    F = 1 - torch.special.ndtr((3 + a) / sd) + torch.special.ndtr((3 - a) / sd)
    return 10 - float(torch.trapezoid(2 * a * F ** N, a))


# ---- particle streams ---------------------------------------------------------------------------------------

# ---- one draw is the proposal -------------------------------------------------------------------------------

def test_bon_with_one_draw_is_its_proposal(subspace):
    sampler = _sampler(subspace)
    objective = CountingObjective(subspace.objective("quadratic_off"), Costs())
    for proposal, strength in (("none", 0.0), ("dps", 0.3)):
        bon = _draw(subspace, sampler, make_method("bon", strength, n=1, proposal=proposal), objective, 3)
        assert torch.equal(bon, _draw(subspace, sampler, make_method(proposal, strength), objective, 3))
    target = LinearTarget(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)), torch.ones(3))
    guide = Guide(objective, target)
    bon = _draw(subspace, sampler, make_method("bon", 0.5, n=1, proposal="gloss"), objective, 3, guide=guide)
    assert torch.equal(bon, _draw(subspace, sampler, make_method("gloss", 0.5), objective, 3, guide=guide))
    assert make_method("bon", 0.5, n=2, proposal="gloss").uses_linear_target
    _draw(subspace, sampler, make_method("bon", 0.5, n=2, proposal="gloss"), objective, 3, guide=guide)


def test_bon_keeps_the_best_of_its_draws(subspace):
    """bon's sample is the highest-reward one of the N unguided draws made on the particles' streams."""
    sampler, objective, N, B = _sampler(subspace), subspace.objective("quadratic_on"), 4, 5
    method = make_method("bon", 0.0, n=N)
    assert isinstance(method, BestOfN)
    assert method.costs_per_sample(20) == (N * 20, 0, N, 0)           # N unguided chains + N evaluations
    best = _draw(subspace, sampler, method, objective, B)
    noise = PerSampleNoise.for_chains(("bon-smc",), B, (64,))
    x_T = noise.draw()
    draws = noise.particles(N)
    x = sample(sampler, make_method("none"), draws.start(x_T), draws).view(N, B, 64)
    r = objective(x.flatten(0, 1)).view(N, B)
    assert torch.equal(best, x[r.argmax(0), torch.arange(B)])
    assert (objective(best) >= r[0]).all()


# ---- settings -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, strength, params, message", [
    ("bon", 0.5, {}, "proposal 'none' has none; use strength 0"),
    ("bon", 0.0, {"n": 0}, "n .* must be >= 1"),
    ("bon", 0.0, {"proposal": "bon"}, "proposal 'bon' is bon"),
    ("bon", 0.3, {"proposal": "dps", "proposal_params": "normalise"}, "expects 'name=value,name=value'"),
    ("bon", 0.3, {"proposal": "dps", "proposal_params": "zeta=1"}, "proposal 'dps': .*no parameter"),
    ("bon", 0.3, {"proposal": "dsp"}, "unknown method 'dsp'"),
    ("smc", 1.0, {"particles": 0}, "particles .* must be >= 1"),
    ("smc", 1.0, {"ess_threshold": 0.0}, r"ess_threshold .* must be in \(0, 1\]"),
    ("smc", 1.0, {"resample_every": 0}, "resample_every must be >= 1"),
    ("smc", 1.0, {"potential": "min"}, "potential must be one of"),
    ("smc", 1.0, {"reward_min": 1.0}, "reward_min .* by the potential 'max' only, not 'difference'"),
    ("smc", 1.0, {"proposal": "smc"}, "owns the whole trajectory"),
    ("smc", 1.0, {"proposal": "gloss"}, "linear target"),
    ("smc", 1.0, {"proposal": "none", "proposal_strength": 0.5}, "'none' has no guidance strength"),
])
def test_bad_settings_are_refused(name, strength, params, message):
    with pytest.raises(ValueError, match=message):
        make_method(name, strength, **params)


# ---- closed forms on the oracle -----------------------------------------------------------------------------

def test_bon_mean_best_reward_is_the_order_statistic(subspace):
    """bon with the unguided proposal: the best of N rewards of s ~ N(0, v_0), module docstring (b)."""
    sampler, objective = _sampler(subspace), subspace.objective("quadratic_on")
    v0 = _sampler_variance(sampler, objective.theta)
    assert _expected_best(v0, 1) == pytest.approx(1 - v0, abs=1e-6)
    for N, B in ((1, 2000), (4, 1000), (16, 500)):
        r = objective(_draw(subspace, sampler, make_method("bon", 0.0, n=N), objective, B, seed=("bon", N)))
        r = r.double()
        assert abs(float(r.mean()) - _expected_best(v0, N)) < 4 * float(r.std()) / math.sqrt(B), N
