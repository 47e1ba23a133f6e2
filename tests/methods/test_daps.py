"""benchmark/methods/daps.py: DAPS's costs, step-size schedule and sigma_min rule, its limits on the linear-Gaussian
problem (subspace task, `gaussian_inverse`, oracle denoiser, exact posterior N(mu, Sigma)), and runs on the digits
inverse problems and on a tiny diffusers model; the counted costs, refused hyper-parameters and runs check
RED-diff beside it (its own tests: tests/methods/test_reddiff.py, which uses `problem` and `run` from here).

DAPS on gaussian_inverse is a linear-Gaussian chain: with the oracle, x0h = sqrt(ab_t) P x_t (P = A A^T), each
Langevin step x <- G x + lr (x0h / r^2 + s H^T y / sigma_y^2) + sqrt(2 lr) z with G = I - lr Lam, Lam = I / r^2
+ s H^T H / sigma_y^2, and x_{t'} = sqrt(ab_{t'}) x0 + sqrt(1 - ab_{t'}) z. So its output law is Gaussian and
`daps_law` propagates it exactly in float64 (K Langevin steps in closed form by the eigenvectors of Lam;
K = None: exact inner sampling, x0 | x_t ~ N(Lam^{-1} (x0h / r^2 + s H^T y / sigma_y^2), Lam^{-1})).

What is exact: with the exact conditional p(x0 | x_t) = N(sqrt(ab_t) P x_t, (1 - ab_t) P) in place of
N(x0h, r^2 I) and exact inner sampling, each step is a p(x0 | y)-invariant kernel (x0 ~ p(x0 | y), x_t | x0,
x0' ~ p(x0 | x_t, y) gives x0' ~ p(x0 | y)) and the first step forgets x_T (ab_T = 6e-8): the chain's law is
the posterior (test_exact_conditional_chain_is_the_posterior, to 1e-6). DAPS's isotropic N(x0h, r^2 I) puts
variance r^2 off span(A), where the data have none, and the likelihood couples those directions to span(A): its
limit (exact inner sampling) is not the posterior, but approaches it as the grid refines (w2 0.94, 0.51, 0.22
at 20, 50, 200 of 200 cosine steps, r_rule "sigma"), and K Langevin steps at lr = 1e-2 approach that limit.
"""

import math

import pytest
import torch

from benchmark.diffusion import (
    Costs,
    CountingDenoiser,
    CountingObjective,
    PerSampleNoise,
    Sampler,
    derive_seed,
    make_schedule,
    sample,
)
from benchmark.methods import Guide, make_method
from benchmark.methods.base import declared_costs
from benchmark.methods.daps import log_likelihood_fn
from benchmark.objectives.gaussian_inverse import gaussian_w2, mean_and_cov
from tests.images_fixture import save_tiny_model, write_digit_folder

T = 200


@pytest.fixture(scope="module")
def problem(subspace):
    return subspace, make_schedule("cosine", T), subspace.objective("gaussian_inverse")


def run(problem, name, steps, n, seed="dr", **params):
    """(x_0 [n, 64], counted costs, sampler) of method `name` on gaussian_inverse with the oracle."""
    task, sched, objective = problem
    costs = Costs()
    sampler = Sampler(CountingDenoiser(task.oracle(sched), costs), sched, steps=steps)
    noise = PerSampleNoise([derive_seed(seed, i) for i in range(n)], (64,))
    method = make_method(name, **params)
    x = sample(sampler, method, noise.draw(), noise, Guide(CountingObjective(objective, costs)))
    return x, costs, sampler


