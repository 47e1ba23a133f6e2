"""benchmark/denoisers/oracle.py: closed forms of the subspace task with the exact (oracle) score.

Data x_0 = A u, u ~ N(0, I_d), P = A A^T. Under the VP forward process
    x_t ~ N(0, ab_t P + h I),   x0h(x_t) = alpha P x_t,   Cov(x_0 | x_t) = h P   (alpha = sqrt(ab_t), h = 1 - ab_t).
Observation model y = g^T x_0 + N(0, sigma^2). Then y | x_t ~ N(g^T x0h, sigma^2 + h g^T P g) and
    grad_{x_t} log p(y | x_t) = (y - g^T x0h) alpha P g / (sigma^2 + h g^T P g),
which is exactly G_loss with beta_t = (alpha^2/2) / (alpha^2 sigma^2 + h ||alpha P g||^2). So the
G_loss-guided sampler targets the posterior p(x_0 | y) = N(m, C):
    m = P g y / (g^T P g + sigma^2),   C = P - P g g^T P / (g^T P g + sigma^2),
and g^T x_0 | y has mean c y and variance c sigma^2 with c = g^T P g / (g^T P g + sigma^2).
"""

import math

import pytest
import torch

from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.methods import Guide, LinearTarget, make_method
from benchmark.objectives import Linear
from benchmark.optimize import RoundsConfig, run_rounds


def _sampler(task, T=200, eta=1.0, device="cpu", costs=None):
    sched = make_schedule("cosine", T)
    return Sampler(CountingDenoiser(task.oracle(sched).to(device), costs or Costs()), sched, eta=eta)


def test_oracle_eps_is_the_exact_score(subspace):
    """eps = -sqrt(h) grad log N(x; 0, ab P + h I), the gradient taken by autograd of the density."""
    sched = make_schedule("cosine", 200)
    # In float64 with an exactly orthonormal basis of span(A): at t = 1, 1/h ~ 4000 amplifies any
    # rounding of A^T A = I, so the formula is checked at 1e-6 there and float32 separately.
    A64, _ = torch.linalg.qr(subspace.A.double())
    oracle = SubspaceOracle(A64, sched)
    oracle32 = subspace.oracle(sched)
    P = A64 @ A64.T
    x = torch.randn(5, 64, dtype=torch.float64)
    for t in (1, 20, 100, 199):
        ab = float(sched.ab[t])
        dist = torch.distributions.MultivariateNormal(torch.zeros(64, dtype=torch.float64),
                                                      covariance_matrix=ab * P + (1 - ab) * torch.eye(64, dtype=torch.float64))
        xx = x.clone().requires_grad_(True)
        (score,) = torch.autograd.grad(dist.log_prob(xx).sum(), xx)
        e = oracle(x, torch.full((5,), t))
        assert torch.allclose(e, -math.sqrt(1 - ab) * score, rtol=1e-6, atol=1e-6)
        e32 = oracle32(x.float(), torch.full((5,), t)).double()
        assert torch.allclose(e32, e, rtol=1e-3, atol=1e-3)


def test_tweedie_on_oracle_is_projection(subspace):
    sampler = _sampler(subspace)
    x = torch.randn(7, 64)
    for step in sampler.steps[::37]:
        e = sampler.eps(x, step)
        x0h = (x - math.sqrt(step.h) * e) / step.alpha
        # Tweedie divides by alpha (2.5e-4 at t = T for the cosine schedule): float32 error scales with 1/alpha.
        assert torch.allclose(x0h, step.alpha * subspace.project(x), atol=1e-6 / step.alpha)


def test_unguided_oracle_samples_the_data_distribution(subspace, device):
    """With the exact score, unguided DDPM draws N(0, P): covariance of the coordinates A^T x ~ I_d."""
    n = 4000
    sampler = _sampler(subspace, device=device)
    noise = PerSampleNoise.for_chains(("unguided",), n, (64,), device=device)
    x = sample(sampler, make_method("none"), noise.draw(), noise).cpu()
    assert float(subspace.r_off(x).max()) < 1e-4
    u = x @ subspace.A
    cov = torch.cov(u.T)
    # Sampling error of a variance over n draws: sqrt(2/n) ~ 2.2 %; allow 5 standard errors plus
    # the T = 200 discretisation bias.
    assert torch.allclose(torch.diag(cov), torch.ones(16), atol=0.15)
    assert float((cov - torch.diag(torch.diag(cov))).abs().max()) < 0.1


def _guided_projection(task, method_name, g, y, n, T, device, sigma=0.1):
    sampler = _sampler(task, T=T, device=device)
    noise = PerSampleNoise.for_chains(("posterior",), n, (64,), device=device)
    guide = Guide(objective=None, linear=LinearTarget(g.expand(n, -1).to(device), torch.full((n,), y, device=device)))
    x = sample(sampler, make_method(method_name, 0.0, sigma=sigma), noise.draw(), noise, guide).cpu()
    return x


