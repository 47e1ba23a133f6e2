"""bon and smc, the inference-compute references: particle streams, systematic resampling, exactness at
one particle, the importance weights, and closed forms with the oracle denoiser on the subspace task.

Closed forms. For theta a unit vector of span(A) (P theta = theta), the oracle gives
theta^T e = sqrt(1 - ab_t) s_t and theta^T x0h = sqrt(ab_t) s_t with s_t = theta^T x_t, so the
DDIM(eta) step moves s on its own:
    s_{t'} = c_t s_t + sigma_t xi,   c_t = sqrt(ab_{t'} ab_t) + sqrt((1 - ab_{t'} - sigma_t^2)(1 - ab_t)),
xi ~ N(0, 1), s_T ~ N(0, 1). Hence s_0 ~ N(0, v_0) exactly under the sampler itself, with
v_{t'} = c_t^2 v_t + sigma_t^2, v_T = 1 (v_0 -> 1 as the grid refines; 0.81 with 20 steps), and
the reward r = 10 - (s - 3)^2 of `quadratic_on` depends on x through s alone.
(a) The tilted target p(x) exp(lam r(x)): in s, exp(-s^2 / (2 v_0) - lam (s - 3)^2) is Gaussian,
        1 / v_lam = 1 / v_0 + 2 lam,   E[s] = m_lam = 6 lam v_lam = 6 lam v_0 / (1 + 2 lam v_0).
(b) Best-of-N: r <= 10 with CDF F(10 - a^2) = P(|s - 3| >= a) = 1 - Phi((3 + a) / sd) + Phi((3 - a) / sd),
    sd = sqrt(v_0), a >= 0; the best of N i.i.d. draws has CDF F^N, so
        E[max_N r] = 10 - int_{-inf}^{10} F(y)^N dy = 10 - int_0^inf 2 a F(10 - a^2)^N da
    (N = 1: 10 - E[(s - 3)^2] = 1 - v_0, checked).
"""

import math

import pytest
import torch

import benchmark.methods.smc as smc_module
from benchmark.denoisers import SubspaceOracle
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed,
                                 make_schedule, sample)
from benchmark.methods import Guide, LinearTarget, make_method
from benchmark.methods.smc import _Transition, ess, normalised, systematic
from benchmark.tasks.subspace import SubspaceTask


@pytest.fixture(scope="module")
def small():
    """A small instance of the subspace task for the many-particle runs (the closed forms depend on
    theta^T x alone; the per-sample noise of D = 64 would dominate the run time)."""
    return SubspaceTask(dim=8, d=4)


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


# ---- particle streams -------------------------------------------------------------------------------

def test_particle_streams():
    seeds, shape = [11, 12, 13], (5,)
    own = PerSampleNoise(seeds, shape)
    one = PerSampleNoise(seeds, shape).particles(1)
    assert all(torch.equal(one.draw(), own.draw()) for _ in range(3))          # one particle is the chain

    chain, K = PerSampleNoise(seeds, shape), 3
    parts = chain.particles(K)
    x_T = chain.draw()
    x = parts.start(x_T)
    z = parts.draw()
    assert x.shape == z.shape == (K * 3, 5) and torch.equal(x[:3], x_T)
    mirror = PerSampleNoise(seeds, shape)
    mirror.draw()
    assert torch.equal(z[:3], mirror.draw())                                   # particle 0 continues the chain
    for j in range(1, K):
        stream = PerSampleNoise([derive_seed(s, "particle", j) for s in seeds], shape)
        assert torch.equal(x[3 * j:3 * j + 3], stream.draw()) and torch.equal(z[3 * j:3 * j + 3], stream.draw())

    alone = PerSampleNoise([12], shape).particles(K)                           # chain 1 on its own
    alone.chain.draw()
    assert torch.equal(alone.start(x_T[1:2]), x[1::3]) and torch.equal(alone.draw(), z[1::3])

    nested = PerSampleNoise(seeds, shape).particles(2).particles(2)
    assert len(set(nested.seeds)) == len(nested.seeds) == 12
    assert not set(nested.seeds) & set(PerSampleNoise(seeds, shape).particles(4).seeds)


