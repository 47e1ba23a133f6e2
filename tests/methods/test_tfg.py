"""benchmark/methods/tfg.py: TFG's special cases, step for step against the dedicated implementations (Ye et al.
2024, §3), one step with smoothing and both guidances written out with the oracle, its schedules and settings.

Each paper schedules its step size differently from TFG's a_t-schedule normalised to its mean, so
each comparison substitutes the dedicated method's step for rho_t / mu_t (a subclass overriding
`rho_t` / `mu_t`); everything else (the gradient, the smoothing, the recurrence, the order in which
random draws are taken from the chains' streams) must then agree to float tolerance.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.diffusion.sampler import ddim_update
from benchmark.methods import Guide, make_method
from benchmark.methods.tfg import TFG, schedule_value
from tests.methods.test_lgd import _one_step, _smoothed_grad


class MatchedTFG(TFG):
    """TFG with the step sizes of a dedicated method: rho(step), mu(step) functions of the grid step."""

    def __init__(self, rho_fn=None, mu_fn=None, **kw):
        super().__init__(**kw)
        self._rho_fn, self._mu_fn = rho_fn, mu_fn

    def rho_t(self, step, sampler):
        return self._rho_fn(step) if self._rho_fn else super().rho_t(step, sampler)

    def mu_t(self, step, sampler):
        return self._mu_fn(step) if self._mu_fn else super().mu_t(step, sampler)


def _sample(task, method, objective="quadratic_off", n=6, steps=20, eta=1.0):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=steps, eta=eta)
    noise = PerSampleNoise.for_chains(("tfg-equivalence",), n, (64,))
    guide = Guide(CountingObjective(task.objective(objective), Costs()), augment=task.augment)
    return sample(sampler, method, noise.draw(), noise, guide)


def _close(a, b):
    assert torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


Z = 0.3


def _ddim_e_coefficient(step):
    """c_t = sqrt(1 - ab_{t-1} - s_t^2), the DDIM update's coefficient of e."""
    return math.sqrt(max(1 - step.ab_prev - step.sigma ** 2, 0.0))


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_tfg_as_dps(subspace, eta):
    """DPS = (rho > 0, mu = 0, gamma = 0, N_recur = 1, N_iter = 0), DPS's constant step zeta:
    TFG adds rho_t g_t / sqrt(a_t), so rho_t = zeta sqrt(a_t). The normalisation is named: "none" is
    dps's default on this general reward, but "abs_reward" (its default on log-probabilities) divides
    zeta by |r(x0h)|, a normalisation outside TFG's design space."""
    tfg = MatchedTFG(rho_fn=lambda s: Z * math.sqrt(s.a_t), strength=Z, mu=0.0, gamma=0.0, n_recur=1, n_iter=0)
    dps = make_method("dps", Z, normalise="none")
    _close(_sample(subspace, tfg, eta=eta), _sample(subspace, dps, eta=eta))


def test_tfg_as_lgd_mc(subspace):
    """LGD-MC = (rho > 0, mu = 0, gamma = 1, N_recur = 1, N_iter = 0, N_s = n)."""
    tfg = MatchedTFG(rho_fn=lambda s: Z * math.sqrt(s.a_t), strength=Z, mu=0.0, gamma=1.0, n_s=4, n_iter=0)
    lgd = make_method("lgd", Z, n=4)
    _close(_sample(subspace, tfg, "negnorm_random"), _sample(subspace, lgd, "negnorm_random"))


@pytest.mark.parametrize("recur", [1, 3])
def test_tfg_as_freedom(subspace, recur):
    """FreeDoM = (rho > 0, mu = 0, gamma = 0, N_recur >= 1, N_iter = 0): FreeDoM's step
    strength sqrt(ab_t), time travel at every step (travel_start = 0: no upper limit)."""
    tfg = MatchedTFG(rho_fn=lambda s: Z * math.sqrt(s.ab_t) * math.sqrt(s.a_t), strength=Z, mu=0.0,
                     n_recur=recur, n_iter=0)
    freedom = make_method("freedom", Z, recurrence=recur)
    _close(_sample(subspace, tfg), _sample(subspace, freedom))


