"""svdd (Li et al. 2024, soft value-based decoding): one candidate is the unguided sampler, one step of selection
by hand, the counted cost, and its mean reward against closed forms on the oracle subspace task.

Closed forms (oracle, `quadratic_on`, r = 10 - (s - 3)^2 with s = theta^T x, theta a unit vector of span(A);
tests/methods/test_bon.py's module docstring): the data is N(0, A A^T), so s_0 ~ N(0, 1) under the data and the
DDIM(eta) step moves s on its own, s' = c s + sigma xi, c = sqrt(ab' ab) + sqrt((1 - ab' - sigma^2)(1 - ab)),
s_T ~ N(0, |theta|^2); so the sampler's own s_0 ~ N(0, v_0) with v_{t'} = c^2 v_t + sigma^2 (v_0 < 1 on a
coarse grid). Everything below is a Gaussian times exp(quadratic):
(a) the tilted target p(x_0) exp(lam r(x_0)) (p the sampler's law; the data's: v_0 = 1): in s,
        1 / v_lam = 1 / v_0 + 2 lam,   m_lam = 6 lam v_lam,   E r = 10 - v_lam - (m_lam - 3)^2.
(b) svdd's M -> infinity limit with softmax(lam v): each step draws s' from N(c s, sigma^2) times the selection
    weight W(s') = exp(-(P / 2)(s' - mu)^2), again Gaussian:
        s' ~ N((c s + P sigma^2 mu) / (1 + P sigma^2), sigma^2 / (1 + P sigma^2)),
    so mean and variance of s propagate in closed form (the last step, sigma = 0, is s_0 = c s_1 unselected).
      pm: W = exp(lam r(x0h(x'))), theta^T x0h = a s' with a = sqrt(ab'): P = 2 lam a^2, mu = 3 / a.
      mc with full rollouts: E[W] = h_{t'}(s') = E[exp(lam r(s_0)) | s'] along the sampler's own chain, by the
          backward recursion h_0: P = 2 lam, mu = 3; through a step (c, sigma): P <- P c^2 / (1 + P sigma^2),
          mu <- mu / c. Importance resampling with an unbiased random weight is exact as M -> infinity, so the
          limit is the tilted target given the untilted x_T, which equals (a) to 1e-6 here (ab_T ~ 6e-8).
    PM overshoots (a): it weighs the posterior mean as if it were x_0, ignoring the posterior variance, which
    a Gaussian soft value shrinks by 1 / (1 + 2 lam Var[s_0 | s_t]); so its mean reward passes the target's.
"""

import math

import pytest
import torch

from benchmark.denoisers import SubspaceOracle
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed,
                                 make_schedule, sample)
from benchmark.diffusion.sampler import ddim_update, tweedie
from benchmark.methods import Guide, make_method
from benchmark.methods.svdd import rollout_grid
from benchmark.tasks.subspace import SubspaceTask

LAM = 0.5


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


@pytest.fixture(scope="module")
def small():
    """The subspace task at D = 8 for the many-candidate runs (the closed forms depend on theta^T x alone)."""
    return SubspaceTask(dim=8, d=4)


def _sampler(task, steps=20, eta=1.0, costs=None):
    sched = make_schedule("cosine", 200)
    return Sampler(CountingDenoiser(SubspaceOracle(task.A, sched), costs if costs is not None else Costs()), sched,
                   steps=steps, eta=eta)


def _draw(task, sampler, method, objective, B, seed="svdd"):
    noise = PerSampleNoise.for_chains((seed,), B, (task.dim,))
    return sample(sampler, method, noise.draw(), noise, Guide(objective))


def _coefficients(sampler):
    """(c, sigma, ab') of each step: s' = c s + sigma xi."""
    return [(math.sqrt(st.ab_prev * st.ab_t) + math.sqrt(max(1 - st.ab_prev - st.sigma ** 2, 0.0) * (1 - st.ab_t)),
             st.sigma, st.ab_prev) for st in sampler.steps]