@pytest.mark.parametrize("objective", ["quadratic_off", "quadratic_on"])
def test_gloss_posterior_matches_closed_form(subspace, device, objective):
    """G_loss with the exact score samples p(x_0 | y): g^T x_0 has mean c y and variance c sigma^2."""
    sigma, y, n = 0.1, 1.5, 4000
    g = 2.0 * subspace.objective(objective).theta
    x = _guided_projection(subspace, "gloss", g, y, n, T=1000, device=device, sigma=sigma)
    gPg = float(g @ subspace.project(g[None])[0])
    c = gPg / (gPg + sigma ** 2)
    v = (x @ g).double()
    se_mean = math.sqrt(c * sigma ** 2 / n)
    assert abs(float(v.mean()) - c * y) < 5 * se_mean
    assert float(v.var()) == pytest.approx(c * sigma ** 2, rel=5 * math.sqrt(2 / n))
    # Theorem 1: G_loss stays in span(A).
    assert float(subspace.r_off(x).max()) < 1e-4
    # The posterior mean of x_0 is P g y / (gPg + sigma^2); the posterior covariance in directions of
    # span(A) orthogonal to P g is the prior's (identity in A-coordinates).
    m = subspace.project(g[None])[0] * y / (gPg + sigma ** 2)
    assert float(torch.linalg.vector_norm(x.mean(0) - m)) < 5 * math.sqrt(16 / n)


def test_gloss_guidance_direction_is_in_span(subspace):
    """grad_{x_t}(g^T x0h) = alpha P g for the exact score: no component off span(A)."""
    sampler = _sampler(subspace)
    g = subspace.objective("quadratic_off").theta
    x_t = torch.randn(6, 64)
    for step in sampler.steps[::50]:
        with torch.enable_grad():
            x, _, x0h = sampler.eps_with_graph(x_t, step)
            (grad,) = torch.autograd.grad((x0h @ g).sum(), x)
        expected = step.alpha * subspace.project(g[None]).expand(6, -1)
        assert torch.allclose(grad, expected, atol=1e-6 / step.alpha)


def test_naive_equals_gloss_when_g_is_in_span(subspace, device):
    """For g in span(A), G's beta_t and direction coincide with the exact posterior score."""
    g = 2.0 * subspace.objective("quadratic_on").theta
    xa = _guided_projection(subspace, "naive", g, 1.5, 64, T=200, device=device)
    xb = _guided_projection(subspace, "gloss", g, 1.5, 64, T=200, device=device)
    assert torch.allclose(xa, xb, atol=1e-4)


def test_naive_leaves_span_when_g_is_off(subspace, device):
    g = 2.0 * subspace.objective("quadratic_off").theta
    x = _guided_projection(subspace, "naive", g, 1.5, 256, T=200, device=device)
    assert float(subspace.r_off(x).mean()) > 1e-3  # G_loss stays below 1e-4 (test above)


def test_one_algorithm1_round_on_a_linear_reward(subspace, device):
    """r(x) = theta^T x: every chain gets g = theta, y_i = theta^T z_{0,i} + delta, so
    theta^T z_{1,i} ~ N(c (theta^T z_{0,i} + delta), c sigma^2), c = theta^T P theta / (theta^T P theta + sigma^2)."""
    n, delta, sigma = 4000, 0.5, 0.1
    # Half of theta in span(A), half off it: c = 0.5 / 0.51.
    theta = subspace.objective("quadratic_on").theta / math.sqrt(2)
    perp = torch.randn(64, generator=torch.Generator().manual_seed(3))
    perp = perp - subspace.project(perp[None])[0]
    theta = theta + perp / torch.linalg.vector_norm(perp) / math.sqrt(2)
    objective = Linear("linear", theta).to(device)
    costs = Costs()
    sampler = _sampler(subspace, T=1000, device=device, costs=costs)
    rounds = list(run_rounds(task=subspace, objective=CountingObjective(objective, costs),
                             method=make_method("gloss", delta, sigma=sigma), sampler=sampler, costs=costs,
                             config=RoundsConfig(rounds=1, samples=n), seed=0, denoiser_name="oracle", device=device))
    z0, z1 = rounds[0].z.cpu(), rounds[1].z.cpu()
    tPt = float(theta @ subspace.project(theta[None])[0])
    c = tPt / (tPt + sigma ** 2)
    resid = (z1 @ theta - c * (z0 @ theta + delta)).double()
    assert abs(float(resid.mean())) < 5 * math.sqrt(c * sigma ** 2 / n)
    assert float(resid.var()) == pytest.approx(c * sigma ** 2, rel=5 * math.sqrt(2 / n))
    # The mean reward rises by c * delta - (1 - c) * mean(theta^T z_0) in one round.
    gain = float((z1 @ theta).mean() - (z0 @ theta).mean())
    assert gain == pytest.approx(c * delta - (1 - c) * float((z0 @ theta).mean()), abs=5 * math.sqrt(c * sigma ** 2 / n) + 0.01)
