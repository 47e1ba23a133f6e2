"""The `mixture` task (issue 25): a Gaussian mixture whose score, posteriors and tilted targets are exact.

Checked against independent arithmetic: the oracle's eps against autograd of the mixture's log-density (built
from torch.distributions, not from the task's code); the posterior and tilted mixtures against importance
sampling from the prior and against hand-computed 1-D cases; the exact sliced W2 against quadrature; the
metrics of exact draws against their `_exact_n` floors; a sampler that drops a mode against coverage.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from benchmark.diffusion import make_schedule
from benchmark.tasks import make_task
from benchmark.tasks.mixture.metrics import modes, on_data_radius2
from benchmark.tasks.mixture.mixture import GaussianMixture, Mixture1D

F64 = torch.float64


@pytest.fixture(scope="module")
def task():
    return make_task("mixture")


@pytest.fixture(scope="module")
def objectives(task):
    return {name: task.objective(name) for name in task.objectives}


def _log_density(weights, means, covs, x):
    """log sum_k w_k N(x; mu_k, Sigma_k) by torch.distributions (independent of the task's code)."""
    comps = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    return torch.logsumexp(torch.log(weights) + comps.log_prob(x[:, None, :]), dim=-1)


def _prior_draws(p: GaussianMixture, n: int, seed: int) -> list[torch.Tensor]:
    """n draws of each data component by torch.distributions (not GaussianMixture.sample)."""
    torch.manual_seed(seed)
    return [torch.distributions.MultivariateNormal(p.means[k], covariance_matrix=p.covs[k]).sample((n,))
            for k in range(p.K)]


# ---------------------------------------------------------------------------------------------------
# the data and the exact denoiser

def test_data_is_well_separated_with_unequal_weights(task):
    p = task.mixture
    assert (p.dim, p.K) == (16, 4)
    assert torch.allclose(p.weights, torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64))
    mids = torch.stack([(p.means[i] + p.means[j]) / 2 for i in range(4) for j in range(i + 1, 4)])
    assert (modes(p, mids) == -1).all()                                   # every midpoint is off the data
    x = task.sample_data(4000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (4000, 16)
    labels = modes(p, x.double())
    assert float((labels < 0).double().mean()) < 0.005                  # 1 - 0.999 per component
    shares = torch.bincount(labels[labels >= 0], minlength=4) / 4000.0
    assert torch.allclose(shares.double(), p.weights, atol=0.03)


@pytest.mark.parametrize("t", [1, 20, 100, 199])
def test_oracle_eps_is_autograd_of_the_log_density(task, t):
    """eps(x_t, t) = -sqrt(1 - ab_t) grad log p_t(x_t),
    p_t = sum_k w_k N(sqrt(ab_t) mu_k, ab_t Sigma_k + (1 - ab_t) I)."""
    p = task.mixture
    schedule = make_schedule("cosine", 200)
    ab = float(schedule.ab[t])
    x0 = p.sample(64, torch.Generator().manual_seed(t))[0]
    x_t = (math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(64, 16, dtype=F64,
                                                                generator=torch.Generator().manual_seed(1)))
    x_t = x_t.requires_grad_()
    covs = ab * p.covs + (1 - ab) * torch.eye(16, dtype=F64)
    log_p = _log_density(p.weights, math.sqrt(ab) * p.means, covs, x_t)
    (score,) = torch.autograd.grad(log_p.sum(), x_t)
    expected = -math.sqrt(1 - ab) * score
    oracle = task.oracle(schedule)
    steps = torch.full((64,), t)
    assert torch.allclose(oracle(x_t.detach(), steps), expected, atol=1e-10, rtol=1e-8)
    assert torch.allclose(p.log_prob(x_t.detach(), ab), log_p.detach(), atol=1e-10)
    got32 = oracle(x_t.detach().float(), steps)                           # the sampler's dtype
    assert got32.dtype == torch.float32 and torch.allclose(got32.double(), expected, atol=1e-5, rtol=1e-5)


def test_oracle_takes_one_noise_level_per_sample(task):
    schedule = make_schedule("cosine", 200)
    oracle = task.oracle(schedule)
    x = torch.randn(6, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 5, 50, 100, 150, 200])
    batched = oracle(x, t)
    for i in range(6):
        assert torch.allclose(batched[i], oracle(x[i:i + 1], t[i:i + 1])[0], atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# posterior and tilted mixtures: by hand in 1-D, and against importance sampling

def test_posterior_and_tilt_by_hand_in_one_dimension():
    """p = 0.3 N(-1, 0.5^2) + 0.7 N(2, 1); y = x + 0.5 e with y = 0.5; tilt exp(0.8 x)."""
    p = GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [[[0.25]], [[1.0]]])

    def normal(v, m, var):
        return math.exp(-(v - m) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)

    post = p.condition(torch.tensor([[1.0]]), torch.tensor([0.5]), 0.5)
    a, b = 0.3 * normal(0.5, -1, 0.25 + 0.25), 0.7 * normal(0.5, 2, 1 + 0.25)      # w_k N(y; mu_k, s_k^2 + s_y^2)
    assert post.weights.tolist() == pytest.approx([a / (a + b), b / (a + b)], abs=1e-12)
    # m_k = mu_k + s_k^2 / (s_k^2 + s_y^2) (y - mu_k), S_k = s_k^2 s_y^2 / (s_k^2 + s_y^2)
    assert post.means[:, 0].tolist() == pytest.approx([-1 + 0.5 * 1.5, 2 - 0.8 * 1.5], abs=1e-12)
    assert post.covs[:, 0, 0].tolist() == pytest.approx([0.125, 0.2], abs=1e-12)

    tilted = p.tilt(torch.tensor([0.8], dtype=F64))
    a, b = 0.3 * math.exp(-0.8 + 0.64 * 0.25 / 2), 0.7 * math.exp(1.6 + 0.64 / 2)
    assert tilted.weights.tolist() == pytest.approx([a / (a + b), b / (a + b)], abs=1e-12)
    assert tilted.means[:, 0].tolist() == pytest.approx([-1 + 0.25 * 0.8, 2 + 0.8], abs=1e-12)
    assert tilted.covs[:, 0, 0].tolist() == pytest.approx([0.25, 1.0], abs=1e-12)