def _tilted(sampler, t2, lam):
    """(m_lam, v_lam, E r) of the tilted sampler law (a)."""
    v0 = t2
    for c, s, _ in _coefficients(sampler):
        v0 = c * c * v0 + s * s * t2
    v = 1 / (1 / v0 + 2 * lam)
    m = 6 * lam * v
    return m, v, 10 - v - (m - 3) ** 2


def _limit(sampler, t2, lam, value):
    """(mean, variance, E r) of s_0 under svdd's M -> infinity limit (b), value 'pm' or 'mc' (full rollouts)."""
    coeffs = _coefficients(sampler)
    h, P, mu = [None] * len(coeffs), 2 * lam, 3.0
    for i in reversed(range(len(coeffs))):                       # h_{t'} after step i, backwards from h_0
        h[i] = (P, mu)
        c, s, _ = coeffs[i]
        P, mu = P * c * c / (1 + P * s * s * t2), mu / c
    m, v = 0.0, t2
    for i, (c, s, ab_prev) in enumerate(coeffs):
        if s == 0:
            m, v = c * m, c * c * v
            continue
        P, mu = (2 * lam * ab_prev, 3 / math.sqrt(ab_prev)) if value == "pm" else h[i]
        q = s * s * t2                                           # Var[s' | s]
        m, v = (c * m + P * q * mu) / (1 + P * q), (c / (1 + P * q)) ** 2 * v + q / (1 + P * q)
    return m, v, 10 - v - (m - 3) ** 2


def _mean_reward(task, steps, B, seed, **params):
    """(mean reward, its standard error) of B svdd samples (softmax at LAM unless M = 1)."""
    sampler, objective = _sampler(task, steps), task.objective("quadratic_on")
    strength = 0.0 if params.get("candidates") == 1 else LAM
    select = "argmax" if params.get("candidates") == 1 else "softmax"
    r = objective(_draw(task, sampler, make_method("svdd", strength, select=select, **params), objective, B,
                        seed=seed)).double()
    return float(r.mean()), float(r.std()) / math.sqrt(B)


# ---- exactness ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{}, {"value": "mc"}, {"select": "softmax"},
                                    {"value": "mc", "select": "softmax", "rollout_steps": 5}])
def test_one_candidate_is_unguided_sampling(subspace, params):
    """M = 1: candidate 0 continues the chain's stream and nothing is selected or evaluated: the samples and the
    cost are `none`'s exactly."""
    objective = subspace.objective("quadratic_off")
    costs = Costs()
    svdd = make_method("svdd", 2.0 if params.get("select") == "softmax" else 0.0, candidates=1, **params)
    x = _draw(subspace, _sampler(subspace, costs=costs), svdd, CountingObjective(objective, costs), 3)
    assert torch.equal(x, _draw(subspace, _sampler(subspace), make_method("none"), objective, 3))
    assert (costs.denoiser_forwards, costs.objective_evals) == (3 * 20, 0)


