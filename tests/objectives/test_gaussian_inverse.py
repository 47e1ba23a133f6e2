"""Calibration where the truth is known: the subspace task's linear-Gaussian inverse problem.

Data x = A u, u ~ N(0, I_d); y = H x* + sigma_y n; r(x) = -||y - H x||^2 / (2 sigma_y^2), so p(x) exp(r)
is the posterior N(mu, Sigma). With the oracle denoiser every step of the unguided sampler and of
DPS with normalise="none" (x_{t-1} = DDIM(x_t) + zeta grad_{x_t} r(x0h), x0h = alpha P x_t) is an
affine map plus Gaussian noise, so the sampler's output law N(m, C) is known exactly too
(`_chain_output`): the samples' calibration metrics are checked against it.

Two references: the data posterior (prior N(0, A A^T)) and the posterior under the unguided sampler's own
output law N(0, c A A^T) (c = 0.914 at 50 of 200 steps, eta = 1), the target of a method exact for its
sampler; the `*_sampler` metrics score against the latter.
"""

import copy
import math

import pytest
import torch

from benchmark.cell import CellSpec, run_cell
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule,
                                 sample)
from benchmark.methods import Guide, make_method
from benchmark.objectives.gaussian_inverse import gaussian_w2, mean_and_cov, oracle_sampler_variances

CALIBRATION = ("w2", "mean_error", "var_ratio", "w2_exact_n", "mean_error_exact_n")
SAMPLER_CALIBRATION = ("w2_sampler", "mean_error_sampler", "var_ratio_sampler", "w2_sampler_exact_n",
                       "mean_error_sampler_exact_n")


@pytest.fixture(scope="module")
def problem(subspace):
    return subspace.objective("gaussian_inverse")


def _conditioning_in_x(obj):
    """Posterior of x by Gaussian conditioning of the joint (x, y) in R^D (no u-space, no inverse of
    the posterior precision): mu = S0 H^T K^{-1} y, Sigma = S0 - S0 H^T K^{-1} H S0, K = H S0 H^T + s^2 I."""
    A, H, y = obj.A64, obj.H.double(), obj.y.double()
    S0 = A @ A.T
    K = H @ S0 @ H.T + obj.sigma_y ** 2 * torch.eye(H.shape[0], dtype=torch.float64)
    gain = S0 @ H.T @ torch.linalg.inv(K)
    return gain @ y, S0 - gain @ H @ S0


@pytest.mark.parametrize("params", [{}, {"m": 1, "sigma_y": 1.0}, {"m": 24, "sigma_y": 0.1}])
def test_posterior_matches_gaussian_conditioning(subspace, params):
    obj = subspace.objective("gaussian_inverse", params)
    mu, Sigma = _conditioning_in_x(obj)
    assert torch.allclose(obj.posterior_mean, mu, atol=1e-10)
    assert torch.allclose(obj.posterior_cov, Sigma, atol=1e-10)
    # tighter than the prior along the measured directions only: Sigma <= S0 and rank d
    assert float(torch.linalg.eigvalsh(obj.prior_cov - obj.posterior_cov).min()) > -1e-10
    assert int(torch.linalg.matrix_rank(obj.posterior_cov, hermitian=True)) == subspace.d