def _importance(task, objective, n=40_000, seed=0):
    """Per data component k, draws x ~ N(mu_k, Sigma_k) weighted by exp(r(x)): the target's weights
    (∝ w_k mean exp(r)), component means and per-coordinate variances, and the weights' effective sample sizes."""
    p = task.mixture
    log_z, means, variances, ess = [], [], [], []
    for x in _prior_draws(p, n, seed):
        log_r = objective(x.float()).double()                     # the reward the methods see (float32)
        w = torch.softmax(log_r, 0)
        log_z.append(torch.logsumexp(log_r, 0) - math.log(n))
        means.append(w @ x)
        variances.append(w @ (x - means[-1]) ** 2)
        ess.append(float(1 / (w ** 2).sum()))
    weights = torch.softmax(torch.log(p.weights) + torch.stack(log_z), 0)
    return weights, torch.stack(means), torch.stack(variances), ess


@pytest.mark.parametrize("name, params", [("inverse", {}), ("tilt", {}), ("between", {}),
                                          ("inverse", {"m": 3, "sigma_y": 0.5}), ("tilt", {"lam": 1.0}),
                                          ("between", {"scale": 0.6})])
def test_target_mixture_matches_importance_sampling(task, name, params):
    obj = task.objective(name, params)
    target = obj.target
    weights, means, variances, ess = _importance(task, obj)
    assert min(e for e, w in zip(ess, target.weights) if w > 0.01) > 500
    assert torch.allclose(weights, target.weights, atol=0.02), (weights, target.weights)
    for k in range(task.mixture.K):
        if target.weights[k] > 0.01:                              # components the target keeps
            var = target.covs[k].diagonal()
            err = (means[k] - target.means[k]).abs() / var.sqrt()
            assert float(err.max()) < 5 / math.sqrt(ess[k]), (k, float(err.max()))
            assert float((variances[k] / var - 1).abs().max()) < 5 * math.sqrt(2 / ess[k]), k