@pytest.mark.parametrize("select, strength", [("argmax", 0.0), ("softmax", 0.7)])
def test_one_selection_by_hand(small, select, strength):
    """Two steps: step 0 draws M candidates x^(m) = DDIM(x0h(x_T), e, z^(m)) (z^(0) the chain's own next draw,
    z^(m) the first draw of the stream derive_seed(seed, 'particle', m)), values r(x0h(x^(m))); the last step
    returns x0h of the kept candidate. argmax keeps the best; softmax the first m whose cumulative
    softmax(lam v) exceeds u = Phi(g), g the first draw of the stream derive_seed(seed, 'select')."""
    M, B = 5, 6
    sampler, objective = _sampler(small, steps=2), small.objective("quadratic_on")
    x = _draw(small, sampler, make_method("svdd", strength, candidates=M, select=select), objective, B)
    seeds = [derive_seed("svdd", i) for i in range(B)]
    own = PerSampleNoise(seeds, (small.dim,))
    x_T, z0 = own.draw(), own.draw()
    z = torch.cat([z0] + [PerSampleNoise([derive_seed(s, "particle", m) for s in seeds], (small.dim,)).draw()
                          for m in range(1, M)])
    first, last = sampler.steps
    model = sampler.denoiser.model
    with torch.no_grad():
        e = model(x_T, torch.full((B,), first.t))
        x_c = ddim_update(tweedie(x_T, e, first.ab_t).repeat(M, 1), e.repeat(M, 1), first, z)
        x0 = tweedie(x_c, model(x_c, torch.full((M * B,), last.t)), last.ab_t).view(M, B, -1)
        v = objective(x0.flatten(0, 1)).double().view(M, B)
    if select == "argmax":
        pick = v.argmax(0)
    else:
        u = torch.special.ndtr(PerSampleNoise([derive_seed(s, "select") for s in seeds], ()).draw().double())
        pick = (torch.cumsum(torch.softmax(strength * v, 0), 0) <= u).sum(0)
    assert torch.equal(x, x0[pick, torch.arange(B)])
    if select == "argmax":
        assert torch.equal(objective(x).double(), v.max(0).values)


@pytest.mark.parametrize("select, strength", [("argmax", 0.0), ("softmax", 1.0)])
def test_one_step_rollouts_are_the_posterior_mean(small, select, strength):
    """mc with rollout_steps = 1: each rollout is the one deterministic DDIM step to 0, x0h: the same samples and
    cost as pm (without clip_x0)."""
    objective = small.objective("quadratic_on")
    outs = []
    for value, extra in (("pm", {}), ("mc", {"rollouts": 3, "rollout_steps": 1})):
        costs = Costs()
        method = make_method("svdd", strength, candidates=4, select=select, value=value, **extra)
        outs.append((_draw(small, _sampler(small, 10, costs=costs), method, CountingObjective(objective, costs), 4),
                     costs.denoiser_forwards, costs.objective_evals))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1:] == outs[1][1:] == (4 * (1 + 4 * 9), 4 * 4 * 9)


@pytest.mark.parametrize("select, strength", [("argmax", 0.0), ("softmax", 0.8)])
def test_mc_value_by_hand(small, select, strength):
    """The mc score of M = 2 candidates at t' = t_1 of a 3-step grid, K = 3 rollouts of R = 2 steps (t_1 -> t_2 with
    the rollout streams' first draw, then x_0 = x0h(x_{t_2})): argmax scores the mean reward over the rollouts,
    softmax the log of the mean of exp(lam r) (= lam times the soft value)."""
    M, K, B = 2, 3, 2
    sampler, objective = _sampler(small, steps=3), small.objective("quadratic_on")
    method = make_method("svdd", strength, candidates=M, select=select, value="mc", rollouts=K, rollout_steps=2)
    chains = PerSampleNoise([derive_seed("mc-hand", i) for i in range(B)], (small.dim,))
    x_c = torch.randn(M * B, small.dim, generator=torch.Generator().manual_seed(3))
    model, (_, s1, s2) = sampler.denoiser.model, sampler.steps
    with torch.no_grad():
        e_c = model(x_c, torch.full((M * B,), s1.t))
        score = method._score(x_c, e_c, 0, sampler, Guide(objective).for_particles(M),
                              chains.derived("rollout").particles(K * M), M, B)
        z = PerSampleNoise([derive_seed("mc-hand", i) for i in range(B)], (small.dim,)) \
            .derived("rollout").particles(K * M).draw()
        x1 = ddim_update(tweedie(x_c, e_c, s1.ab_t).repeat(K, 1), e_c.repeat(K, 1), s1, z)
        x0 = tweedie(x1, model(x1, torch.full((K * M * B,), s2.t)), s2.ab_t)
        r = objective(x0).double().view(K, M, B)
    expected = r.mean(0) if select == "argmax" else torch.log(torch.exp(strength * r).mean(0))
    assert torch.allclose(score, expected, atol=1e-9, rtol=1e-9)