def daps_law(problem, steps, method=None, conditional="gaussian", s=1.0):
    """(mean [D], cov [D, D]) of DAPS's output on gaussian_inverse with the oracle (module docstring), float64.
    method None: exact inner sampling with r_rule "sigma"; conditional "exact": the exact p(x0 | x_t, y)."""
    task, sched, obj = problem
    A = obj.A64
    P, D, d = A @ A.T, A.shape[0], A.shape[1]
    I = torch.eye(D, dtype=torch.float64)
    H, s2y = obj.H.double(), obj.sigma_y ** 2
    HtH, Hty = s * H.T @ H / s2y, s * H.T @ obj.y.double() / s2y
    inner = method if method is not None else make_method("daps")
    m, C = torch.zeros(D, dtype=torch.float64), I.clone()
    for st in Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=steps).steps:
        M = math.sqrt(st.ab_t) * P                                           # the oracle's Tweedie
        if conditional == "exact":                                           # u | x_t, y with x0 = A u
            Su = torch.linalg.inv(torch.eye(d, dtype=torch.float64) / (1 - st.ab_t) + A.T @ HtH @ A)
            F, f, Q = A @ Su @ A.T * math.sqrt(st.ab_t) / (1 - st.ab_t), A @ Su @ A.T @ Hty, A @ Su @ A.T
        else:
            r2 = inner.r2(st)
            lam, V = torch.linalg.eigh(I / r2 + HtH)
            S = (V / lam) @ V.T                                              # Lam^{-1}
            F_inf, f_inf = S @ M / r2, S @ Hty                               # the Langevin target's mean map
            if method is None:
                F, f, Q = F_inf, f_inf, S
            else:
                lr, K = inner.step_size(st), inner.mcmc_steps
                g = 1 - lr * lam
                GK = (V * g ** K) @ V.T
                # x_K - target mean = G^K (x_0 - target mean) + noise, x_0 = x0h
                F, f = F_inf + GK @ (M - F_inf), f_inf - GK @ f_inf
                Q = (V * (2 * lr * (1 - g ** (2 * K)) / (1 - g ** 2))) @ V.T
        m = math.sqrt(st.ab_prev) * (F @ m + f)
        C = st.ab_prev * (F @ C @ F.T + Q) + (1 - st.ab_prev) * I
        C = (C + C.T) / 2
    return m, C


def to_posterior(problem, m, C):
    """(w2, mean error, var ratio) of N(m, C) against the exact posterior."""
    obj = problem[2]
    return (float(gaussian_w2(m, C, obj.posterior_mean, obj.posterior_cov)),
            float(torch.linalg.vector_norm(m - obj.posterior_mean)), float(C.trace() / obj.posterior_cov.trace()))


# --- costs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [("daps", {"mcmc_steps": 4}), ("daps", {"mcmc_steps": 2, "ode_steps": 3}),
                                          ("reddiff", {}), ("reddiff", {"init": "noise"})])
def test_counted_costs_on_gaussian_inverse_equal_the_formula(problem, name, params):
    """On the inverse objective the likelihood is log_likelihood (counted like the reward) and RED-diff's A^+ y
    reads y once: counted = declared."""
    n, steps = 3, 7
    _, costs, sampler = run(problem, name, steps, n, strength=1.0, **params)
    got = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert got == tuple(n * c for c in declared_costs(make_method(name, **params), len(sampler.steps)))


def test_bad_hyperparameters_are_refused():
    for name, params in [("daps", {"mcmc_steps": 0}), ("daps", {"ode_steps": 0}), ("daps", {"lr": 0.0}),
                         ("daps", {"lr_min_ratio": 0.0}), ("daps", {"sigma_min": -0.1}), ("reddiff", {"lam": -1.0}),
                         ("reddiff", {"lr": 0.0})]:
        with pytest.raises(ValueError, match=next(iter(params))):
            make_method(name, **params)