# ---- resampling --------------------------------------------------------------------------------------

def test_systematic_resampling_on_fixed_weights():
    """Positions (u + k) / K take the particle i with C_{i-1} <= (u + k) / K < C_i."""
    w = torch.tensor([[0.1, 0.25], [0.2, 0.25], [0.3, 0.0], [0.4, 0.5]], dtype=torch.float64)
    u = torch.tensor([0.5, 0.0], dtype=torch.float64)
    # column 0: positions .125 .375 .625 .875 in C = .1 .3 .6 1; column 1: 0 .25 .5 .75 in C = .25 .5 .5 1
    assert systematic(w, u, 4).T.tolist() == [[1, 2, 3, 3], [0, 1, 3, 3]]     # weight 0: never taken
    assert systematic(w, torch.tensor([0.35, 0.999], dtype=torch.float64), 1).tolist() == [[2, 3]]


def test_systematic_resampling_gives_floor_or_ceil_copies():
    g = torch.Generator().manual_seed(0)
    K, B = 7, 200
    w = torch.rand(K, B, generator=g, dtype=torch.float64) ** 3
    w = w / w.sum(0)
    idx = systematic(w, torch.rand(B, generator=g, dtype=torch.float64), K)
    copies = torch.zeros(K, B, dtype=torch.float64).scatter_add_(0, idx, torch.ones_like(w))
    assert ((copies >= torch.floor(K * w) - 1e-9) & (copies <= torch.ceil(K * w) + 1e-9)).all()


def test_ess_and_normalised_weights():
    log_w = torch.tensor([[0.0, 0.0, float("nan")], [0.0, -math.inf, float("nan")],
                          [0.0, -math.inf, 1.0]], dtype=torch.float64)
    w = normalised(log_w)
    assert torch.allclose(w[:, 0], torch.full((3,), 1 / 3, dtype=torch.float64))
    assert w[:, 1].tolist() == [1.0, 0.0, 0.0] and w[:, 2].tolist() == [0.0, 0.0, 1.0]  # NaN counts as weight 0
    assert torch.allclose(ess(w), torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64))
    lost = normalised(torch.full((2, 1), -math.inf, dtype=torch.float64))
    assert lost[:, 0].tolist() == [0.5, 0.5]                                      # no finite weight: uniform


def test_resampling_happens_when_the_weights_degenerate(subspace, monkeypatch):
    """Systematic resampling runs (for the chains whose ESS fell below the threshold) when lam is large,
    never when the weights stay uniform (lam = 0, unguided) or the threshold is below 1 / K; and it
    stays within each chain: a batch of 4 output samples equals 4 batches of 1."""
    calls = []

    def spy(w, u, n):
        if n > 1:
            calls.append(int((ess(w) < 0.5 * n).sum()))
        return systematic(w, u, n)

    monkeypatch.setattr(smc_module, "systematic", spy)
    sampler = _sampler(subspace)
    objective = subspace.objective("quadratic_on")
    strong = make_method("smc", 5.0, particles=4)
    x4 = _draw(subspace, sampler, strong, objective, 4)
    assert len(calls) > 0 and sum(calls) > 0
    x1 = torch.cat([sample(sampler, strong, n.draw(), n, Guide(objective))
                    for n in (PerSampleNoise([derive_seed("bon-smc", i)], (64,)) for i in range(4))])
    assert torch.allclose(x4, x1, atol=1e-5, rtol=1e-5)
    calls.clear()
    _draw(subspace, sampler, make_method("smc", 0.0, particles=4), objective, 4)
    _draw(subspace, sampler, make_method("smc", 5.0, particles=4, ess_threshold=0.2), objective, 4)
    assert calls == []