def test_rollout_grid_is_evenly_spaced_on_the_remaining_grid(small):
    sampler = _sampler(small, steps=10)
    ts = [s.t for s in sampler.steps] + [0]                                  # 200, 180, ..., 20, 0
    grid = rollout_grid(sampler, 0, 3)                                       # from t' = 180 over 9 grid steps
    assert [(s.t, s.t_prev) for s in grid] == [(180, 120), (120, 60), (60, 0)]
    assert all(s.eta == 1.0 and s.num_steps == 3 for s in grid) and grid[-1].sigma == 0
    full = rollout_grid(sampler, 3, 50)                                      # the sampler's own remaining steps
    assert [s.t for s in full] == ts[4:-1] and [(s.ab_t, s.ab_prev) for s in full] == \
        [(s.ab_t, s.ab_prev) for s in sampler.steps[4:]]
    assert len(rollout_grid(sampler, 8, 3)) == 1                             # t' = 20: one step to 0


def test_eta_zero_makes_equal_candidates(subspace):
    """With eta = 0 the M candidates coincide: svdd is deterministic DDIM(0), at M forwards per step."""
    objective = subspace.objective("quadratic_on")
    x = _draw(subspace, _sampler(subspace, eta=0.0), make_method("svdd", 0.0, candidates=3), objective, 4)
    assert torch.allclose(x, _draw(subspace, _sampler(subspace, eta=0.0), make_method("none"), objective, 4),
                          atol=1e-5, rtol=1e-5)


# ---- cost -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, steps, expected", [
    ({"candidates": 4}, 20, (1 + 4 * 19, 0, 4 * 19, 0)),
    ({"candidates": 4}, 1, (1, 0, 0, 0)),
    # K = 4, R = 2: 18 steps of 4 (1 + 4) forwards and 16 rewards, then one with R = 1: 4 and 4
    ({"candidates": 4, "value": "mc"}, 20, (1 + 18 * 20 + 4, 0, 18 * 16 + 4, 0)),
    # K = 2, R = 5: steps with R_i = 5, 5, 5, 4, 3, 2, 1 (S = 8): 3 (1 + 2 (R_i - 1)) forwards, 3 K_i rewards
    ({"candidates": 3, "value": "mc", "rollouts": 2, "rollout_steps": 5}, 8,
     (1 + 3 * (9 + 9 + 9 + 7 + 5 + 3 + 1), 0, 3 * (2 * 6 + 1), 0)),
])
def test_counted_cost_is_the_declared_formula(small, params, steps, expected):
    costs, B = Costs(), 2
    method = make_method("svdd", 0.0, **params)
    _draw(small, _sampler(small, steps, costs=costs), method, CountingObjective(small.objective("quadratic_on"),
                                                                               costs), B)
    assert method.costs_per_sample(steps) == expected
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == \
        tuple(B * c for c in expected)


@pytest.mark.parametrize("strength, params, message", [
    (0.5, {}, "select 'argmax' is alpha = 0 .* use strength 0"),
    (0.0, {"candidates": 0}, "candidates .* must be >= 1"),
    (0.0, {"value": "mc", "rollouts": 0}, "must be >= 1"),
    (0.0, {"rollout_steps": 3}, "parameters of value 'mc'"),
    (0.0, {"select": "max"}, "select must be one of"),
    (0.0, {"value": "exact"}, "value must be one of"),
])
def test_bad_settings_are_refused(strength, params, message):
    with pytest.raises(ValueError, match=message):
        make_method("svdd", strength, **params)


# ---- closed forms on the oracle -------------------------------------------------------------------------

