"""benchmark/methods/pigdm.py: PiGDM, and beside it DDNM(+) and DiffPIR (ddnm.py, diffpir.py; their one-step rules
by hand: tests/methods/test_ddnm.py, tests/methods/test_diffpir.py): counted costs, the exact law of the three
methods' linear updates on the linear-Gaussian problem with the oracle, their limits against the exact
posterior, and runs on digits inpaint / superres and on a tiny diffusers model (inpaint, superres, deblur).

The law. On `gaussian_inverse` (data N(0, P), P = A A^T, A [D, d] orthonormal columns; y = H x* + sigma_y n)
the oracle's x0h = sqrt(ab_t) P x_t and e = (I - ab_t P) x_t / sqrt(1 - ab_t) are linear in x_t, and each
method's step is then x_{t-1} = F x_t + c + G z, z ~ N(0, I): the samples' law is N(m, S), propagated from
N(0, I) in float64 by m <- F m + c, S <- F S F^T + G G^T with F, c, G written here from the papers' equations
(not from the methods' code): `step_matrices`. The samples' mean and covariance are tested against it (the
method does what its equations say), and the law itself against the exact posterior (what the equations reach).
"""

import math

import pytest
import torch

from benchmark.denoisers import load_checkpoint
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed,
                                 make_schedule, sample)
from benchmark.methods import Guide, make_method
from benchmark.methods.diffpir import SIGMA_FLOOR
from benchmark.methods.pigdm import PiGDM
from benchmark.objectives.gaussian_inverse import GaussianInverse, gaussian_w2, mean_and_cov
from benchmark.tasks import make_task
from benchmark.tasks.digits import MODEL_FILES
from benchmark.tasks.images import ImagesTask
from tests.images_fixture import write_digit_folder

METHODS = ("pigdm", "ddnm", "diffpir")
SCHEDULE, T = "cosine", 200


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


# --- the exact law of the linear updates -------------------------------------------------------------

def step_matrices(name: str, params: dict, strength: float, st, H, y, P, sigma_y):
    """(F [D, D], c [D], G [D, D]) of one step x_{t-1} = F x_t + c + G z of method `name` with the oracle, float64."""
    D = P.shape[0]
    eye = torch.eye(D, dtype=torch.float64)
    ab, abp, s = st.ab_t, st.ab_prev, st.sigma
    a, c2 = math.sqrt(abp), 1.0 - abp
    k = math.sqrt(max(c2 - s * s, 0.0))
    Mx = math.sqrt(ab) * P                                        # x0h = Mx x_t
    E = (eye - ab * P) / math.sqrt(1 - ab)                        # e = E x_t
    w = strength
    if name == "pigdm":
        # v = r^2 H^T (r^2 H H^T + s_y^2 I)^{-1} (y - H x0h), r^2 = 1 - ab; g = Mx^T v; x' = DDIM + w sqrt(ab) g
        r2 = 1 - ab
        K = r2 * H.T @ torch.linalg.inv(r2 * H @ H.T + sigma_y ** 2 * torch.eye(H.shape[0], dtype=torch.float64))
        # coefficient "awd" (the authors' code): sqrt(ab_{t-1}) sqrt(ab) instead of sqrt(ab)
        w = w * math.sqrt(ab) * (a if params.get("coefficient") == "awd" else 1.0)
        F = a * Mx + k * E - w * Mx.T @ K @ H @ Mx
        return F, w * Mx.T @ K @ y, s * eye
    if name == "ddnm":
        # x0 = x0h - w lam H^+ (H x0h - y); x' = a x0 + (I - R)(k e + s z) + gamma R z, R = H^+ H (eqs. 17-19)
        Hp = torch.linalg.pinv(H)
        R = Hp @ H
        nu = a * sigma_y                                          # the measurement noise carried into x_{t-1}
        lam, gamma = (1.0, math.sqrt(c2 - nu * nu)) if c2 >= nu * nu else (k / nu, s)
        F = a * (eye - w * lam * R) @ Mx + k * (eye - R) @ E
        return F, a * w * lam * Hp @ y, s * (eye - R) + gamma * R
    if name == "diffpir":
        # x0 = x0h + w H^T (H H^T + rho I)^{-1} (y - H x0h); eps_hat = (x_t - sqrt(ab) x0) / sqrt(1 - ab);
        # x' = a x0 + sqrt(1 - zeta) k eps_hat + sqrt((1 - zeta) s^2 + zeta c2) z
        zeta, lam = params.get("zeta", 0.1), params.get("lam", 0.25)
        rho = lam * max(sigma_y, SIGMA_FLOOR) ** 2 * ab / (1 - ab)
        Q = H.T @ torch.linalg.inv(H @ H.T + rho * torch.eye(H.shape[0], dtype=torch.float64))
        X = (eye - w * Q @ H) @ Mx
        b = math.sqrt(1 - zeta) * k / math.sqrt(1 - ab)
        F = a * X + b * (eye - math.sqrt(ab) * X)
        return F, (a - b * math.sqrt(ab)) * w * Q @ y, math.sqrt((1 - zeta) * s * s + zeta * c2) * eye
    raise ValueError(name)


