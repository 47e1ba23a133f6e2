"""benchmark/methods/smc.py: systematic resampling and the ESS, exactness at one particle, the importance weight of
a guided proposal, the counted cost, the five potentials' weights on a hand-built reward history by independent
arithmetic, what each targets, and how far each lands from the tilted target p exp(lam r), with closed forms on the
oracle subspace task.

Singhal et al.'s `max` and `sum` (their code, discrete_diffusion/fkd_class.py) weigh by the whole tilt
exp(lam M_t), exp(lam S_t) at each potential step, and end with exp(lam R) / prod_t G_t; `difference`,
`max_ratio` and `rt` weigh by ratios and end with exp(lam r(x_0)) / prod_t G_t.

The tilted target. With the oracle on `quadratic_on` (r = 10 - (s - 3)^2, s = theta^T x) the sampler's own
s_0 ~ N(0, v_0) (the DDIM recursion of tests/methods/test_bon.py's module docstring); in s, p(x) exp(lam r(x)) is
exp(-s^2 / (2 v_0) - lam (s - 3)^2), Gaussian:
        1 / v_lam = 1 / v_0 + 2 lam,   E[s] = m_lam = 6 lam v_lam = 6 lam v_0 / (1 + 2 lam v_0).
"""

import math

import pytest
import torch

import benchmark.methods.smc as smc_module
from benchmark.denoisers import SubspaceOracle
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed,
                                 make_schedule, sample)
from benchmark.methods import Guide, make_method
from benchmark.methods.smc import _Transition, ess, normalised, systematic
from benchmark.tasks.subspace import SubspaceTask
from tests.methods.test_bon import _draw, _sampler, _sampler_variance

LAM = 0.5
# r(x0h_t) of K = 3 particles (one chain) at the D = 3 potential steps of a 4-step grid, then r(x_0)
HISTORY = [[1.0, -2.0, 0.5], [3.0, -5.0, 0.0], [2.0, 0.0, 1.0]]
FINAL = [0.5, 4.0, -1.0]

# log G_t at each potential step and the final factor, worked out by hand from HISTORY and FINAL (lam = 0.5)
LOG_G = {
    # lam (r_t - r_prev), r_prev = 0 first; final lam (r_0 - r_3)
    "difference": [[0.5, -1.0, 0.25], [1.0, -1.5, -0.25], [-0.5, 2.5, 0.5], [-0.75, 2.0, -1.0]],
    # M = max(0, r_1..r_t) = [1, 0, .5], [3, 0, .5], [3, 0, 1]; lam M_t; final lam max(M_3, r_0) - lam (M_1 + M_2 + M_3)
    #   = .5 [3, 4, 1] - .5 [7, 0, 2]
    "max": [[0.5, 0.0, 0.25], [1.5, 0.0, 0.25], [1.5, 0.0, 0.5], [-2.0, 2.0, -0.5]],
    # S = [1, -2, .5], [4, -7, .5], [6, -7, 1.5]; lam S_t; final lam (S_3 + r_0) - lam (S_1 + S_2 + S_3)
    #   = .5 [6.5, -3, .5] - .5 [11, -16, 2.5]
    "sum": [[0.5, -1.0, 0.25], [2.0, -3.5, 0.25], [3.0, -3.5, 0.75], [-2.25, 6.5, -1.0]],
    # M without floor = [1, -2, .5], [3, -2, .5], [3, 0, 1]; lam (M_t - M_prev); final lam (r_0 - M_3)
    "max_ratio": [[0.5, -1.0, 0.25], [1.0, 0.0, 0.0], [0.0, 1.0, 0.25], [-1.25, 2.0, -1.0]],
    # lam r_t; final lam (r_0 - S_3) = .5 ([.5, 4, -1] - [6, -7, 1.5])
    "rt": [[0.5, -1.0, 0.25], [1.5, -2.5, 0.0], [1.0, 0.0, 0.5], [-2.75, 5.5, -1.25]],
}


# the same after a first resampling that gives particles 0, 1, 2 the ancestors 2, 0, 1 (kept in place after):
# their histories are then (.5, 3, 2 | .5), (1, -5, 0 | 4), (-2, 0, 1 | -1), and the product of the potentials
# in the final factor runs over each particle's ancestors
ANCESTORS = [2, 0, 1]
LOG_G_AFTER_PERMUTING = {
    "difference": [[1.25, -3.0, 1.0], [-0.5, 2.5, 0.5], [-0.75, 2.0, -1.0]],
    # M = [.5, 1, 0], [3, 1, 0], [3, 1, 1]; R = [3, 4, 1]; final .5 ([3, 4, 1] - [6.5, 3, 1])
    "max": [[1.5, 0.5, 0.0], [1.5, 0.5, 0.5], [-1.75, 0.5, 0.0]],
    # S = [.5, 1, -2], [3.5, -4, -2], [5.5, -4, -1]; R = [6, 0, -2]; final .5 ([6, 0, -2] - [9.5, -7, -5])
    "sum": [[1.75, -2.0, -1.0], [2.75, -2.0, -0.5], [-1.75, 3.5, 1.5]],
    # M = [.5, 1, -2], [3, 1, 0], [3, 1, 1]; final .5 ([.5, 4, -1] - [3, 1, 1])
    "max_ratio": [[1.25, 0.0, 1.0], [0.0, 0.0, 0.5], [-1.25, 1.5, -1.0]],
    # final .5 ([.5, 4, -1] - [5.5, -4, -1])
    "rt": [[1.5, -2.5, 0.0], [1.0, 0.0, 0.5], [-2.5, 4.0, 0.0]],
}