def test_closed_forms(small):
    """The exact limit (mc, full rollouts) is the tilted sampler law; the data's tilted law differs from it by
    the coarse grid; PM's limit passes the target."""
    theta = small.objective("quadratic_on").theta.double()
    t2 = float(theta @ theta)
    for steps in (5, 20):
        sampler = _sampler(small, steps)
        target = _tilted(sampler, t2, LAM)
        exact = _limit(sampler, t2, LAM, "mc")
        assert all(abs(a - b) < 1e-6 for a, b in zip(exact, target))
        assert _limit(sampler, t2, LAM, "pm")[2] > target[2] + 0.3
    v = 1 / (1 + 2 * LAM)                                                      # the data's: v_0 = 1
    assert 10 - v - (6 * LAM * v - 3) ** 2 == pytest.approx(7.25)
    assert _limit(_sampler(small, 20), t2, 0.0, "pm")[2] == pytest.approx(1 - _tilted(_sampler(small, 20), t2, 0)[1])


def test_pm_mean_reward_rises_with_m_to_its_limit(small):
    """SVDD-PM at lam = 0.5, 20 steps: E r rises with M from the unguided 1 - v_0 towards and past the tilted
    target (6.81), bounded by PM's own M -> infinity limit (7.74)."""
    sampler, theta = _sampler(small), small.objective("quadratic_on").theta.double()
    t2 = float(theta @ theta)
    limit, target = _limit(sampler, t2, LAM, "pm")[2], _tilted(sampler, t2, LAM)[2]
    (r1, se1), (r4, se4), (r16, se16) = (_mean_reward(small, 20, 1000, "pm", candidates=M) for M in (1, 4, 16))
    assert abs(r1 - _tilted(sampler, t2, 0.0)[2]) < 4 * se1                  # M = 1: unguided, E r = 1 - v_0
    assert r4 > r1 + 4 * math.hypot(se1, se4) and r16 > r4 + 4 * math.hypot(se4, se16)
    assert r16 < limit + 4 * se16 and limit - r16 < limit - r4 < limit - r1
    assert r4 < target + 4 * se4 < limit


@pytest.mark.slow
def test_pm_reaches_its_limit(small):
    r, se = _mean_reward(small, 20, 2000, "pm-64", candidates=64)
    theta = small.objective("quadratic_on").theta.double()
    assert abs(r - _limit(_sampler(small), float(theta @ theta), LAM, "pm")[2]) < 4 * se


def test_mc_with_full_rollouts_approaches_the_tilted_target(small):
    """SVDD with the Monte-Carlo soft value of full rollouts (K = 1, the sampler's own remaining chain), 5 steps:
    E r rises with M towards the tilted target's E r (5.67), from below."""
    sampler, theta = _sampler(small, 5), small.objective("quadratic_on").theta.double()
    target = _tilted(sampler, float(theta @ theta), LAM)[2]
    full = {"value": "mc", "rollouts": 1, "rollout_steps": 5}
    (r1, se1), (r4, se4), (r16, se16) = (_mean_reward(small, 5, 1000, "mc", candidates=M, **full) for M in (1, 4, 16))
    assert r4 > r1 + 4 * math.hypot(se1, se4) and r16 > r4 + 4 * math.hypot(se4, se16)
    assert r16 < target + 4 * se16 and target - r16 < target - r4 < target - r1


@pytest.mark.slow
def test_mc_with_full_rollouts_reaches_the_tilted_target(small):
    """M = 64, K = 1, 10 steps, 2000 chains: E r and E s within 4 standard errors of the tilted target's."""
    B, sampler, objective = 2000, _sampler(small, 10), small.objective("quadratic_on")
    method = make_method("svdd", LAM, candidates=64, select="softmax", value="mc", rollouts=1, rollout_steps=10)
    x = _draw(small, sampler, method, objective, B, seed="mc-64")
    theta = objective.theta.double()
    m, _, er = _tilted(sampler, float(theta @ theta), LAM)
    s, r = x.double() @ theta, objective(x).double()
    assert abs(float(s.mean()) - m) < 4 * float(s.std()) / math.sqrt(B)
    assert abs(float(r.mean()) - er) < 4 * float(r.std()) / math.sqrt(B)