def test_inverse_posterior_is_multimodal_for_every_task_seed():
    """H cannot see mu_0 - mu_{K-1}: the posterior keeps the heaviest and the lightest mode, and the
    measurement rules out the others."""
    for seed in range(4):
        w = make_task("mixture", task_seed=seed).objective("inverse").target.weights
        assert float(w[0]) > 0.05 and float(w[-1]) > 0.05, (seed, w)
        assert float(w[1:-1].sum()) < 0.01, (seed, w)


def test_default_targets(objectives):
    assert objectives["inverse"].target.weights.tolist() == pytest.approx([0.771, 0, 0, 0.229], abs=2e-3)
    assert objectives["tilt"].target.weights.tolist() == pytest.approx([0.097, 0.297, 0.199, 0.407], abs=2e-3)
    assert objectives["between"].target.weights.tolist() == pytest.approx([0.565, 0.435, 0, 0], abs=2e-3)
    assert objectives["between"](objectives["between"].b[None]).item() == 0.0      # the maximiser is b
    assert (modes(objectives["between"].data, objectives["between"].b[None].double()) == -1).all()


# ---------------------------------------------------------------------------------------------------
# metrics

def test_sliced_w2_is_exact_against_quadrature():
    """W2^2 between an empirical law on the line and a 1-D mixture equals int_0^1 (Q_n(u) - F^{-1}(u))^2 du,
    here on a midpoint grid of u with F^{-1} by interpolating the mixture's CDF (scipy) on a fine grid of x."""
    import numpy as np
    from scipy.stats import norm

    w, m, s = [0.3, 0.7], [-1.0, 2.0], [0.5, 1.0]
    mix = Mixture1D(torch.tensor(w, dtype=F64), torch.tensor(m, dtype=F64), torch.tensor(s, dtype=F64))
    v = torch.tensor([-1.3, -0.2, 0.9, 1.7, 2.2, 3.5], dtype=F64)
    n = len(v)
    edges = torch.cat([torch.tensor([-math.inf], dtype=F64), mix.quantile(torch.arange(1, n, dtype=F64) / n),
                       torch.tensor([math.inf], dtype=F64)])
    m1 = mix.partial_mean(edges[:-1], edges[1:])
    closed = float((v * v / n - 2 * v * m1).sum() + mix.second_moment())

    xs = np.linspace(-12, 14, 2_000_001)
    F = sum(wi * norm.cdf(xs, mi, si) for wi, mi, si in zip(w, m, s))
    u = (np.arange(200_000) + 0.5) / 200_000
    inverse = np.interp(u, F, xs)
    empirical = v.numpy()[np.minimum((u * n).astype(int), n - 1)]
    assert closed == pytest.approx(float(np.mean((empirical - inverse) ** 2)), rel=1e-3)
    assert float(m1.sum()) == pytest.approx(sum(wi * mi for wi, mi in zip(w, m)), abs=1e-12)
    assert float(mix.second_moment()) == pytest.approx(sum(wi * (mi ** 2 + si ** 2) for wi, mi, si in zip(w, m, s)))
    assert float(mix.cdf(edges[1:-1]).sub(torch.arange(1, n, dtype=F64) / n).abs().max()) < 1e-14


@pytest.mark.parametrize("name", ["inverse", "tilt"])
def test_exact_draws_score_at_the_floors(objectives, name):
    """Batches of n exact target draws (another stream than the reference's): each metric's mean is its
    `_exact_n` value; prior (data) draws score far worse on the inverse problem."""
    obj = objectives[name]
    n, batches = 64, 48
    x = obj.target.sample(n, torch.Generator().manual_seed(123), shape=(batches,))[0]
    scores = obj.metrics.scores(x)
    ref = obj.metrics.reference(n)
    for metric, values in scores.items():
        se = float(values.std()) / math.sqrt(batches)
        assert abs(float(values.mean()) - ref[metric]) < 4 * se + 1e-3, (metric, float(values.mean()), ref[metric])
    one = obj.calibration(x[0])
    assert set(one) == {m + s for m in ("sw2", "weight_error", "coverage", "ci90_coverage") for s in ("", "_exact_n")}
    # coverage of n exact draws, closed form for well-separated modes: sum_k w_k (1 - (1 - w_k)^n)
    w = obj.target.weights
    assert ref["coverage"] == pytest.approx(float((w * (1 - (1 - w) ** n)).sum()), abs=2e-3)
    assert 0.8 < ref["ci90_coverage"] < 0.9                     # a finite batch's interval is a little short