def test_daps_step_size_schedule():
    """lr_t = lr (1 + (i / S) (lr_min_ratio - 1)) (their get_lr), capped at r_t^2; r_t^2 by r_rule."""
    from benchmark.diffusion.sampler import Step

    m = make_method("daps", lr=0.1, lr_min_ratio=0.01)
    st = Step(5, 20, 150, 140, 0.25, 0.3, 1.0)
    assert m.r2(st) == pytest.approx(3.0)                                     # (1 - ab) / ab
    assert make_method("daps", r_rule="posterior").r2(st) == pytest.approx(0.75)
    assert m.step_size(st) == pytest.approx(0.1 * (1 + 0.25 * (0.01 - 1)))
    late = Step(19, 20, 2, 0, 0.999, 1.0, 1.0)
    assert m.step_size(late) == pytest.approx(0.001 / 0.999)                  # capped at r_t^2


def test_daps_sigma_min_rule_by_hand(problem):
    """sigma_min (their annealing floor, cores/scheduler.py + sampler.py): grid steps with sigma_t = sqrt((1 - ab_t)
    / ab_t) <= sigma_min are not taken (x_t returned, no cost), and the last annealing step returns its MCMC x0
    un-noised. Cosine T = 200, 50 steps: sigma at t = 12, 8 is 0.106, 0.074, so 48 steps anneal at sigma_min = 0.1."""
    from benchmark.diffusion.sampler import Step

    task, sched, obj = problem
    ab = sched.ab.tolist()
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=50)
    ts = [st.t for st in sampler.steps]
    m = make_method("daps", sigma_min=0.1, mcmc_steps=3)
    taken = [t for t in ts if math.sqrt((1 - ab[t]) / ab[t]) > 0.1]
    assert taken == ts[:48] and [m.anneals(ab[t]) for t in ts] == [True] * 48 + [False] * 2
    assert m.costs_per_sample(50, ts, sched) == (48, 0, 144, 144)
    assert make_method("daps", mcmc_steps=3).costs_per_sample(50, ts, sched) == (50, 0, 150, 150)  # sigma_min 0
    with pytest.raises(ValueError, match="depends on the grid"):
        declared_costs(m, 50, ts)
    last, n = sampler.steps[47], 3

    def streams():
        return PerSampleNoise([derive_seed("smin", i) for i in range(n)], (64,))
    x_t = streams().draw() * 0.1
    guide = Guide(CountingObjective(obj, Costs()))
    x0 = m.step(x_t, last, sampler, guide, streams())                     # the last annealing step: x0
    renoised = make_method("daps", mcmc_steps=3).step(x_t, last, sampler, guide, streams())
    z = streams()
    for _ in range(3):
        z.draw()
    z = z.draw()                                                          # the forward-diffusion draw after 3 MCMC
    assert torch.allclose(renoised, math.sqrt(last.ab_prev) * x0 + math.sqrt(1 - last.ab_prev) * z, atol=1e-6)
    assert torch.equal(m.step(x0, sampler.steps[48], sampler, guide, streams()), x0)     # not taken
    costs = Costs()
    run_sampler = Sampler(CountingDenoiser(task.oracle(sched), costs), sched, steps=50)
    noise = streams()
    sample(run_sampler, m, noise.draw(), noise, Guide(CountingObjective(obj, costs)))
    assert (costs.denoiser_forwards, costs.objective_grads) == (n * 48, n * 144)


@pytest.mark.slow
def test_daps_likelihood_is_found_behind_the_counting_wrapper(digits_models):
    """guide.objective is a CountingObjective: L must still be log_likelihood (not the reward -||y - A x||, whose
    gradient has norm 1; the digits default run scored -3.88 against -4.16 unguided with it), counted once."""
    from benchmark.tasks import make_task

    obj = make_task("digits", models_dir=digits_models).objective("inpaint", {"sigma_y": 0.05})
    costs = Costs()
    L = log_likelihood_fn(CountingObjective(obj, costs))
    x = torch.zeros(2, 1, 8, 8)
    assert torch.allclose(L(x), obj.log_likelihood(x)) and not torch.allclose(obj(x), obj.log_likelihood(x))
    assert costs.objective_evals == 2


# --- DAPS's limit on gaussian_inverse ----------------------------------------------------------------