def test_without_resampling_the_ratio_potentials_give_the_same_samples(small):
    """With no resampling the factors of difference, max_ratio and rt multiply to exp(lam r(x_0)): the final
    correction makes them the same importance sampler. FK's max and sum weigh by another tilt (the max or sum
    of the reward history: tests/methods/test_smc.py), so they pick other particles."""
    sampler, objective = _sampler(small), small.objective("quadratic_on")
    outs = [_draw(small, sampler, make_method("smc", 1.0, particles=8, potential=p, ess_threshold=0.01),
                  objective, 16) for p in ("difference", "max_ratio", "rt", "max", "sum")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert not torch.equal(outs[0], outs[3]) and not torch.equal(outs[0], outs[4])


# ---- one particle is the proposal ---------------------------------------------------------------------

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
    best = _draw(subspace, sampler, make_method("bon", 0.0, n=N), objective, B)
    noise = PerSampleNoise.for_chains(("bon-smc",), B, (64,))
    x_T = noise.draw()
    draws = noise.particles(N)
    x = sample(sampler, make_method("none"), draws.start(x_T), draws).view(N, B, 64)
    r = objective(x.flatten(0, 1)).view(N, B)
    assert torch.equal(best, x[r.argmax(0), torch.arange(B)])
    assert (objective(best) >= r[0]).all()


def test_smc_with_one_particle_is_its_proposal(subspace):
    """K = 1 is the proposal exactly: unguided for any potential; a guided proposal (dps) at every step
    with s_t > 0, the last (deterministic) step made unguided."""
    sampler = _sampler(subspace)
    objective = subspace.objective("quadratic_off")
    none = _draw(subspace, sampler, make_method("none"), objective, 3)
    for potential in ("difference", "max", "sum", "max_ratio", "rt"):
        smc = _draw(subspace, sampler, make_method("smc", 2.0, particles=1, potential=potential), objective, 3)
        assert torch.equal(smc, none)
    smc = _draw(subspace, sampler, make_method("smc", 2.0, particles=1, proposal="dps", proposal_strength=0.3),
                objective, 3)
    noise = PerSampleNoise.for_chains(("bon-smc",), 3, (64,))
    x, dps, guide = noise.draw(), make_method("dps", 0.3), Guide(objective)
    for step in sampler.steps:
        x = (dps if step.sigma > 0 else make_method("none")).step(x, step, sampler, guide, noise)
    assert torch.equal(smc, x)


# ---- the importance weight of a guided proposal -------------------------------------------------------

class _Zeros:
    def __init__(self, like):
        self.like = like

    def draw(self):
        return torch.zeros_like(self.like)


def test_transition_log_ratio_is_the_gaussian_density_ratio(small):
    """log p(x' | x_t) - log q(x' | x_t) from the recorded z equals the ratio of the two Gaussian
    densities N(m_p, s_t^2 I), N(m_q, s_t^2 I), their means made with zero noise."""
    sampler = _sampler(small, dtype=torch.float64)
    guide = Guide(small.objective("quadratic_on").double())
    dps, none = make_method("dps", 0.05, normalise="none"), make_method("none")
    x = torch.randn(5, small.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for step in sampler.steps[2:-1:6]:
        record = _Transition(sampler)
        record.begin(x)
        x_prev = dps.step(x, step, record, guide, PerSampleNoise(range(5), (small.dim,), dtype=torch.float64))
        m_q = dps.step(x, step, sampler, guide, _Zeros(x))
        m_p = none.step(x, step, sampler, guide, _Zeros(x))
        log_density = lambda m: torch.distributions.Normal(m, step.sigma).log_prob(x_prev).sum(1)  # noqa: E731
        assert torch.allclose(record.log_ratio(x_prev, step), log_density(m_p) - log_density(m_q), atol=1e-9)


def test_smc_corrects_a_guided_proposal_back_to_the_prior(small):
    """lam = 0 with a DPS proposal: the target is the sampler's own p, s ~ N(0, v_0); the proposal alone
    is biased, its importance-weighted particles are not."""
    sampler, objective, B = _sampler(small), small.objective("quadratic_on"), 1000
    theta = objective.theta
    proposal = dict(proposal="dps", proposal_strength=0.005, proposal_params="normalise=none")
    sd = math.sqrt(_sampler_variance(sampler, theta))
    s1 = _draw(small, sampler, make_method("smc", 0.0, particles=1, **proposal), objective, B) @ theta
    s32 = _draw(small, sampler, make_method("smc", 0.0, particles=32, **proposal), objective, B) @ theta
    assert float(s1.mean()) > 8 * sd / math.sqrt(B)
    assert abs(float(s32.mean())) < 4 * sd / math.sqrt(B)


def test_guided_proposal_needs_noise_and_a_single_gaussian_transition(subspace):
    objective = subspace.objective("quadratic_on")
    with pytest.raises(ValueError, match="needs eta > 0.*cannot be importance-corrected"):
        _draw(subspace, _sampler(subspace, eta=0.0), make_method("smc", 1.0, proposal="dps"), objective, 2)
    _draw(subspace, _sampler(subspace, eta=0.0), make_method("smc", 1.0), objective, 2)   # unguided: fine
    with pytest.raises(ValueError, match="not one Gaussian"):
        _draw(subspace, _sampler(subspace), make_method("smc", 1.0, proposal="dps", proposal_strength=0.1,
                                                        proposal_params="recurrence=2"), objective, 2)


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


def test_smc_counts_its_potential_evaluations(subspace):
    """Potentials at every resample_every-th step but the last, plus the final correction: with S = 20 and
    resample_every = 3, D = floor(19 / 3) = 6 potential steps, K (D + 1) evaluations per output sample."""
    costs = Costs()
    sampler = _sampler(subspace, costs=costs)
    objective = CountingObjective(subspace.objective("quadratic_on"), costs)
    _draw(subspace, sampler, make_method("smc", 1.0, particles=5, resample_every=3), objective, 2)
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == \
        (2 * 5 * 20, 0, 2 * 5 * 7, 0)


# ---- closed forms on the oracle -------------------------------------------------------------------------

def _tilted_mean_error(task, lam, K, B, potential="difference", steps=20):
    """(mean of s = theta^T x over B output samples - m_lam, its standard error)."""
    sampler, objective = _sampler(task, steps=steps), task.objective("quadratic_on")
    v0 = _sampler_variance(sampler, objective.theta)
    m_lam = 6 * lam * v0 / (1 + 2 * lam * v0)
    s = (_draw(task, sampler, make_method("smc", lam, particles=K, potential=potential), objective, B)
         @ objective.theta).double()
    return float(s.mean()) - m_lam, float(s.std()) / math.sqrt(B)


def test_smc_approaches_the_tilted_target_as_k_grows(small):
    """E[theta^T x] under p(x) exp(lam r(x)) is m_lam = 6 lam v_0 / (1 + 2 lam v_0) (module docstring):
    one particle is unguided sampling, far from it; 64 particles are within sampling error."""
    lam, B = 0.5, 1000
    err1, se1 = _tilted_mean_error(small, lam, 1, B)
    err64, se64 = _tilted_mean_error(small, lam, 64, B)
    assert abs(err1) > 30 * se1
    assert abs(err64) < 4 * se64


@pytest.mark.slow
@pytest.mark.parametrize("potential", ["difference", "max_ratio"])
def test_smc_tilted_target_high_precision(small, potential):
    err, se = _tilted_mean_error(small, 0.5, 256, 4000, potential=potential)
    assert abs(err) < 4 * se


def test_bon_mean_best_reward_is_the_order_statistic(subspace):
    """bon with the unguided proposal: the best of N rewards of s ~ N(0, v_0), module docstring (b)."""
    sampler, objective = _sampler(subspace), subspace.objective("quadratic_on")
    v0 = _sampler_variance(sampler, objective.theta)
    assert _expected_best(v0, 1) == pytest.approx(1 - v0, abs=1e-6)
    for N, B in ((1, 2000), (4, 1000), (16, 500)):
        r = objective(_draw(subspace, sampler, make_method("bon", 0.0, n=N), objective, B, seed=("bon", N)))
        r = r.double()
        assert abs(float(r.mean()) - _expected_best(v0, N)) < 4 * float(r.std()) / math.sqrt(B), N
