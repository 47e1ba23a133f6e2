"""benchmark/methods/freedom.py: FreeDoM's time-travel cost, and beside it the training-free loss-based methods
(DPS, FreeDoM, MPGD) compared on the subspace task with the oracle.

With the exact score x0h(x_t) = alpha P x_t (P = A A^T), so a gradient taken through the denoiser
is g_t = grad_{x_t} r(x0h) = alpha P grad r(x0h): it lies in span(A) and DPS / FreeDoM samples stay
on the subspace. MPGD's clean-space step h_t = grad r(x0h) is not projected, so for a reward whose
gradient points off span(A) (`quadratic_off`) its samples leave it.
"""

import math

import pytest
import torch

from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, ddim_update,
                                 make_schedule, sample)
from benchmark.methods import Guide, make_method
from benchmark.methods.freedom import FreeDoM

TRAINING_FREE = ("dps", "freedom", "mpgd")


def _run(task, name, strength=0.0, n=8, steps=20, eta=1.0, seed="training-free", **params):
    """(samples [n, 64], costs spent, sampler) with the oracle on `quadratic_off`."""
    costs = Costs()
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), costs), sched, steps=steps, eta=eta)
    objective = CountingObjective(task.objective("quadratic_off"), costs)
    noise = PerSampleNoise.for_chains((seed,), n, (64,))
    x = sample(sampler, make_method(name, strength, **params), noise.draw(), noise,
               Guide(objective, augment=task.augment))
    return x, costs, sampler


def test_freedom_time_travel_costs_the_formula(subspace):
    """r repeats on k steps of the window, guidance above stop_t:
    forwards = n (S + (r - 1) k), VJPs = evals = grads = n (S_guided + (r - 1) k)."""
    n, S, r = 3, 20, 3
    # Grid t = 200, 190, ..., 10: the window 60 <= t <= 100 holds k = 5 steps, all guided;
    # stop_t = 30 leaves t = 30, 20, 10 unguided, so S_guided = 17.
    _, costs, sampler = _run(subspace, "freedom", 0.1, n=n, steps=S, recurrence=r,
                             travel_start=100, travel_end=60, stop_t=30)
    assert isinstance(make_method("freedom", 0.1), FreeDoM)
    k = sum(60 <= s.t <= 100 for s in sampler.steps)
    S_guided = sum(s.t > 30 for s in sampler.steps)
    assert (k, S_guided) == (5, 17)
    assert costs.denoiser_forwards == n * (S + (r - 1) * k)
    assert costs.denoiser_vjps == costs.objective_evals == costs.objective_grads == n * (S_guided + (r - 1) * k)


def test_through_denoiser_gradients_stay_on_the_subspace_clean_space_steps_leave_it(subspace):
    """Every step built only from g_t = alpha P grad r(x0h) stays in span(A) (DPS, FreeDoM, LGD-MC,
    UGD's forward guidance, Shen's, TFG's mean guidance); a clean-space step grad r(x0h) is not
    projected (MPGD, UGD's backward guidance, TFG's variance guidance with mu > 0)."""
    runs = {"dps": ("dps", 0.3, {}), "freedom": ("freedom", 0.3, {}), "lgd": ("lgd", 0.3, {}),
            "ugd_forward": ("ugd", 0.3, {"backward_steps": 0}), "shen": ("shen", 0.02, {}),
            "tfg_mean": ("tfg", 0.3, {"mu": 0.0}),
            "mpgd": ("mpgd", 0.1, {}), "ugd": ("ugd", 0.3, {}), "tfg": ("tfg", 0.3, {})}
    r_off = {key: float(subspace.r_off(_run(subspace, name, s, n=16, steps=50, **p)[0]).mean())
             for key, (name, s, p) in runs.items()}
    on, off = ("dps", "freedom", "lgd", "ugd_forward", "shen", "tfg_mean"), ("mpgd", "ugd", "tfg")
    assert all(r_off[k] < 1e-3 for k in on), r_off
    assert all(r_off[k] > 1e-2 for k in off), r_off