def test_exact_conditional_chain_is_the_posterior(problem):
    """The decoupled chain with the exact p(x0 | x_t, y) draws the posterior (module docstring): to 1e-6."""
    for steps in (10, 50):
        w2, err, ratio = to_posterior(problem, *daps_law(problem, steps, conditional="exact"))
        assert w2 < 1e-5 and err < 1e-5 and abs(ratio - 1) < 1e-5


def test_daps_limit_approaches_the_posterior_as_the_grid_refines(problem):
    """Exact inner sampling, r_t = sigma_t: w2 to the posterior falls with the annealing steps (measured 0.936,
    0.510, 0.217 at 20, 50, 200), too wide (var_ratio 1.31, 1.15, 1.06) from the isotropic r_t^2 I; "posterior"
    r_t^2 = 1 - ab_t gives nearly the same (0.886, 0.499, 0.219): the off-span variance, not r_t on span(A),
    is the error."""
    figures = [to_posterior(problem, *daps_law(problem, s)) for s in (20, 50, 200)]
    w2 = [f[0] for f in figures]
    assert w2[0] > w2[1] > w2[2] and w2[2] < 0.25 and w2[0] < 1.0
    assert all(f[2] > 1 for f in figures)                                     # too wide, never over-confident
    post = to_posterior(problem, *daps_law(problem, 200, make_method("daps", r_rule="posterior", mcmc_steps=10 ** 6,
                                                                     lr=1e-2)))
    assert post[0] < 0.25


def test_langevin_approaches_the_exact_inner_limit(problem):
    """K Langevin steps at lr = 1e-2 approach exact inner sampling as K grows (20 steps of the grid):
    w2 to the posterior 1.16 (K = 10), 0.910 (K = 100), limit 0.936; and lr = 1e-3 mixes too slowly here
    (1.27 at K = 100)."""
    limit = daps_law(problem, 20)
    gaps = []
    for K in (10, 100, 1000):
        m, C = daps_law(problem, 20, make_method("daps", mcmc_steps=K, lr=1e-2))
        gaps.append(float(gaussian_w2(m, C, *limit)))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1
    slow = daps_law(problem, 20, make_method("daps", mcmc_steps=100, lr=1e-3))
    assert to_posterior(problem, *slow)[0] > 1.2


def _check_samples_follow(x, m, C):
    """n ||mean - m||^2 in the metric C^{-1} (over the k directions where C is not 0) is chi^2_k for samples of
    N(m, C): below k + 5 sqrt(2 k) (mean k, sd sqrt(2 k)); and tr S / tr C within 5 sd of 1."""
    n = x.shape[0]
    mean, S = mean_and_cov(x)
    lam, V = torch.linalg.eigh(C)
    keep = lam > 1e-8 * lam.max()
    z = (V[:, keep].T @ (mean - m)) / (lam[keep] / n).sqrt()
    k = int(keep.sum())
    assert float(z.square().sum()) < k + 5 * math.sqrt(2 * k), (float(z.square().sum()), k)
    sd = math.sqrt(2 * float((C @ C).trace()) / (n - 1)) / float(C.trace())
    assert abs(float(S.trace() / C.trace()) - 1) < 5 * sd


def test_daps_samples_follow_their_exact_law(problem):
    """The method's samples (n = 1000, 20 steps, K = 10, lr = 1e-2) have the mean and spread of its exact law."""
    method = {"mcmc_steps": 10, "lr": 1e-2}
    x, _, _ = run(problem, "daps", 20, 1000, strength=1.0, **method)
    _check_samples_follow(x, *daps_law(problem, 20, make_method("daps", **method)))


def test_daps_strength_tempers_the_likelihood(problem):
    """strength s tempers the likelihood: at s = 0.5 the samples follow the law with s H^T H and s H^T y."""
    method = {"mcmc_steps": 10, "lr": 1e-2}
    x, _, _ = run(problem, "daps", 10, 1000, strength=0.5, **method)
    _check_samples_follow(x, *daps_law(problem, 10, make_method("daps", **method), s=0.5))