def exact_law(name, params, strength, sampler, objective):
    """(m [D], S [D, D]) of the method's x_0 from x_T ~ N(0, I), float64."""
    H, y = objective.H.double(), objective.y.double()
    P = objective.A64 @ objective.A64.T
    D = P.shape[0]
    m, S = torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64)
    for st in sampler.steps:
        F, c, G = step_matrices(name, params, strength, st, H, y, P, objective.sigma_y)
        m, S = F @ m + c, F @ S @ F.T + G @ G.T
    return m, (S + S.T) / 2


def law_w2(m, S, objective, against="data"):
    """W2 between N(m, S) and the exact posterior (the data's, or the sampler's own after bind_sampler)."""
    if against == "data":
        return float(gaussian_w2(m, S, objective.posterior_mean, objective.posterior_cov))
    return float(gaussian_w2(m, S, objective.sampler_posterior_mean, objective.sampler_posterior_cov))


def aligned_objective(subspace, sigma_y: float, m: int = 8, seed: int = 5) -> GaussianInverse:
    """gaussian_inverse with H = G A^T (G [m, d] i.i.d. N(0, 1/d)): rows in span(A), the data's support."""
    base = subspace.objective("gaussian_inverse")
    g = torch.Generator().manual_seed(seed)
    d = base.A64.shape[1]
    H = (torch.randn(m, d, generator=g, dtype=torch.float64) / math.sqrt(d)) @ base.A64.T
    u_star, noise = torch.randn(d, generator=g), torch.randn(m, generator=g)
    return GaussianInverse("aligned_inverse", base.A64.float(), H.float(), u_star, noise, sigma_y)


def _setup(subspace, steps, sigma_y=0.25, eta=1.0, costs=None, aligned=False):
    costs = costs if costs is not None else Costs()
    sched = make_schedule(SCHEDULE, T)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), costs), sched, steps=steps, eta=eta)
    objective = (aligned_objective(subspace, sigma_y) if aligned
                 else subspace.objective("gaussian_inverse", {"sigma_y": sigma_y}))
    objective.bind_sampler(sampler)
    return sampler, objective, CountingObjective(objective, costs), costs


def _draw(method, sampler, counted, n, tag="lps", shape=(64,)):
    noise = PerSampleNoise([derive_seed(tag, i) for i in range(n)], shape)
    return sample(sampler, method, noise.draw(), noise, Guide(counted))


# --- costs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, per_step", [("pigdm", (1, 1, 1, 0)), ("ddnm", (1, 0, 1, 0)),
                                            ("diffpir", (1, 0, 1, 0))])