class _History:
    """An objective that returns the next row of HISTORY + [FINAL], whatever x."""

    def __init__(self):
        self.rows = [torch.tensor(r) for r in HISTORY + [FINAL]]

    def __call__(self, x):
        return self.rows.pop(0)


def _weights_seen(monkeypatch, potential, ess_threshold, first=None, **params):
    """The normalised weights [K] smc hands to systematic resampling at each call (resampling, then the final
    draw), on the hand-built history (one chain). Resampling gives the ancestors `first` the first time, then
    keeps every particle in place (identity indices, the default also the first time)."""
    seen = []

    def spy(w, u, n):
        seen.append(w[:, 0].tolist())
        if n == 1:
            return torch.zeros(1, 1, dtype=torch.long)
        return torch.tensor(first if first is not None and len(seen) == 1 else list(range(n)))[:, None]

    monkeypatch.setattr(smc_module, "systematic", spy)
    task = SubspaceTask(dim=8, d=4)
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(SubspaceOracle(task.A, sched), Costs()), sched, steps=len(HISTORY) + 1)
    noise = PerSampleNoise.for_chains(("smc-history",), 1, (task.dim,))
    method = make_method("smc", LAM, particles=3, potential=potential, ess_threshold=ess_threshold, **params)
    sample(sampler, method, noise.draw(), noise, Guide(_History()))
    return seen


def _softmax(log_w):
    m = max(log_w)
    e = [math.exp(v - m) for v in log_w]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("potential", list(LOG_G))
def test_weights_of_each_potential_on_a_hand_built_history(monkeypatch, potential):
    """Resampling at every potential step (ess_threshold = 1, FK's fixed interval): the weights at each step
    are that step's G_t alone (reset by the resampling before), and the final draw's weights are the final
    factor exp(lam R) / prod_t G_t."""
    seen = _weights_seen(monkeypatch, potential, 1.0)
    assert len(seen) == len(HISTORY) + 1
    for got, log_g in zip(seen, LOG_G[potential]):
        assert got == pytest.approx(_softmax(log_g), abs=1e-12), (potential, got, log_g)


@pytest.mark.parametrize("potential", list(LOG_G))
def test_histories_and_products_follow_the_ancestors(monkeypatch, potential):
    """After resampling a particle carries its ancestor's reward history and product of potentials."""
    seen = _weights_seen(monkeypatch, potential, 1.0, first=ANCESTORS)
    assert seen[0] == pytest.approx(_softmax(LOG_G[potential][0]), abs=1e-12)
    assert len(seen) == len(HISTORY) + 1
    for got, log_g in zip(seen[1:], LOG_G_AFTER_PERMUTING[potential]):
        assert got == pytest.approx(_softmax(log_g), abs=1e-12), (potential, got, log_g)


@pytest.mark.parametrize("potential, params, R", [
    ("difference", {}, FINAL),
    ("max_ratio", {}, FINAL),
    ("rt", {}, FINAL),
    ("max", {}, [3.0, 4.0, 1.0]),                      # max(0, r_1, r_2, r_3, r_0)
    ("max", {"reward_min": 3.5}, [3.5, 4.0, 3.5]),     # the floor: every reward below 3.5 counts as 3.5
    ("sum", {}, [6.5, -3.0, 0.5]),                     # r_1 + r_2 + r_3 + r_0
])
def test_without_resampling_the_weights_are_the_target_tilt(monkeypatch, potential, params, R):
    """No resampling (ESS never below 0.01 K): the factors multiply to exp(lam R), so importance sampling
    weighs by the target's tilt: r(x_0) for difference, max_ratio, rt; the max or sum of the reward history
    for FK's max and sum."""
    seen = _weights_seen(monkeypatch, potential, 0.01, **params)
    assert len(seen) == 1
    assert seen[0] == pytest.approx(_softmax([LAM * r for r in R]), abs=1e-12)


def test_reward_min_is_refused_where_it_does_nothing():
    with pytest.raises(ValueError, match="reward_min .* used by the potential 'max' only, not 'sum'"):
        make_method("smc", 1.0, potential="sum", reward_min=1.0)
    make_method("smc", 1.0, potential="max", reward_min=-3.0)