def test_prior_draws_miss_the_posterior(task, objectives):
    obj = objectives["inverse"]
    x = task.sample_data(256, torch.Generator().manual_seed(5)).double()
    got, ref = obj.calibration(x), obj.metrics.reference(256)
    assert got["sw2"] > 3 * ref["sw2"] and got["weight_error"] > 0.3 and got["ci90_coverage"] < 0.8


@pytest.mark.parametrize("name", ["inverse", "tilt"])
def test_a_sampler_that_drops_a_mode_is_caught_by_coverage(objectives, name):
    """Exact draws with the target's smallest kept mode replaced by draws of its heaviest: coverage falls by
    that mode's weight, weight_error rises by it, far beyond the floors."""
    obj = objectives[name]
    target = obj.target
    kept = [k for k in range(target.K) if target.weights[k] > 0.05]
    drop, keep = min(kept, key=lambda k: target.weights[k]), max(kept, key=lambda k: target.weights[k])
    n = 256
    x, labels = target.sample(n, torch.Generator().manual_seed(7))
    heavy = target.sample(4 * n, torch.Generator().manual_seed(8))
    donors = heavy[0][heavy[1] == keep]
    x[labels == drop] = donors[: int((labels == drop).sum())]
    got, ref = obj.calibration(x), obj.metrics.reference(n)
    w_drop = float(target.weights[drop])
    assert ref["coverage"] > 0.99
    assert got["coverage"] == pytest.approx(1 - w_drop, abs=0.01)
    assert got["coverage"] < ref["coverage"] - 0.05
    assert got["weight_error"] == pytest.approx(w_drop, abs=0.04) and got["weight_error"] > 2 * ref["weight_error"]


def test_off_data_counts_samples_between_modes(task, objectives):
    """25 of 100 data draws moved next to b: off_data 0.25 (at most one of the other 75 off the data by
    chance), and weight_error the total variation with the off-data bin, (sum_k |n_k / n - w*_k| + 0.25) / 2."""
    p, obj = task.mixture, objectives["between"]
    x, labels = p.sample(100, torch.Generator().manual_seed(3))
    b = obj.b.double()
    x[:25] = b + 0.05 * torch.randn(25, 16, dtype=F64, generator=torch.Generator().manual_seed(4))
    metrics = task.sample_metrics(x, obj)
    assert metrics["off_data"].shape == (100,)
    assert float(metrics["off_data"][:25].sum()) == 25 and float(metrics["off_data"][25:].sum()) <= 1
    counts = torch.bincount(labels[25:], minlength=4).double()
    expected = 0.5 * (float((counts / 100 - obj.target.weights).abs().sum()) + 0.25)
    assert metrics["weight_error"] == pytest.approx(expected, abs=0.011)
    assert on_data_radius2(16) == pytest.approx(39.252, abs=1e-3)     # chi2_16 quantile at 0.999


def test_metric_directions_are_declared(task):
    from benchmark.report import aggregate as agg

    declared = agg.declared_directions("mixture")
    assert list(declared)[0] == "off_data" and declared["off_data"] == "lower"
    assert declared["coverage"] == "higher" and declared["ci90_coverage"] == 0.9
    assert {declared[m] for m in ("sw2", "sw2_exact_n", "weight_error", "weight_error_exact_n")} == {"lower"}


# ---------------------------------------------------------------------------------------------------
# parameters, errors

def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="K must be an integer"):
        make_task("mixture", K=1)
    with pytest.raises(ValueError, match="radius"):
        make_task("mixture", radius=-1.0)
    with pytest.raises(ValueError, match="no parameter"):
        make_task("mixture", width=3)
    cls = type(make_task("mixture"))
    with pytest.raises(ValueError, match="sigma_y must be a finite number > 0"):
        cls.check_objective("inverse", {"sigma_y": 0})
    with pytest.raises(ValueError, match="lam"):
        cls.check_objective("tilt", {"lam": float("nan")})
    with pytest.raises(ValueError, match=r"allowed: \['scale'\]"):
        cls.check_objective("between", {"b": 1})
    with pytest.raises(ValueError, match=r"m must be an integer in \[1, 15\]"):
        make_task("mixture").objective("inverse", {"m": 16})