def test_counted_cost_is_the_declared_one(subspace, name, per_step):
    """Counted = declared = the table's (the noise-free branches: test_noise_free_branches_on_digits_inpaint)."""
    n, steps = 3, 7
    sampler, _, counted, costs = _setup(subspace, steps)
    method = make_method(name, 1.0)
    before = costs.snapshot()
    _draw(method, sampler, counted, n)
    spent = costs - before
    got = (spent.denoiser_forwards, spent.denoiser_vjps, spent.objective_evals, spent.objective_grads)
    assert got == tuple(n * steps * c for c in per_step) == tuple(n * c for c in method.costs_per_sample(steps))


# --- the law of the samples, and its limits -----------------------------------------------------------

@pytest.mark.parametrize("name, params, strength", [("pigdm", {}, 1.0), ("ddnm", {}, 1.0), ("diffpir", {}, 1.0),
                                                    ("diffpir", {"zeta": 0.5, "lam": 4.0}, 0.7), ("pigdm", {}, 0.4),
                                                    ("ddnm", {}, 0.5), ("pigdm", {"coefficient": "awd"}, 1.0)],
                         ids=str)
@pytest.mark.parametrize("sigma_y", [0.25, 0.02])
def test_each_step_is_the_papers_update(subspace, name, params, strength, sigma_y):
    """Every step of a 10-step grid maps x_t to F x_t + c + G z (step_matrices, float64), z the step's draw of
    the chain's noise stream: each coefficient of each step, not only the end law."""
    sampler, objective, counted, _ = _setup(subspace, 10, sigma_y)
    method = make_method(name, strength, **params)
    H, y = objective.H.double(), objective.y.double()
    P = objective.A64 @ objective.A64.T
    g = torch.Generator().manual_seed(2)
    for st in sampler.steps:
        x_t = torch.randn(4, 64, generator=g) * 1.5
        seeds = [derive_seed("one-step", st.index, i) for i in range(4)]
        out = method.step(x_t, st, sampler, Guide(counted), PerSampleNoise(seeds, (64,)))
        z = PerSampleNoise(seeds, (64,)).draw().double()
        F, c, G = step_matrices(name, params, strength, st, H, y, P, sigma_y)
        expected = x_t.double() @ F.T + c + z @ G.T
        assert torch.allclose(out.double(), expected, atol=2e-4, rtol=1e-4), (st.index, (out - expected).abs().max())


def _reference_w2(m, S, n, reps=24, seed=0):
    """E[W2(N(x_bar, S_n), N(m, S))] of n exact draws of N(m, S) (the floor of a batch's w2), float64."""
    g = torch.Generator().manual_seed(seed)
    evals, evecs = torch.linalg.eigh(S)
    root = evecs * evals.clamp_min(0).sqrt()
    x = m + torch.randn(reps, n, m.shape[0], generator=g, dtype=torch.float64) @ root.T
    mean, cov = mean_and_cov(x)
    return float(gaussian_w2(mean, cov, m, S).mean())


LAW_CASES = [("pigdm", {}, 1.0), ("ddnm", {}, 1.0), ("diffpir", {}, 1.0), ("diffpir", {"zeta": 0.0, "lam": 4.0}, 0.7),
             ("pigdm", {}, 0.4), ("ddnm", {}, 0.5), ("pigdm", {"coefficient": "awd"}, 1.0)]


@pytest.mark.parametrize("name, params, strength", LAW_CASES, ids=lambda v: str(v))
def test_samples_follow_the_exact_law_of_the_updates(subspace, name, params, strength):
    """1000 chains of 20 steps: the samples' w2 to the propagated law N(m, S) is within 1.3x the floor of
    1000 exact draws of that law (a wrong coefficient anywhere in a step moves it far outside: see the
    planted bugs), and the mean within 4 standard errors."""
    n = 1000
    sampler, objective, counted, _ = _setup(subspace, 20)
    x = _draw(make_method(name, strength, **params), sampler, counted, n).double()
    m, S = exact_law(name, params, strength, sampler, objective)
    mean, cov = mean_and_cov(x)
    w2 = float(gaussian_w2(mean, cov, m, S))
    floor = _reference_w2(m, S, n)
    assert w2 <= 1.3 * floor, (w2, floor)
    assert float(torch.linalg.vector_norm(mean - m)) <= 4 * math.sqrt(float(S.trace()) / n)