def test_with_resampling_every_potential_steers_its_own_way():
    task = SubspaceTask(dim=8, d=4)
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=20)
    objective = task.objective("quadratic_on")

    def run(potential):
        noise = PerSampleNoise.for_chains(("smc-potentials",), 16, (task.dim,))
        method = make_method("smc", 2.0, particles=8, potential=potential, ess_threshold=1.0)   # resample always
        return sample(sampler, method, noise.draw(), noise, Guide(objective))

    outs = {p: run(p) for p in LOG_G}
    assert all(torch.isfinite(x).all() for x in outs.values())
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.equal(outs[a], outs[b]), (a, b)


# ---- resampling ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    """A small instance of the subspace task for the many-particle runs (the closed forms depend on
    theta^T x alone; the per-sample noise of D = 64 would dominate the run time)."""
    return SubspaceTask(dim=8, d=4)


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
    of the reward history: test_without_resampling_the_weights_are_the_target_tilt), so they
    pick other particles."""
    sampler, objective = _sampler(small), small.objective("quadratic_on")
    outs = [_draw(small, sampler, make_method("smc", 1.0, particles=8, potential=p, ess_threshold=0.01),
                  objective, 16) for p in ("difference", "max_ratio", "rt", "max", "sum")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert not torch.equal(outs[0], outs[3]) and not torch.equal(outs[0], outs[4])


# ---- one particle is the proposal ---------------------------------------------------------------------------

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


# ---- the importance weight of a guided proposal -------------------------------------------------------------

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


def test_smc_counts_its_potential_evaluations(subspace):
    """Potentials at every resample_every-th step but the last, plus the final correction: with S = 20 and
    resample_every = 3, D = floor(19 / 3) = 6 potential steps, K (D + 1) evaluations per output sample."""
    costs = Costs()
    sampler = _sampler(subspace, costs=costs)
    objective = CountingObjective(subspace.objective("quadratic_on"), costs)
    _draw(subspace, sampler, make_method("smc", 1.0, particles=5, resample_every=3), objective, 2)
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == \
        (2 * 5 * 20, 0, 2 * 5 * 7, 0)


# ---- the tilted target with the oracle ----------------------------------------------------------------------

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


# ---- distance to the tilted target ----------------------------------------------------------------------

def tilted_chi2_per_dof(potential: str, K: int, B: int, lam: float = 0.5, steps: int = 20, bins: int = 20,
                        seed="smc-chi2") -> float:
    """chi2 / dof of s = theta^T x over B output samples against the exact tilted target of the oracle
    subspace task (the tilted target of the module docstring): s ~ N(m_lam, v_lam), 1 / v_lam = 1 / v_0 +
    2 lam, m_lam = 6 lam v_lam, v_0 from the DDIM(eta = 1) recursion; `bins` bins equiprobable under the
    target, dof = bins - 1. About 1 for samples of the target; 256 particles, B = 4000: about a minute each."""
    task = SubspaceTask(dim=8, d=4)
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(SubspaceOracle(task.A, sched), Costs()), sched, steps=steps, eta=1.0)
    objective = task.objective("quadratic_on")
    theta = objective.theta.double()
    t2 = float(theta @ theta)
    v0 = t2
    for st in sampler.steps:
        c = math.sqrt(st.ab_prev * st.ab_t) + math.sqrt(max(1 - st.ab_prev - st.sigma ** 2, 0.0) * (1 - st.ab_t))
        v0 = c * c * v0 + st.sigma ** 2 * t2
    v_lam = 1 / (1 / v0 + 2 * lam)
    m_lam = 6 * lam * v_lam
    noise = PerSampleNoise.for_chains((seed,), B, (task.dim,))
    x = sample(sampler, make_method("smc", lam, particles=K, potential=potential), noise.draw(), noise,
               Guide(objective))
    s = x.double() @ theta
    q = torch.arange(1, bins, dtype=torch.float64) / bins
    edges = m_lam + math.sqrt(2 * v_lam) * torch.special.erfinv(2 * q - 1)
    observed = torch.bincount(torch.searchsorted(edges, s), minlength=bins).double()
    expected = B / bins
    return float(((observed - expected) ** 2 / expected).sum()) / (bins - 1)


@pytest.mark.slow
@pytest.mark.parametrize("potential, on_target", [("difference", True), ("max_ratio", True),
                                                  ("max", False), ("sum", False)])
def test_distance_to_the_tilted_target_at_256_particles(potential, on_target):
    """difference and max_ratio reach p exp(lam r) at K = 256 (chi2/dof 1.6, 1.8: within sampling error,
    P(chi2_19 / 19 > 2.5) = 3e-4); FK's max and sum target another law (module docstring of smc.py) and stay
    far from it (97, 3153). rt targets p exp(lam r) too but converges slowly (404 at K = 256): not asserted."""
    chi2 = tilted_chi2_per_dof(potential, 256, 4000)
    assert (chi2 < 2.5) if on_target else (chi2 > 10.0), chi2