def test_reward_is_the_log_likelihood(problem):
    """log N(u; u_mean, u_cov) - log N(u; 0, I) - r(A u) is the same for every u: p exp(r) is the posterior."""
    u = torch.randn(50, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    post = torch.distributions.MultivariateNormal(problem.u_mean, covariance_matrix=problem.u_cov)
    prior = torch.distributions.MultivariateNormal(torch.zeros(16, dtype=torch.float64),
                                                   covariance_matrix=torch.eye(16, dtype=torch.float64))
    x = (u @ problem.A64.T).float()
    diff = post.log_prob(u) - prior.log_prob(u) - problem(x).double()
    assert float(diff.max() - diff.min()) < 1e-3  # float32 reward


def test_posterior_mean_by_importance_sampling(problem):
    """E[x | y] = E_prior[x w] / E_prior[w], w = exp(r(x)), over 2e5 prior draws in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200_000, 16, dtype=torch.float64, generator=g) @ problem.A64.T
    log_w = -((problem.y.double() - x @ problem.H.double().T) ** 2).sum(-1) / (2 * problem.sigma_y ** 2)
    w = torch.softmax(log_w, 0)
    ess = 1 / float((w ** 2).sum())
    est = w @ x
    # Standard error of a self-normalised estimate: sqrt(diag Sigma / ESS); allow 5 of them.
    se = (problem.posterior_cov.diagonal() / ess).sqrt()
    assert ess > 1000
    assert bool(((est - problem.posterior_mean).abs() < 5 * se + 1e-6).all())


def test_parameters_and_optimum(subspace):
    obj = subspace.objective("gaussian_inverse", {"m": 4, "sigma_y": 0.5})
    assert obj.params() == {"m": 4, "sigma_y": 0.5} and obj.H.shape == (4, 64)
    assert subspace.objective("gaussian_inverse").params() == {"m": 8, "sigma_y": 0.25}
    # H and n for fewer measurements are the first rows of those for more: y is nested
    assert torch.equal(subspace.objective("gaussian_inverse", {"m": 20}).y[:4],
                       subspace.objective("gaussian_inverse", {"m": 4, "sigma_y": 0.25}).y)
    # r <= 0, = 0 where H x = y; on span(A) also 0 while m <= d, the least-squares residual beyond
    x_hat = torch.linalg.pinv(obj.H.double()) @ obj.y.double()
    assert abs(float(obj(x_hat.float()[None]))) < 1e-4 and obj.optimum == 0.0
    assert abs(obj.optimum_on_support) < 1e-12
    assert subspace.objective("gaussian_inverse", {"m": 24}).optimum_on_support < -1.0
    for bad, message in (({"m": 0}, "m must be"), ({"m": 2.5}, "m must be"), ({"sigma_y": 0}, "sigma_y must be"),
                         ({"noise": 1}, "no parameter")):
        with pytest.raises(ValueError, match=message):
            subspace.objective("gaussian_inverse", bad)


def test_gaussian_w2_closed_forms():
    D = 5
    m1, m2 = torch.zeros(D), torch.full((D,), 0.5)
    I = torch.eye(D, dtype=torch.float64)
    # isotropic: W2^2 = ||m1 - m2||^2 + D (s1 - s2)^2
    assert math.isclose(float(gaussian_w2(m1, 4 * I, m2, 0.25 * I)), math.sqrt(D * 0.25 + D * 1.5 ** 2), rel_tol=1e-12)
    # a point mass against N(m, S): W2^2 = ||dm||^2 + tr S; rank-deficient S2 against itself: 0
    S = torch.diag(torch.tensor([1.0, 2.0, 0.0, 3.0, 0.0], dtype=torch.float64))
    assert math.isclose(float(gaussian_w2(m1, 0 * I, m2, S)), math.sqrt(D * 0.25 + 6.0), rel_tol=1e-12)
    assert float(gaussian_w2(m2, S, m2, S)) < 1e-7
    # non-commuting full-rank pair: symmetric, and against scipy's sqrtm when present
    g = torch.Generator().manual_seed(2)
    X, Y = torch.randn(D, D, generator=g, dtype=torch.float64), torch.randn(D, D, generator=g, dtype=torch.float64)
    S1, S2 = X @ X.T + 0.1 * I, Y @ Y.T + 0.1 * I
    w = float(gaussian_w2(m1, S1, m2, S2))
    assert math.isclose(w, float(gaussian_w2(m2, S2, m1, S1)), rel_tol=1e-9)
    linalg = pytest.importorskip("scipy.linalg")
    r2 = linalg.sqrtm(S2.numpy())
    cross = linalg.sqrtm(r2 @ S1.numpy() @ r2).real.trace()
    assert math.isclose(w ** 2, float(((m1 - m2) ** 2).sum() + S1.trace() + S2.trace() - 2 * cross), rel_tol=1e-8)


def test_metrics_detect_calibration_and_its_failures(problem):
    g = torch.Generator().manual_seed(3)
    n = 10_000
    exact = problem.calibration(problem.sample_posterior(n, g).float())
    tr = float(problem.posterior_cov.trace())
    sd_ratio = math.sqrt(2 * float((problem.posterior_cov ** 2).sum()) / (n - 1)) / tr  # sd of var_ratio
    assert abs(exact["var_ratio"] - 1) < 4 * sd_ratio
    assert exact["w2"] < 1.5 * exact["w2_exact_n"] and exact["w2_exact_n"] < 0.1
    assert exact["mean_error"] < 3 * math.sqrt(tr / n)

    prior = problem.calibration(torch.randn(n, 16, generator=g, dtype=torch.float64).float() @ problem.A64.T.float())
    assert problem.prior_var_ratio() > 1.4  # the default posterior is much tighter than the prior
    assert abs(prior["var_ratio"] - problem.prior_var_ratio()) < 4 * sd_ratio * problem.prior_var_ratio()
    assert prior["w2"] > 1.0 > 10 * prior["w2_exact_n"]

    point = problem.calibration(problem.posterior_mean.float().expand(n, -1))  # a pure optimiser's collapse
    assert point["var_ratio"] == 0.0 and point["mean_error"] < 1e-5
    assert math.isclose(point["w2"], math.sqrt(tr), rel_tol=1e-5)  # W2^2 = tr Sigma

    x = problem.sample_posterior(n, g)  # over-confident: every draw half-way to the mean
    half = problem.calibration((problem.posterior_mean + 0.5 * (x - problem.posterior_mean)).float())
    assert abs(half["var_ratio"] - 0.25) < 0.02 and half["w2"] > 5 * half["w2_exact_n"]


def test_reference_is_the_floor_of_exact_batches(problem):
    """The Monte-Carlo floor at n = 32 (drawn in u-space) against 128 batches of 32 exact draws in R^D."""
    ref = problem.reference(32)
    assert ref is problem.reference(32)
    tr = float(problem.posterior_cov.trace())
    assert 0.8 * tr / 32 < ref["mean_error"] ** 2 < tr / 32  # Jensen: E|e| < sqrt(E|e|^2)
    x = problem.sample_posterior(32, torch.Generator().manual_seed(4), (128,)).float()
    w2 = gaussian_w2(*mean_and_cov(x), problem.posterior_mean, problem.posterior_cov)  # in R^D
    assert math.isclose(float(w2[0]), problem.calibration(x[0])["w2"], rel_tol=1e-12)
    assert abs(float(w2.mean()) - ref["w2"]) < 4 * float(w2.std()) / math.sqrt(128) + 4 * float(w2.std()) / 16
    assert problem.reference(256)["w2"] < 0.5 * ref["w2"]


def _chain_output(sampler, obj, zeta: float = 0.0):
    """Exact law N(m, C) (float64) of the oracle sampler's output, unguided (zeta = 0) or DPS with
    normalise="none": x_{t-1} = M_t x_t + c_t + s_t z with
        x0h = alpha P x_t,  e = (I - ab_t P) x_t / sqrt(1 - ab_t),
        M_t = sqrt(ab_prev) alpha P + k_t (I - ab_t P) / sqrt(1 - ab_t) - zeta alpha^2 P H^T H P / sigma_y^2,
        c_t = zeta alpha P H^T y / sigma_y^2,   k_t = sqrt(1 - ab_prev - s_t^2),
    from x_T ~ N(0, I)."""
    A, H, y, s2 = obj.A64, obj.H.double(), obj.y.double(), obj.sigma_y ** 2
    D = A.shape[0]
    I, P = torch.eye(D, dtype=torch.float64), A @ A.T
    m, C = torch.zeros(D, dtype=torch.float64), I.clone()
    for st in sampler.steps:
        k = math.sqrt(max(1 - st.ab_prev - st.sigma ** 2, 0.0))
        M = (math.sqrt(st.ab_prev) * st.alpha * P + k * (I - st.ab_t * P) / math.sqrt(1 - st.ab_t)
             - zeta * st.alpha ** 2 * P @ H.T @ H @ P / s2)
        m = M @ m + zeta * st.alpha * P @ H.T @ y / s2
        C = M @ C @ M.T + st.sigma ** 2 * I
    return m, C


def _draw(task, obj, method, n, steps, device="cpu", **params):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched).to(device), Costs()), sched, steps=steps)
    noise = PerSampleNoise.for_chains(("calibration", method, n), n, (64,), device=device)
    guide = Guide(CountingObjective(copy.deepcopy(obj).to(device), Costs()), None)
    return sample(sampler, make_method(method, **params), noise.draw(), noise, guide), sampler


def test_unguided_samples_are_prior_samples(subspace, problem, device):
    """E[var_ratio] = tr(A A^T) / tr Sigma for prior draws; the T-step ancestral chain is within 3 % of
    it (its own law, computed exactly, is what the samples match); with 50 of the 200 steps the
    chain is under-dispersed (tr C = 14.5 of 16), a bias of the sampler, not of the metric."""
    n = 2000
    x, sampler = _draw(subspace, problem, "none", n, steps=None, device=device)
    m, C = _chain_output(sampler, problem)
    chain_ratio = float(C.trace() / problem.posterior_cov.trace())
    assert abs(chain_ratio / problem.prior_var_ratio() - 1) < 0.03
    cal = problem.calibration(x)
    sd = math.sqrt(2 * float((C ** 2).sum()) / (n - 1)) / float(problem.posterior_cov.trace())
    assert cal["var_ratio"] > 1.4 and abs(cal["var_ratio"] - chain_ratio) < 4 * sd
    _, coarse = _draw(subspace, problem, "none", 1, steps=50)
    assert float(_chain_output(coarse, problem)[1].trace()) < 0.95 * float(C.trace())


@pytest.mark.parametrize("zeta", [0.01, 0.1])
def test_dps_samples_match_the_exact_law_of_the_guided_chain(subspace, problem, zeta, device):
    """DPS (normalise="none") on the oracle, 50 steps: the batch's mean and covariance are those of the
    chain's exact output law N(m, C); calibration against the posterior then follows from (m, C)."""
    n = 2000
    x, sampler = _draw(subspace, problem, "dps", n, steps=50, device=device, strength=zeta, normalise="none")
    m, C = _chain_output(sampler, problem, zeta)
    mean, cov = mean_and_cov(x.cpu())
    floor = problem.reference(n)["w2"]  # the same n-sample noise, around (m, C) instead of (mu, Sigma)
    assert float(gaussian_w2(mean, cov, m, C)) < 1.5 * floor
    cal = problem.calibration(x)
    tr = float(problem.posterior_cov.trace())
    sd = math.sqrt(2 * float((C ** 2).sum()) / (n - 1)) / tr
    assert abs(cal["var_ratio"] - float(C.trace()) / tr) < 4 * sd
    exact_w2 = float(gaussian_w2(m, C, problem.posterior_mean, problem.posterior_cov))  # n -> infinity
    assert abs(cal["w2"] - exact_w2) < 2 * floor


def test_cells_report_calibration(device):
    """Whole cells (oracle, 50 steps, 32 samples, seed 0): every calibration metric is recorded and finite;
    guidance moves the batch towards the posterior (lower w2 and mean_error than unguided)."""
    out = {}
    for method, strength, params in (("none", 0.0, {}), ("dps", 0.01, {"normalise": "none"})):
        rows = run_cell(CellSpec.of(task="subspace", objective="gaussian_inverse", method=method, strength=strength,
                                 rounds=1, samples=32, steps=50, params=params), device, progress=False)
        assert {r["status"] for r in rows} == {"ok"}
        out[method] = {r["metric"]: r["value"] for r in rows if r["round"] == 1}
        assert all(math.isfinite(out[method][k]) for k in (*CALIBRATION, "r_off", "reward_mean"))
    assert out["none"]["w2_exact_n"] == out["dps"]["w2_exact_n"]
    assert out["none"]["var_ratio"] > 1.2
    assert out["dps"]["w2"] < out["none"]["w2"] and out["dps"]["mean_error"] < out["none"]["mean_error"]


# ---------------------------------------------------------------------------------------------
# the sampler's own unguided law, and the posterior under it

def _oracle_sampler(task, steps, eta, device="cpu"):
    sched = make_schedule("cosine", 200)
    return Sampler(CountingDenoiser(task.oracle(sched).to(device), Costs()), sched, steps=steps, eta=eta)


class _Noise:
    """One generator for the whole batch: enough for the unguided chain, and fast for many chains."""

    def __init__(self, n, seed, device):
        self.n, self.device = n, device
        self.g = torch.Generator(device=device).manual_seed(seed)

    def draw(self):
        return torch.randn(self.n, 64, generator=self.g, device=self.device)


@pytest.mark.parametrize("steps,eta,expected,n", [(50, 1.0, 0.914, 5000), (20, 0.0, None, 5000),
                                                  (200, 1.0, 0.976, 0)])
def test_oracle_sampler_law_is_closed_form(subspace, problem, steps, eta, expected, n, device):
    """The unguided oracle chain's output law is N(0, c A A^T): c from the scalar recursion equals the
    matrix propagation of the covariance (`_chain_output`) and the empirical covariance S of n chains
    (c_hat's 4 sd: 2.3 % at n = 5000, against c = 0.914 at 50 steps, 0.976 at all 200, 1 for the data).
    Sampling error of S (unbiased, Gaussian): Var(S_ij) = (C_ij^2 + C_ii C_jj) / (n - 1), so
    E||S - C||_F^2 = (||C||_F^2 + (tr C)^2) / (n - 1) = c^2 (d + d^2) / (n - 1), and c_hat = tr S / d has
    sd c sqrt(2 / (d (n - 1)))."""
    sampler = _oracle_sampler(subspace, steps, eta, device)
    v_par, v_perp = oracle_sampler_variances(sampler.steps)
    assert v_perp == 0.0
    if expected is not None:
        assert abs(v_par - expected) < 1e-3
    _, C = _chain_output(sampler, problem)
    P = problem.prior_cov
    assert torch.allclose(C, v_par * P, atol=1e-6)   # P = A A^T from the float32 A: a projector to ~1e-7
    if not n:
        return
    d = subspace.d
    noise = _Noise(n, 11, device)
    x = sample(sampler, make_method("none"), noise.draw(), noise).cpu().double()
    S = mean_and_cov(x)[1]
    assert float(torch.linalg.matrix_norm(S - v_par * P)) < 3 * v_par * math.sqrt((d + d * d) / (n - 1))
    c_hat = float(S.trace()) / d
    assert abs(c_hat - v_par) < 4 * v_par * math.sqrt(2 / (d * (n - 1)))


@pytest.fixture(scope="module")
def bound(subspace):
    """The default problem bound to the calibration preset's sampler (oracle, 50 of 200 steps, eta = 1)."""
    obj = copy.deepcopy(subspace.objective("gaussian_inverse"))
    obj.bind_sampler(_oracle_sampler(subspace, 50, 1.0))
    return obj


def test_sampler_posterior_is_gaussian_conditioning_under_the_samplers_law(bound):
    """Posterior under the prior N(0, c A A^T), by conditioning the joint (x, y) in R^D (no u-space):
    mu_c = S H^T K^{-1} y, Sigma_c = S - S H^T K^{-1} H S, K = H S H^T + s^2 I, S = c A A^T. Against the
    data posterior it reads as over-confident: var_ratio 0.925, W2 0.133 as n -> infinity."""
    c = bound.sampler_scale
    assert abs(c - 0.9142) < 1e-4
    A, H, y = bound.A64, bound.H.double(), bound.y.double()
    S = c * A @ A.T
    K = H @ S @ H.T + bound.sigma_y ** 2 * torch.eye(H.shape[0], dtype=torch.float64)
    gain = S @ H.T @ torch.linalg.inv(K)
    assert torch.allclose(bound.sampler_posterior_mean, gain @ y, atol=1e-10)
    assert torch.allclose(bound.sampler_posterior_cov, S - gain @ H @ S, atol=1e-10)
    ratio = float(bound.sampler_posterior_cov.trace() / bound.posterior_cov.trace())
    w2 = float(gaussian_w2(bound.sampler_posterior_mean, bound.sampler_posterior_cov, bound.posterior_mean,
                           bound.posterior_cov))
    assert abs(ratio - 0.925) < 1e-3 and abs(w2 - 0.133) < 1e-3


def test_exact_sampler_posterior_draws_score_at_the_floor(bound):
    """Exact draws of the sampler posterior: calibrated by the *_sampler metrics (var_ratio_sampler ~ 1, w2
    at its floor), over-confident by the data posterior's (var_ratio ~ tr Sigma_c / tr Sigma = 0.925)."""
    n = 10_000
    x = bound.sample_sampler_posterior(n, torch.Generator().manual_seed(12))
    cal = bound.calibration(x.float())
    Sc, Sigma = bound.sampler_posterior_cov, bound.posterior_cov
    tr_c, tr = float(Sc.trace()), float(Sigma.trace())
    sd = math.sqrt(2 * float((Sc ** 2).sum()) / (n - 1))   # sd of tr S for n draws of N(., Sc)
    assert abs(cal["var_ratio_sampler"] - 1) < 4 * sd / tr_c
    assert cal["w2_sampler"] < 1.5 * cal["w2_sampler_exact_n"] and cal["w2_sampler_exact_n"] < 0.1
    assert cal["mean_error_sampler"] < 3 * math.sqrt(tr_c / n)
    assert abs(cal["var_ratio"] - tr_c / tr) < 4 * sd / tr and cal["var_ratio"] < 0.95
    assert cal["w2"] > 1.5 * cal["w2_exact_n"]         # the data posterior's metric sees the sampler's gap (0.133)
    data = bound.calibration(bound.sample_posterior(n, torch.Generator().manual_seed(13)).float())
    assert data["var_ratio_sampler"] > 1.05 and data["w2_sampler"] > 1.5 * data["w2_sampler_exact_n"]


def test_sampler_reference_is_the_floor_of_exact_sampler_posterior_batches(bound):
    """The floor of w2_sampler at n = 32 against 256 batches of 32 exact sampler-posterior draws in R^D."""
    ref = bound.sampler_reference(32)
    assert ref is bound.sampler_reference(32) and ref["var_ratio"] == 1.0
    tr_c = float(bound.sampler_posterior_cov.trace())
    assert 0.8 * tr_c / 32 < ref["mean_error"] ** 2 < tr_c / 32
    x = bound.sample_sampler_posterior(256 * 32, torch.Generator().manual_seed(14)).reshape(256, 32, -1)
    w2 = gaussian_w2(*mean_and_cov(x), bound.sampler_posterior_mean, bound.sampler_posterior_cov)   # in R^D
    assert abs(float(w2.mean()) - ref["w2"]) < 4 * float(w2.std()) / 16 + 4 * float(w2.std()) / 16


def test_no_sampler_law_without_the_oracle(subspace, problem):
    """A denoiser that is not this data's exact one (a network, or the oracle of another basis), or x0h clipped
    to a range, has no known unguided law: nothing is bound and only the data posterior's metrics are reported."""
    sched = make_schedule("cosine", 200)
    obj = copy.deepcopy(problem)
    obj.bind_sampler(_oracle_sampler(subspace, 50, 1.0))
    assert obj.sampler_scale is not None
    net = torch.nn.Linear(64, 64)
    obj.bind_sampler(Sampler(CountingDenoiser(lambda x, t: net(x), Costs()), sched, steps=50))
    assert obj.sampler_scale is None
    x = problem.sample_posterior(64, torch.Generator().manual_seed(15)).float()
    assert set(obj.calibration(x)) == set(CALIBRATION)
    other = torch.linalg.qr(torch.randn(64, 16, generator=torch.Generator().manual_seed(16)))[0]
    from benchmark.denoisers.oracle import SubspaceOracle

    obj.bind_sampler(Sampler(CountingDenoiser(SubspaceOracle(other, sched), Costs()), sched, steps=50))
    assert obj.sampler_scale is None
    clipped = _oracle_sampler(subspace, 50, 1.0)
    clipped.clip_x0 = (-1.0, 1.0)
    obj.bind_sampler(clipped)
    assert obj.sampler_scale is None
    with pytest.raises(ValueError, match="no sampler bound"):
        obj.sampler_reference(32)


def test_cells_report_both_posteriors(device):
    """A whole oracle cell (50 of 200 steps) records the sampler posterior's metrics beside the data
    posterior's; for the same batch var_ratio / var_ratio_sampler = tr Sigma_c / tr Sigma exactly."""
    from benchmark.tasks import make_task

    rows = run_cell(CellSpec.of(task="subspace", objective="gaussian_inverse", method="none", rounds=1, samples=64,
                                steps=50), device, progress=False)
    out = {r["metric"]: r["value"] for r in rows if r["round"] == 1}
    assert all(math.isfinite(out[k]) for k in (*CALIBRATION, *SAMPLER_CALIBRATION))
    obj = copy.deepcopy(make_task("subspace").objective("gaussian_inverse"))
    obj.bind_sampler(_oracle_sampler(make_task("subspace"), 50, 1.0))
    tr_ratio = float(obj.sampler_posterior_cov.trace() / obj.posterior_cov.trace())
    assert math.isclose(out["var_ratio"] / out["var_ratio_sampler"], tr_ratio, rel_tol=1e-9)
    assert out["w2_sampler_exact_n"] == obj.sampler_reference(64)["w2"]