def test_objective_parameters_change_the_target(task):
    loose = task.objective("inverse", {"m": 2, "sigma_y": 1.0})
    assert loose.params() == {"m": 2, "sigma_y": 1.0} and loose.H.shape == (2, 16)
    assert task.objective("tilt", {"lam": 1.0}).target.weights[-1] > task.objective("tilt").target.weights[-1]


# ---------------------------------------------------------------------------------------------------
# cells end to end

@pytest.mark.parametrize("method", ["none", "dps"])
def test_cli_run_writes_the_mixture_metrics(tmp_path, method):
    from benchmark.cli import main
    from benchmark.metrics import METRIC_DIRECTIONS
    from benchmark.report import aggregate as agg

    out = tmp_path / "cell.parquet"
    main(["run", "--task", "mixture", "--objective", "inverse", "--method", method,
          "--strength", "0.5" if method == "dps" else "0",
          "--denoiser", "oracle", "--steps", "10", "--rounds", "1", "--samples", "16", "--no-progress",
          "--out", str(out)])
    df = pd.read_parquet(out)
    assert set(df["status"]) == {"ok"}
    last = df[df["round"] == 1].set_index("metric")["value"]
    expected = {"off_data", "sw2", "sw2_exact_n", "weight_error", "weight_error_exact_n", "coverage",
                "coverage_exact_n", "ci90_coverage", "ci90_coverage_exact_n"}
    assert expected <= set(last.index)
    assert set(df["metric"]) - set(METRIC_DIRECTIONS) - set(agg.declared_directions("mixture")) == set()
    per_chain = df[(df["round"] == 1) & (df["metric"] == "off_data")]["per_sample"].iloc[0]
    assert len(per_chain) == 16
    if method == "dps":                                      # guidance toward y: closer to the posterior
        unguided = df[df["round"] == 0].set_index("metric")["value"]
        assert last["reward_mean"] > unguided["reward_mean"] and last["sw2"] < unguided["sw2"]


def test_trained_denoiser_cell(tmp_path, task):
    from benchmark.cell import CellSpec, run_cell
    from benchmark.denoisers import pretrain, save_checkpoint

    model, schedule, report = pretrain(task, T=20, hidden=16, depth=1, n_train=256, n_heldout=64, epochs=1,
                                       batch_size=128)
    assert report["task"] == "mixture" and report["oracle_heldout_loss"] < report["heldout_loss"]
    path = tmp_path / "mixture.safetensors"
    save_checkpoint(path, model, schedule, report)
    rows = run_cell(CellSpec.of(task="mixture", objective="tilt", method="none", denoiser="trained",
                                checkpoint=str(path), rounds=0, samples=8, steps=5), "cpu", progress=False)
    assert {r["status"] for r in rows} == {"ok"} and {"off_data", "sw2"} <= {r["metric"] for r in rows}


def test_unguided_oracle_sampler_draws_the_data(task):
    """All 200 steps of the unguided DDPM sampler with the exact score draw the data: every mode found,
    weighted right (the metrics against p0 itself at their floors), on the data."""
    from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, sample
    from benchmark.methods import make_method
    from benchmark.tasks.mixture.metrics import TargetMetrics, off_data

    schedule = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(schedule), Costs()), schedule)
    n = 512
    x_T = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    x = sample(sampler, make_method("none", 0.0), x_T, PerSampleNoise(list(range(n)), (16,))).double()
    p = task.mixture
    metrics = TargetMetrics(p, p, p.means[0] - p.means[1], seed=0)
    got, ref = metrics(x), metrics.reference(n)
    assert float(off_data(p, x).mean()) < 0.01
    assert got["coverage"] == pytest.approx(1.0)
    assert got["weight_error"] < ref["weight_error"] + 3 * 0.02
    assert got["sw2"] < 1.5 * ref["sw2"]