@pytest.mark.parametrize("name,params", [("dps", {}), ("dps", {"normalise": "none"}), ("freedom", {}),
                                         ("freedom", {"stop_t": 50}), ("mpgd", {}),
                                         ("mpgd", {"schedule": "constant"}), ("mpgd", {"schedule": "sqrt_ab_prev"})])
def test_strength_zero_is_unguided_sampling(subspace, name, params):
    unguided, _, _ = _run(subspace, "none")
    guided, _, _ = _run(subspace, name, 0.0, **params)
    assert torch.equal(guided, unguided)


@pytest.mark.parametrize("name,strength", [("dps", 0.3), ("freedom", 0.3), ("mpgd", 0.1)])
def test_guidance_increases_the_reward(subspace, name, strength):
    """Paired with unguided sampling from the same noise: 64 chains, 50 steps. Unguided sits at
    r ~ 1.0 (theta is mostly off span(A)); each method at this strength reaches r > 2.5."""
    reward = subspace.objective("quadratic_off")
    base = float(reward(_run(subspace, "none", n=64, steps=50, seed="sign")[0]).mean())
    guided = float(reward(_run(subspace, name, strength, n=64, steps=50, seed="sign")[0]).mean())
    assert guided > base + 1.0


def test_one_step_matches_the_closed_form(subspace):
    """One eta = 0 step from a given x_t, against the formulas with the oracle's x0h = alpha P x_t
    and the quadratic's grad r(x) = -2 (theta^T x - 3) theta."""
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=20, eta=0.0)
    step = sampler.steps[10]
    objective = subspace.objective("quadratic_off")
    theta = objective.theta
    x_t = torch.randn(5, 64, generator=torch.Generator().manual_seed(3))
    x0h = step.alpha * subspace.project(x_t)
    e = (x_t - step.alpha * x0h) / math.sqrt(step.h)
    r = objective(x0h)
    grad_r = -2 * (x0h @ theta - 3).unsqueeze(-1) * theta                       # grad r at x0h
    g_t = step.alpha * subspace.project(grad_r)                                 # through the oracle
    z = torch.zeros_like(x_t)
    unguided = ddim_update(x0h, e, step, z)
    expected = {
        ("dps", "abs_reward"): unguided + (0.3 / r.abs()).unsqueeze(-1) * g_t,
        ("dps", "none"): unguided + 0.3 * g_t,
        ("dps", "auto"): unguided + 0.3 * g_t,        # quadratic_off declares no kind: a general reward
        ("freedom", None): unguided + 0.3 * step.alpha * g_t,
        ("mpgd", "constant"): ddim_update(x0h + 0.3 * grad_r, e, step, z),
        ("mpgd", "sqrt_ab_prev"): ddim_update(x0h + 0.3 * math.sqrt(step.ab_prev) * grad_r, e, step, z),
    }
    option = {"dps": "normalise", "mpgd": "schedule"}
    for (name, value), want in expected.items():
        method = make_method(name, 0.3, **({option[name]: value} if value else {}))
        noise = PerSampleNoise(list(range(5)), (64,))
        got = method.step(x_t, step, sampler, Guide(objective), noise)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (name, value)


@pytest.mark.parametrize("name,params,message", [
    ("freedom", {"recurrence": -1}, "recurrence must be >= 1"),
    ("freedom", {"recurrence": 0}, "recurrence must be >= 1"),
    ("freedom", {"stop_t": -5}, "stop_t must be >= 0"),
    ("freedom", {"travel_start": 50, "travel_end": 80}, "travel_end must be <= travel_start"),
    ("dps", {"normalise": "l2"}, "normalise must be one of \\['auto', 'residual', 'abs_reward', 'none'\\], got 'l2'"),
    ("mpgd", {"schedule": "cosine"}, "schedule must be one of \\['rms', 'constant', 'sqrt_ab_prev'\\], got 'cosine'"),
])
def test_bad_hyperparameters_raise_naming_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_method(name, 0.1, **params)