def test_the_authors_coefficient_is_alg1_times_sqrt_ab_prev_and_others_are_refused(subspace):
    """coefficient "awd" (NVlabs/RED-diff's default) = Alg. 1's step with the guidance term times sqrt(ab_{t-1}),
    step by step on the same x_t and noise; an unknown coefficient names the allowed ones."""
    sampler, objective, counted, _ = _setup(subspace, 10, 0.02)
    g = torch.Generator().manual_seed(4)
    alg1, awd, none = make_method("pigdm", 1.0), make_method("pigdm", 1.0, coefficient="awd"), make_method("none")
    apart = 0.0
    for st in sampler.steps:
        x_t = torch.randn(3, 64, generator=g)
        seeds = [derive_seed("awd", st.index, i) for i in range(3)]
        o_alg1, o_awd, o_none = (m.step(x_t, st, sampler, Guide(counted), PerSampleNoise(seeds, (64,)))
                                 for m in (alg1, awd, none))
        want = o_none + math.sqrt(st.ab_prev) * (o_alg1 - o_none)
        assert torch.allclose(o_awd, want, atol=1e-5, rtol=0), st.index
        apart = max(apart, float((o_awd - o_alg1).abs().max()))
    assert apart > 0.01                      # the two are different steps (at high noise both terms are tiny)
    with pytest.raises(ValueError, match="unknown coefficient 'code'; allowed: 'alg1', 'awd'"):
        make_method("pigdm", 1.0, coefficient="code")


def test_strength_zero_is_the_unguided_chain(subspace):
    """PiGDM at strength 0, and DiffPIR at strength 0 with zeta = 0, are DDIM: the samples of `none` from the same
    noise (DDNM with sigma_y = 0: test_noise_free_branches_on_digits_inpaint)."""
    sampler, objective, counted, _ = _setup(subspace, 10)
    ref = _draw(make_method("none"), sampler, counted, 4)
    pigdm = make_method("pigdm", 0.0)
    assert isinstance(pigdm, PiGDM) and pigdm.needs_operator
    assert torch.equal(_draw(pigdm, sampler, counted, 4), ref)
    assert torch.allclose(_draw(make_method("diffpir", 0.0, zeta=0.0), sampler, counted, 4), ref, atol=1e-5)


# The limits, on the propagated law (no sampling): w2 to the posterior under the sampler's own unguided law
# (`bind_sampler`: what an exact method reaches on this grid), relative to the prior's w2 to it, for growing
# accuracy knobs, on `aligned_objective` (H's rows in span(A)). There each method's approximation is exact in its
# limit: PiGDM's Cov[x0 | x_t] = r_t^2 I is exact along H's rows (H P H^T = H H^T), so only its discretisation
# errs and it converges as sigma_y -> 0; DDNM's projection H^+ H stays in span(A), fixes the measured directions
# to H^+ y and leaves the rest to the unguided chain, the noise-free posterior; DiffPIR's proximal step is the
# Gaussian conditioning of x0h on y with prior variance sigmabar_t^2 / lam, and converges with the steps.
# Measured (w2_sampler, float64 law; prior's w2 2.7-3.4):
#   pigdm   sigma_y 0.25 / 0.05 / 0.01 at 200 steps: 0.657 / 0.121 / 0.024 (var_ratio_sampler 0.913 / 0.996 / 1.000)
#   ddnm    sigma_y 0.25 / 0.05 / 0.01 at 200 steps: 0.796 / 0.143 / 0.015 (var_ratio_sampler 0.907 / 0.996 / 1.000)
#   diffpir 20 / 50 / 200 steps at 0.25, then 200 at 0.01: 0.197 / 0.124 / 0.070 / 0.042 (var_ratio 0.939 ... 0.972)
# PiGDM at sigma_y = 0.25 does not converge with the steps (0.35 at 10 steps, 0.66 at 200): its guidance is a
# fixed step per grid step, not a drift scaled by the step length, so more steps add more guidance.
# On the default gaussian_inverse (H's rows random in R^64, mostly off span(A)) DDNM and DiffPIR are not exact in
# any limit: their data step moves x0 along H's rows, mostly off span(A), and the oracle's next x0h = sqrt(ab) P x_t
# projects that away again, so the measured directions within span(A) (H P) are never fit to y (w2_sampler 1.17 and
# 1.01 at sigma_y = 0.01, 200 steps; the prior's 3.61). PiGDM's step J^T v = sqrt(ab_t) P v acts within span(A):
# 0.078 there.
LIMITS = {  # name: (params, knob sequence [(steps, sigma_y)], bound on the last knob's w2_sampler)
    "pigdm": ({}, [(200, 0.25), (200, 0.05), (200, 0.01)], 0.05),
    "ddnm": ({}, [(200, 0.25), (200, 0.05), (200, 0.01)], 0.05),
    "diffpir": ({}, [(20, 0.25), (50, 0.25), (200, 0.25), (200, 0.01)], 0.06),
}