@pytest.mark.parametrize("schedule", ["constant", "sqrt_ab_prev"])
def test_tfg_as_mpgd(subspace, schedule):
    """MPGD = (rho = 0, mu > 0, gamma = 0, N_recur = 1, N_iter = 1), mu_t = MPGD's c_t, for MPGD's
    schedules named explicitly: its default "rms" (He et al.'s code) divides by each sample's gradient
    RMS, a per-sample step outside TFG's design space (mu_t is one number per grid step)."""
    c = (lambda s: Z) if schedule == "constant" else (lambda s: Z * math.sqrt(s.ab_prev))
    tfg = MatchedTFG(mu_fn=c, strength=0.0, mu=Z, n_recur=1, n_iter=1)
    mpgd = make_method("mpgd", Z, schedule=schedule)
    _close(_sample(subspace, tfg), _sample(subspace, mpgd))


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_tfg_as_ugd_without_backward_guidance(subspace, eta):
    """UGD with m = 0 (forward guidance + self-recurrence k) = (rho > 0, mu = 0, gamma = 0,
    N_recur = k, N_iter = 0) with rho_t = w sqrt(1 - ab_t) (sqrt(1 - ab_t) - sqrt(a_t) c_t):
    e^ = e - w sqrt(1 - ab_t) g_t moves x0h(e^) by w (1 - ab_t) / sqrt(ab_t) g_t and the e-term by
    -c_t w sqrt(1 - ab_t) g_t. For m > 0 the two differ (ugd.py says how); tests/methods/test_ugd.py
    checks backward guidance against Bansal et al.'s formulas instead."""
    def rho(s):
        return Z * math.sqrt(s.h) * (math.sqrt(s.h) - math.sqrt(s.a_t) * _ddim_e_coefficient(s))
    tfg = MatchedTFG(rho_fn=rho, strength=Z, mu=0.0, n_recur=2, n_iter=0)
    ugd = make_method("ugd", Z, backward_steps=0, recurrence=2)
    _close(_sample(subspace, tfg, eta=eta), _sample(subspace, ugd, eta=eta))


def test_tfg_one_step_with_smoothing_and_both_guidances(subspace):
    """TFG (rho, mu, gamma > 0, N_iter = 2): Delta_t = rho_t alpha P grad rt(x0h); Delta_0 <- Delta_0 +
    mu_t grad rt(x0h + Delta_0) twice; x_{t-1} = DDIM(x0h + Delta_0, e) + Delta_t / sqrt(a_t), rt smoothed
    at std = gamma sqrt(1 - ab_t) with the chains' next N_s draws, the same draws for every gradient."""
    sampler, step, objective, x_t, x0h, e = _one_step(subspace)
    seeds = list(range(5))
    method = make_method("tfg", 0.3, mu=0.2, gamma=0.5, n_s=4, n_iter=2)
    rho_t, mu_t = method.rho_t(step, sampler), method.mu_t(step, sampler)
    stream = PerSampleNoise(seeds, (64,))
    draws = [stream.draw() for _ in range(4)]
    std = 0.5 * math.sqrt(step.h)
    delta_t = rho_t * step.alpha * subspace.project(_smoothed_grad(objective, x0h, std, draws))
    delta_0 = torch.zeros_like(x0h)
    for _ in range(2):
        delta_0 = delta_0 + mu_t * _smoothed_grad(objective, x0h + delta_0, std, draws)
    want = ddim_update(x0h + delta_0, e, step, torch.zeros_like(x_t)) + delta_t / math.sqrt(step.a_t)
    got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(seeds, (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("kind", ["increase", "decrease", "constant"])
def test_tfg_schedules_are_normalised_to_their_mean_over_the_grid(subspace, kind):
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=25)
    method = make_method("tfg", 0.7, mu=0.2, rho_schedule=kind, mu_schedule=kind)
    rho = [method.rho_t(s, sampler) for s in sampler.steps]
    mu = [method.mu_t(s, sampler) for s in sampler.steps]
    assert sum(rho) / len(rho) == pytest.approx(0.7) and sum(mu) / len(mu) == pytest.approx(0.2)
    ratio = [r / schedule_value(kind, s) for r, s in zip(rho, sampler.steps)]
    assert max(ratio) == pytest.approx(min(ratio))              # proportional to the schedule


def test_tfg_smoothing_with_one_draw_and_gamma_zero_is_plain(subspace):
    """gamma = 0 takes no Monte-Carlo draws whatever N_s is (rt = r): N_s changes nothing."""
    a = _sample(subspace, make_method("tfg", Z, gamma=0.0, n_s=1))
    b = _sample(subspace, make_method("tfg", Z, gamma=0.0, n_s=7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("params,message", [
    ({"mu": -0.1}, "mu must be >= 0"), ({"gamma": -1.0}, "gamma must be >= 0"),
    ({"n_recur": 0}, "n_recur must be >= 1"), ({"n_iter": -1}, "n_iter must be >= 0"),
    ({"n_s": 0}, "n_s must be >= 1"),
    ({"rho_schedule": "cosine"}, "rho_schedule must be one of \\['increase', 'decrease', 'constant'\\]"),
])
def test_tfg_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_method("tfg", 0.1, **params)