def test_argmax_maximises_the_reward(small):
    """alpha = 0 (their code's rule): greedy selection drives s to the reward's maximiser 3 (r -> 10)."""
    sampler, objective = _sampler(small), small.objective("quadratic_on")
    r = objective(_draw(small, sampler, make_method("svdd", 0.0, candidates=16), objective, 200)).double()
    assert float(r.mean()) > 9.9


# ---- other denoisers -------------------------------------------------------------------------------------

def test_runs_on_the_digits_label_objective(digits_models):
    """The tiny digits U-Net and classifier: a batch equals single chains, the counted cost is the declared
    one, and argmax selection raises the mean label reward of the same chains over unguided sampling."""
    from benchmark.denoisers import load_checkpoint
    from benchmark.tasks import make_task
    from benchmark.tasks.digits import MODEL_FILES

    task = make_task("digits", models_dir=digits_models)
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    n, steps = 6, 5

    def run(method, chains, offset=0):
        costs = Costs()
        sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=steps)
        objective = CountingObjective(task.objective("label", {"target": 3}), costs)
        noise = PerSampleNoise([derive_seed("svdd-digits", i + offset) for i in range(chains)], (1, 8, 8))
        x = sample(sampler, method, noise.draw(), noise, Guide(objective))
        return x, costs, objective.objective

    svdd = make_method("svdd", 0.0, candidates=4)
    x, costs, objective = run(svdd, n)
    assert x.shape == (n, 1, 8, 8) and torch.isfinite(x).all()
    assert (costs.denoiser_forwards, costs.objective_evals) == tuple(n * c for c in
                                                                      svdd.costs_per_sample(steps)[::2])
    single = torch.cat([run(svdd, 1, i)[0] for i in range(n)])
    assert torch.allclose(x, single, atol=1e-4, rtol=1e-4)               # conv kernels round per batch size
    unguided = run(make_method("none"), n)[0]
    assert float(objective(x).mean()) > float(objective(unguided).mean())
    soft = make_method("svdd", 1.0, candidates=3, select="softmax", value="mc", rollouts=2)
    assert torch.isfinite(run(soft, 2)[0]).all()


def test_runs_on_a_tiny_images_model(tmp_path):
    """A tiny randomly initialised diffusers UNet on 1 x 32 x 32 images (the images task's loader) with the
    images task's user reward (mean brightness): counted = declared, finite, and the reward raised."""
    pytest.importorskip("diffusers")
    from images_fixture import save_tiny_model, write_digit_folder

    from benchmark.denoisers.hf import load_diffusers
    from benchmark.tasks.images import ImagesTask

    save_tiny_model(tmp_path / "tiny")
    write_digit_folder(tmp_path / "digits", n=2)
    task = ImagesTask(folder=tmp_path / "digits")
    model, schedule, _ = load_diffusers(str(tmp_path / "tiny"))
    n, steps = 2, 4

    def run(method):
        costs = Costs()
        sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=steps)
        objective = CountingObjective(task.objective("reward", {"fn": "images_fixture:brightness"}), costs)
        noise = PerSampleNoise([derive_seed("svdd-images", i) for i in range(n)], (1, 32, 32))
        x = sample(sampler, method, noise.draw(), noise, Guide(objective))
        return x, costs, objective.objective

    svdd = make_method("svdd", 0.0, candidates=4)
    x, costs, objective = run(svdd)
    assert x.shape == (n, 1, 32, 32) and torch.isfinite(x).all()
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == \
        tuple(n * c for c in svdd.costs_per_sample(steps))
    assert float(objective(x).mean()) > float(objective(run(make_method("none"))[0]).mean())