@pytest.mark.slow
def test_daps_at_200_steps_approaches_the_posterior(problem):
    """All 200 annealing steps, K = 25 at lr = 2e-2: its exact law is 0.278 from the posterior in w2 (K = 100 at
    lr = 1e-2: 0.239; exact inner sampling 0.217, against 0.936 at 20 steps), and n = 400 samples follow it and
    score w2 within the finite-n floor (0.34 at n = 400) of it."""
    method = {"mcmc_steps": 25, "lr": 2e-2}
    m, C = daps_law(problem, 200, make_method("daps", **method))
    w2_law = to_posterior(problem, m, C)[0]
    assert w2_law < 0.3
    x, _, _ = run(problem, "daps", 200, 400, strength=1.0, **method)
    _check_samples_follow(x, m, C)
    cal = problem[2].calibration(x)
    assert cal["w2"] < w2_law + cal["w2_exact_n"]


# --- runs on the digits inverse problems and on a tiny diffusers model -----------------------------------

def _residual(objective, x):
    return float(objective.residual_norm(x).mean())


@pytest.mark.slow
@pytest.mark.parametrize("objective_name", ["inpaint", "superres"])
def test_daps_and_reddiff_fit_the_digits_measurements(digits_models, objective_name):
    """On the tiny digits networks, both methods' samples fit the measurement y better than unguided samples."""
    from benchmark.denoisers import load_checkpoint
    from benchmark.tasks import make_task
    from benchmark.tasks.digits import MODEL_FILES

    task = make_task("digits", models_dir=digits_models)
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    objective = task.objective(objective_name, {"sigma_y": 0.05})
    n, out = 4, {}
    for name, params in [("none", {}), ("daps", {"mcmc_steps": 20}), ("reddiff", {})]:
        costs = Costs()
        sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=10)
        noise = PerSampleNoise([derive_seed("digits-dr", i) for i in range(n)], (1, 8, 8))
        method = make_method(name, strength=0.0 if name == "none" else 1.0, **params)
        x = sample(sampler, method, noise.draw(), noise, Guide(CountingObjective(objective, costs)))
        assert x.shape == (n, 1, 8, 8) and torch.isfinite(x).all(), name
        out[name] = _residual(objective, x)
    assert out["daps"] < out["none"] and out["reddiff"] < out["none"], out


@pytest.mark.slow
def test_daps_and_reddiff_on_a_tiny_diffusers_model(tmp_path):
    """The images task (a folder of 32 px digits) with a tiny randomly initialised diffusers UNet: finite samples
    of the images' shape that fit the inpainting measurement better than unguided samples."""
    pytest.importorskip("diffusers")
    from benchmark.denoisers.hf import load_diffusers
    from benchmark.tasks import make_task

    save_tiny_model(tmp_path / "tiny")
    write_digit_folder(tmp_path / "digits", n=4, channels=1)
    model, schedule, _ = load_diffusers(str(tmp_path / "tiny"))
    task = make_task("images", folder=str(tmp_path / "digits"))
    objective = task.objective("inpaint")
    n, out = 2, {}
    for name, params in [("none", {}), ("daps", {"mcmc_steps": 10}), ("reddiff", {})]:
        costs = Costs()
        sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=5)
        noise = PerSampleNoise([derive_seed("images-dr", i) for i in range(n)], tuple(task.shape))
        method = make_method(name, strength=0.0 if name == "none" else 1.0, **params)
        x = sample(sampler, method, noise.draw(), noise, Guide(CountingObjective(objective, costs)))
        assert x.shape == (n, *task.shape) and torch.isfinite(x).all(), name
        got = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
        assert got == tuple(n * c for c in declared_costs(method, 5)), name
        out[name] = _residual(objective, x)
    assert out["daps"] < out["none"] and out["reddiff"] < out["none"], out
