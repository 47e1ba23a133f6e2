"""Shen et al. (2024)'s three options on the through-denoiser methods, and the bundled `shen`.

With the oracle, x0h = alpha P x_t and a through-denoiser gradient is alpha P grad r(x0h), so the
options can be checked against closed forms on one step.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.diffusion.sampler import ddim_update
from benchmark.methods import Guide, make_method


def _one_step_setup(task, index=10):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=20, eta=0.0)
    step = sampler.steps[index]
    objective = task.objective("quadratic_off")
    theta = objective.theta
    x_t = torch.randn(5, 64, generator=torch.Generator().manual_seed(7))
    x0h = step.alpha * task.project(x_t)
    e = (x_t - step.alpha * x0h) / math.sqrt(step.h)
    grad_r = lambda x: -2 * (x @ theta - 3).unsqueeze(-1) * theta                  # noqa: E731
    return sampler, step, objective, x_t, x0h, e, grad_r


def test_polyak_step_one_step_closed_form(subspace):
    """x_{t-1} = DDIM(x0h, e) + zeta g_t with zeta = strength ||e|| / (||g_t||^2 + polyak_eps), per sample."""
    sampler, step, objective, x_t, x0h, e, grad_r = _one_step_setup(subspace)
    g_t = step.alpha * subspace.project(grad_r(x0h))
    zeta = 0.05 * e.norm(dim=1) / (g_t.norm(dim=1) ** 2 + 1e-2)
    want = ddim_update(x0h, e, step, torch.zeros_like(x_t)) + zeta.unsqueeze(-1) * g_t
    for name in ("freedom", "dps"):
        method = make_method(name, 0.05, polyak=True, polyak_eps=1e-2)
        got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(list(range(5)), (64,)))
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), name


def test_random_augmentation_averages_the_gradient_over_augmentations(subspace):
    """g_t = (1/|T|) sum_j grad_{x_t} r(T_j(x0h)), T_j(x) = x + jitter z_j with z_j the chain's next
    draws (taken before the step's own draw), here with DPS's constant step (normalise="none")."""
    sampler, step, objective, x_t, x0h, e, grad_r = _one_step_setup(subspace)
    seeds = list(range(5))
    zs = [PerSampleNoise(seeds, (64,)) for _ in range(1)][0]
    draws = [zs.draw() for _ in range(3)]
    g_t = sum(step.alpha * subspace.project(grad_r(x0h + subspace.jitter * z)) for z in draws) / 3
    want = ddim_update(x0h, e, step, torch.zeros_like(x_t)) + 0.2 * g_t
    method = make_method("dps", 0.2, normalise="none", augment=3)
    got = method.step(x_t, step, sampler, Guide(objective, augment=subspace.augment), PerSampleNoise(seeds, (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_augmentation_needs_the_tasks_family(subspace):
    sampler, step, objective, x_t, *_ = _one_step_setup(subspace)
    with pytest.raises(ValueError, match="augmentation family"):
        make_method("freedom", 0.1, augment=2).step(x_t, step, sampler, Guide(objective), PerSampleNoise([0] * 5, (64,)))


def test_time_travel_window():
    """travel_start = 0 means no upper limit: recurrence alone travels at every step."""
    every = make_method("freedom", 0.1, recurrence=3)
    window = make_method("freedom", 0.1, recurrence=3, travel_start=100, travel_end=60)
    assert [every.repeats(t) for t in (1, 60, 200)] == [3, 3, 3]
    assert [window.repeats(t) for t in (59, 60, 100, 101)] == [1, 3, 3, 1]
    assert make_method("dps", 0.1).repeats(50) == 1


def test_time_travel_one_step_renoises_and_redoes(subspace):
    """recurrence = 2 at eta = 0: x' = f(x_t), then f(sqrt(a_t) x' + sqrt(1 - a_t) z) with f FreeDoM's
    guided step and z the chain's second draw (the first is the unused DDIM noise of the first pass)."""
    sampler, step, objective, x_t, _, _, grad_r = _one_step_setup(subspace)
    seeds = list(range(5))
    stream = PerSampleNoise(seeds, (64,))
    z = [stream.draw() for _ in range(2)][1]

    def guided(x):                                     # FreeDoM with the oracle: rho_t = strength sqrt(ab_t)
        x0h = step.alpha * subspace.project(x)
        e = (x - step.alpha * x0h) / math.sqrt(step.h)
        g_t = step.alpha * subspace.project(grad_r(x0h))
        return ddim_update(x0h, e, step, torch.zeros_like(x)) + 0.1 * step.alpha * g_t

    want = guided(math.sqrt(step.a_t) * guided(x_t) + math.sqrt(1 - step.a_t) * z)
    method = make_method("freedom", 0.1, recurrence=2)
    got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(seeds, (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, guided(x_t), atol=1e-2)          # the repeat changed the step


def test_shen_is_freedom_with_all_three(subspace):
    def run(name, **params):
        sched = make_schedule("cosine", 200)
        sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=20)
        noise = PerSampleNoise.for_chains(("shen",), 4, (64,))
        guide = Guide(CountingObjective(subspace.objective("negnorm_random"), Costs()), augment=subspace.augment)
        return sample(sampler, make_method(name, 0.02, **params), noise.draw(), noise, guide)
    assert torch.equal(run("shen"), run("freedom", augment=10, polyak=True, recurrence=2))


def test_polyak_reaches_the_support_optimum_where_plain_freedom_does_not(subspace):
    """negnorm_random, oracle, 32 chains x 200 steps, the same noise: FreeDoM at strength 0.03 gains
    ~0.2 over unguided (r ~ -17.4); with Polyak's step it reaches the best reward on span(A)
    (objective.optimum_on_support, ~ -14.38) to within 0.05 (measured -14.376)."""
    objective = subspace.objective("negnorm_random")

    def reward(name, **params):
        sched = make_schedule("cosine", 200)
        sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched)
        noise = PerSampleNoise.for_chains(("polyak",), 32, (64,))
        x = sample(sampler, make_method(name, 0.03, **params), noise.draw(), noise, Guide(objective))
        return float(objective(x).mean())

    plain, polyak = reward("freedom"), reward("freedom", polyak=True)
    assert polyak > plain + 2.0
    assert abs(polyak - objective.optimum_on_support) < 0.05


@pytest.mark.parametrize("name,params,message", [
    ("dps", {"augment": -1}, "augment .* must be >= 0"),
    ("shen", {"polyak_eps": 0.0}, "polyak_eps must be > 0"),
    ("ugd", {"backward_steps": -1}, "backward_steps \\(m\\) must be >= 0"),
    ("ugd", {"recurrence": 0}, "recurrence must be >= 1"),
    ("lgd", {"n": 0}, "n \\(Monte-Carlo draws\\) must be >= 1"),
    ("lgd", {"polyak": "yes"}, "polyak must be bool"),
])
def test_bad_options_raise_naming_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_method(name, 0.1, **params)
