"""benchmark/tasks/mixture/mixture.py and the `mixture` task (issue 25): a Gaussian mixture whose score, posteriors
and tilted targets are exact.

Checked against independent arithmetic: the oracle's eps against autograd of the mixture's log-density (built
from torch.distributions, not from the task's code); the posterior and tilted mixtures against hand-computed 1-D
cases; the 1-D projections' quantiles and partial means (the exact sliced W2) against quadrature; the task's
parameter errors; cells end to end. The objectives' targets against importance sampling:
tests/tasks/mixture/test_objectives.py; the metrics: tests/tasks/mixture/test_metrics.py.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from benchmark.diffusion import make_schedule
from benchmark.tasks import make_task
from benchmark.tasks.mixture.metrics import modes
from benchmark.tasks.mixture.mixture import GaussianMixture, Mixture1D

F64 = torch.float64


@pytest.fixture(scope="module")
def task():
    return make_task("mixture")


def _log_density(weights, means, covs, x):
    """log sum_k w_k N(x; mu_k, Sigma_k) by torch.distributions (independent of the task's code)."""
    comps = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    return torch.logsumexp(torch.log(weights) + comps.log_prob(x[:, None, :]), dim=-1)


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
# posterior and tilted mixtures: by hand in 1-D

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


# ---------------------------------------------------------------------------------------------------
# the 1-D projections (Mixture1D): the sliced W2 in closed form

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