def _limit_figures(subspace, name, aligned=True):
    params, knobs, _ = LIMITS[name]
    out = []
    for steps, sigma_y in knobs:
        sampler, objective, _, _ = _setup(subspace, steps, sigma_y, aligned=aligned)
        m, S = exact_law(name, params, 1.0, sampler, objective)
        prior = float(gaussian_w2(torch.zeros_like(m), objective.sampler_scale * objective.prior_cov,
                                  objective.sampler_posterior_mean, objective.sampler_posterior_cov))
        P = objective.A64 @ objective.A64.T
        off = torch.eye(P.shape[0], dtype=torch.float64) - P
        out.append({"steps": steps, "sigma_y": sigma_y, "w2_sampler": law_w2(m, S, objective, "sampler"),
                    "w2": law_w2(m, S, objective), "prior_w2": prior,
                    "var_ratio_sampler": float(S.trace() / objective.sampler_posterior_cov.trace()),
                    "off_support": float((off @ S @ off).trace() + (off @ m).square().sum())})
    return out


@pytest.mark.parametrize("name", METHODS)
def test_limits_against_the_exact_posterior(subspace, name):
    """Each knob step brings the exact law of the method closer to the exact posterior, and the last is within
    the bound (the measured figures above, with ~2x margin)."""
    figures = _limit_figures(subspace, name)
    print(name, figures)
    rel = [f["w2_sampler"] / f["prior_w2"] for f in figures]
    assert rel == sorted(rel, reverse=True), rel
    assert figures[-1]["w2_sampler"] < LIMITS[name][2], figures
    assert abs(figures[-1]["var_ratio_sampler"] - 1) < 0.05, figures
    assert all(f["off_support"] < 1e-8 for f in figures)       # aligned H: every step stays in span(A)


def test_only_pigdm_reaches_the_posterior_on_the_default_problem(subspace):
    """On the default gaussian_inverse at sigma_y = 0.01 and 200 steps, PiGDM's law is near the posterior, DDNM's
    and DiffPIR's are not (the comment above LIMITS; bounds at ~2x / ~0.5x the measured figures)."""
    sampler, objective, _, _ = _setup(subspace, 200, 0.01)
    w2 = {name: law_w2(*exact_law(name, {}, 1.0, sampler, objective), objective, "sampler") for name in METHODS}
    assert w2["pigdm"] < 0.15 and w2["ddnm"] > 0.5 and w2["diffpir"] > 0.5, w2


# --- digits (tiny trained networks) and a tiny diffusers model ------------------------------------------

@pytest.fixture(scope="module")
def digits(digits_models):
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    return make_task("digits", models_dir=digits_models), model, schedule


