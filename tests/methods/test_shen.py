"""benchmark/methods/shen.py: the bundled `shen`, and Shen et al. (2024)'s three options (the Polyak step, random
augmentation, time travel; benchmark/methods/base.py) on the through-denoiser methods.

With the oracle, x0h = alpha P x_t and a through-denoiser gradient is alpha P grad r(x0h), so the
options can be checked against closed forms on one step.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.diffusion.sampler import ddim_update
from benchmark.methods import Guide, make_method
from benchmark.methods.freedom import FreeDoM
from benchmark.methods.shen import Shen
from tests.methods.test_mpgd import B, TOL, GaussianStep


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


def test_guarded_polyak_step_one_step_closed_form(subspace):
    """polyak_rule="guarded": x_{t-1} = DDIM(x0h, e) + zeta g_t with zeta = strength ||e|| / (||g_t||^2 + polyak_eps),
    per sample."""
    sampler, step, objective, x_t, x0h, e, grad_r = _one_step_setup(subspace)
    g_t = step.alpha * subspace.project(grad_r(x0h))
    zeta = 0.05 * e.norm(dim=1) / (g_t.norm(dim=1) ** 2 + 1e-2)
    want = ddim_update(x0h, e, step, torch.zeros_like(x_t)) + zeta.unsqueeze(-1) * g_t
    for name in ("freedom", "dps"):
        method = make_method(name, 0.05, polyak=True, polyak_rule="guarded", polyak_eps=1e-2)
        got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(list(range(5)), (64,)))
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), name


def _polyak_want(s, strength, rule, polyak_eps=1e-2):
    """DDIM(x0h, e) + zeta g_t by hand: g_t = J^T h (J = d x0h / d x_t, symmetric), zeta per chain by `rule`."""
    g_t = s.h() @ s.J
    e_norm, g_norm = s.e.norm(dim=1), g_t.norm(dim=1)
    if rule == "published":                          # Shen et al. Alg. 2: ||e|| / ||g||^2, none below 1e-6
        zeta = torch.where(g_norm < 1e-6, torch.zeros(B, dtype=torch.float64), strength * e_norm / g_norm ** 2)
    else:
        zeta = strength * e_norm / (g_norm ** 2 + polyak_eps)
    return s.ddim(s.x0h, s.e) + zeta[:, None] * g_t


@pytest.mark.parametrize("rule", ["published", "guarded"])
def test_polyak_step_is_shen_et_al_in_every_method(rule):
    """One eta = 0 step on Gaussian data with the exact eps (tests/methods/test_mpgd.py's GaussianStep), float64:
    the default rule is the published zeta = strength ||e|| / ||g_t||^2; "guarded" adds polyak_eps to
    ||g_t||^2. shen (without augmentation and time travel) and the `polyak` option of freedom and dps
    run the same rule."""
    s, strength = GaussianStep(), 0.05
    want = _polyak_want(s, strength, rule)
    named = {} if rule == "published" else {"polyak_rule": "guarded"}
    for name, params in (("shen", {"augment": 0, "recurrence": 1}), ("freedom", {"polyak": True}),
                         ("dps", {"polyak": True})):
        got = s.run(make_method(name, strength, **params, **named))
        assert torch.allclose(got, want, atol=TOL, rtol=0), (name, (got - want).abs().max())


def test_published_polyak_step_is_cut_off_below_1e_6_only():
    """Chain 0 has a zero gradient (w = 0), chain 1 ||g_t|| ~ 1e-8 < 1e-6: both take the unguided step
    (finite, no 0/0); chain 2 has ||g_t|| ~ 1e-5 > 1e-6 and takes the full published step."""
    s = GaussianStep()
    s.w[0], s.w[1], s.w[2] = 0.0, 1e-8, 1e-5
    g_norm = (s.h() @ s.J).norm(dim=1)
    assert g_norm[0] == 0 and 0 < g_norm[1] < 1e-6 < g_norm[2] < 1e-4
    got = s.run(make_method("shen", 0.05, augment=0, recurrence=1))
    unguided = s.ddim(s.x0h, s.e)
    assert torch.isfinite(got).all()
    assert torch.allclose(got[:2], unguided[:2], atol=TOL, rtol=0)
    assert torch.allclose(got, _polyak_want(s, 0.05, "published"), atol=TOL, rtol=1e-12)
    assert (got[2] - unguided[2]).norm() > 100 * (got[3] - unguided[3]).norm()   # strength ||e|| / ||g_t||


@pytest.mark.parametrize("rule", ["published", "guarded"])
def test_polyak_step_batch_of_8_is_8_batches_of_1_and_batched_strengths_are_the_cells(rule):
    s = GaussianStep()
    params = {"augment": 0, "recurrence": 1, "polyak_rule": rule}
    method = make_method("shen", 0.05, **params)
    assert torch.equal(s.run(method), torch.cat([s.run(method, rows=[i]) for i in range(B)]))
    strengths = torch.linspace(0.01, 0.08, B, dtype=torch.float64)
    batched = s.run(make_method("shen", 0.05, **params).with_strengths(strengths))
    alone = torch.cat([s.run(make_method("shen", float(v), **params), rows=[i]) for i, v in enumerate(strengths)])
    assert torch.equal(batched, alone)


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
    shen = make_method("shen", 0.02)
    assert isinstance(shen, Shen) and isinstance(shen, FreeDoM)
    assert (shen.augment, shen.polyak, shen.polyak_rule, shen.recurrence) == (10, True, "published", 2)
    assert torch.equal(run("shen"), run("freedom", augment=10, polyak=True, recurrence=2))


def test_guarded_polyak_reaches_the_support_optimum_where_plain_freedom_does_not(subspace):
    """negnorm_random, oracle, 32 chains x 200 steps, the same noise: FreeDoM at strength 0.03 gains
    ~0.2 over unguided (r ~ -17.4); with the guarded Polyak step it reaches the best reward on span(A)
    (objective.optimum_on_support, ~ -14.38) to within 0.05 (measured -14.376). (The published step at
    0.03 overshoots at high noise, r ~ -24; its best on this grid of strengths is ~ -14.75 at 1e-3.)"""
    objective = subspace.objective("negnorm_random")

    def reward(name, **params):
        sched = make_schedule("cosine", 200)
        sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched)
        noise = PerSampleNoise.for_chains(("polyak",), 32, (64,))
        x = sample(sampler, make_method(name, 0.03, **params), noise.draw(), noise, Guide(objective))
        return float(objective(x).mean())

    plain, polyak = reward("freedom"), reward("freedom", polyak=True, polyak_rule="guarded")
    assert polyak > plain + 2.0
    assert abs(polyak - objective.optimum_on_support) < 0.05


@pytest.mark.parametrize("name,params,message", [
    ("dps", {"augment": -1}, "augment .* must be >= 0"),
    ("shen", {"polyak_eps": 0.0}, "polyak_eps must be > 0"),
    ("shen", {"polyak_rule": "exact"}, "polyak_rule must be one of \\['published', 'guarded'\\], got 'exact'"),
    ("ugd", {"backward_steps": -1}, "backward_steps \\(m\\) must be >= 0"),
    ("ugd", {"recurrence": 0}, "recurrence must be >= 1"),
    ("lgd", {"n": 0}, "n \\(Monte-Carlo draws\\) must be >= 1"),
    ("lgd", {"polyak": "yes"}, "polyak must be bool"),
])
def test_bad_options_raise_naming_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_method(name, 0.1, **params)