def _run(model, schedule, objective, name, strength, n=3, steps=4, clip=None, tag="img", strengths=None, **params):
    """(x_0, counted costs) of n chains on an image objective."""
    costs = Costs()
    sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=steps, eta=1.0, clip_x0=clip)
    method = make_method(name, strength, **params)
    if strengths is not None:
        method = method.with_strengths(torch.tensor(strengths, dtype=torch.float64))
    shape = tuple(objective.x_shape)
    noise = PerSampleNoise([derive_seed(tag, i) for i in range(n)], shape)
    x = sample(sampler, method, noise.draw(), noise, Guide(CountingObjective(objective, costs)))
    return x, costs, len(sampler.steps)


def _check_run(model, schedule, objective, name, clip=None):
    n = 3
    x, costs, S = _run(model, schedule, objective, name, 1.0, n=n, clip=clip)
    assert x.shape == (n, *objective.x_shape) and torch.isfinite(x).all()
    got = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert got == tuple(n * c for c in make_method(name, 1.0).costs_per_sample(S))
    unguided, _, _ = _run(model, schedule, objective, "none", 0.0, n=n, clip=clip)
    assert not torch.allclose(x, unguided)
    # batched strengths: chains at 0.5 and 1.0 in one pass are what each strength gives alone
    both, _, _ = _run(model, schedule, objective, name, 1.0, n=2, clip=clip, strengths=[0.5, 1.0])
    for i, s in enumerate((0.5, 1.0)):
        alone, _, _ = _run(model, schedule, objective, name, s, n=2, clip=clip)
        assert torch.allclose(both[i], alone[i], atol=1e-5, rtol=1e-5), (name, s)


@pytest.mark.parametrize("objective_name", ["inpaint", "superres"])
@pytest.mark.parametrize("name", METHODS)
def test_runs_on_digits(digits, objective_name, name):
    task, model, schedule = digits
    _check_run(model, schedule, task.objective(objective_name), name)


@pytest.mark.parametrize("name", METHODS)
def test_noise_free_branches_on_digits_inpaint(digits, name):
    """sigma_y = 0: DDNM's Alg. 1 ends on A x = y exactly (its last step is the projection, ab_0 = 1); DiffPIR's
    proximal step with the floor sigma = 1e-3 nearly so; PiGDM's eq. 7 runs to finite samples."""
    task, model, schedule = digits
    objective = task.objective("inpaint", {"sigma_y": 0.0})
    x, _, _ = _run(model, schedule, objective, name, 1.0, steps=6)
    assert torch.isfinite(x).all()
    gap = (objective.A(x) - objective.measurement(x)).abs().max().item()
    if name == "ddnm":
        assert gap < 1e-5
        unguided, _, _ = _run(model, schedule, objective, "none", 0.0, steps=6)
        assert torch.equal(_run(model, schedule, objective, name, 0.0, steps=6)[0], unguided)   # strength 0
    elif name == "diffpir":
        assert gap < 1e-2


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """A tiny random diffusers UNet2DModel (v-prediction, 1x8x8, T = 1000) and an images task of 3 digits at 8 px."""
    diffusers = pytest.importorskip("diffusers")
    from benchmark.denoisers.hf import load_diffusers

    before = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny tensors: threads only wait for each other (tests/denoisers/test_hf.py)
    root = tmp_path_factory.mktemp("lps_images")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(root / "pipe")
    model, schedule = load_diffusers(str(root / "pipe"))[:2]
    write_digit_folder(root / "digits", 3, channels=1, size=8)
    yield model, schedule, ImagesTask(folder=root / "digits")
    torch.set_num_threads(before)


IMAGE_OBJECTIVES = [("inpaint", {}), ("superres", {"factor": 2}), ("deblur", {"blur_sigma": 1.0})]


@pytest.mark.parametrize("objective", IMAGE_OBJECTIVES, ids=lambda o: o[0])
@pytest.mark.parametrize("name", METHODS)
def test_runs_on_a_diffusers_model(tiny_images, name, objective):
    """On the images task with x0 clipped to [-1, 1] (the images' DDIM), every method runs to finite samples at
    its declared cost, differs from unguided sampling and batches its strengths."""
    model, schedule, task = tiny_images
    _check_run(model, schedule, task.objective(objective[0], objective[1]), name, clip=(-1.0, 1.0))
