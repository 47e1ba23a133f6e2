"""benchmark/diffusion/sampler.py: the DDIM/DDPM update against the forward process, and the sampling option
clip_x0: every DDIM update clips x0h to the task's data range and recomputes e
from it (TFG's `_predict_x_prev_from_zero`, diffusers' DDIMScheduler.step with clip_sample=True and
use_clipped_model_output=True); off by default, when nothing changes; a config key end to end."""

import copy
import math

import pytest
import torch
import yaml

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, ddim_update, make_schedule, sample
from benchmark.diffusion.sampler import Step, renoise, tweedie
from benchmark.diffusion.schedules import VPSchedule
from benchmark.methods import Guide, make_method
from benchmark.spec import CellSpec

LOW, HIGH = -1.0, 1.0


class Fixed:
    """A noise stream that always draws z."""

    def __init__(self, z):
        self.z = z

    def draw(self):
        return self.z


def _inputs(seed=0, shape=(4, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return 2.5 * torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _bare_sampler(schedule, clip_x0):
    return Sampler(CountingDenoiser(lambda x, t: torch.zeros_like(x), Costs()), schedule, steps=10, clip_x0=clip_x0)


def test_ddim_posterior_and_renoise_are_consistent():
    """DDPM (eta = 1) step from the true x_0 is q(x_{t-1} | x_t, x_0); renoise is q(x_t | x_{t-1})."""
    s = make_schedule("cosine", 50)
    t, tp = 30, 29
    step = Step(0, 1, t, tp, float(s.ab[t]), float(s.ab[tp]), 1.0)
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x_t = math.sqrt(step.ab_t) * x0 + math.sqrt(1 - step.ab_t) * eps
    x_prev = ddim_update(x0, eps, step, torch.randn(n, 1, generator=gen, dtype=torch.float64))
    # Marginal of x_{t-1} must be N(0, 1) for unit-variance data, and renoise must map it back.
    assert float(x_prev.var()) == pytest.approx(1.0, abs=0.01)
    x_t2 = renoise(x_prev, step, torch.randn(n, 1, generator=gen, dtype=torch.float64))
    assert float(x_t2.var()) == pytest.approx(1.0, abs=0.01)
    # Posterior variance of DDPM: (1 - ab_{t-1}) / (1 - ab_t) * beta_t.
    resid = x_prev - (math.sqrt(step.ab_prev) * x0 + math.sqrt(1 - step.ab_prev - step.sigma ** 2) * eps)
    assert float(resid.var()) == pytest.approx(step.sigma ** 2, rel=0.02)
    assert step.sigma ** 2 == pytest.approx((1 - step.ab_prev) / (1 - step.ab_t) * (1 - step.a_t), rel=1e-12)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_clipped_ddim_step_is_tfg_codes_arithmetic(eta):
    """TFG's code: x0 = clamp((x_t - sqrt(1 - ab_t) e) / sqrt(ab_t)); e' = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t);
    x_{t-1} = sqrt(ab_{t-1}) (x_t - sqrt(1 - ab_t) e') / sqrt(ab_t) + sqrt(1 - ab_{t-1} - s^2) e' + s z."""
    schedule = make_schedule("cosine", 200)
    sampler = _bare_sampler(schedule, (LOW, HIGH))
    ab_t, ab_prev = float(schedule.ab[90]), float(schedule.ab[80])
    step = Step(0, 1, 90, 80, ab_t, ab_prev, eta)
    x_t, e, z = _inputs()
    x0 = ((x_t - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)).clamp(LOW, HIGH)
    clipped = (x0 == LOW) | (x0 == HIGH)
    assert 0.1 < clipped.float().mean() < 0.9             # some entries clipped, some not
    e_new = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
    s = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    want = (math.sqrt(ab_prev) * (x_t - math.sqrt(1 - ab_t) * e_new) / math.sqrt(ab_t)
            + math.sqrt(1 - ab_prev - s * s) * e_new + s * z)
    got = sampler.ddim(tweedie(x_t, e, ab_t), e, step, Fixed(z))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
    unclipped = ddim_update(tweedie(x_t, e, ab_t), e, step, z)
    assert (got - unclipped).abs().max() > 0.1             # the option does something


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_clipped_ddim_step_equals_diffusers(eta):
    """diffusers' DDIMScheduler.step(clip_sample=True, use_clipped_model_output=True) on the same x_t, e,
    z and alpha-bars (their timestep i is our t = i + 1); their default use_clipped_model_output=False
    keeps e and differs."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                                    clip_sample_range=HIGH, set_alpha_to_one=True)
    sched.set_timesteps(50)
    timestep = int(sched.timesteps[20])
    prev = timestep - 1000 // 50
    ab = sched.alphas_cumprod
    schedule = VPSchedule.from_alphas_cumprod(ab, "linear")
    step = Step(0, 1, timestep + 1, prev + 1, float(ab[timestep]), float(ab[prev]), eta)
    assert (step.ab_t, step.ab_prev) == (float(schedule.ab[timestep + 1]), float(schedule.ab[prev + 1]))
    x_t, e, z = _inputs(1)
    x0h = tweedie(x_t, e, step.ab_t)
    assert ((x0h < LOW) | (x0h > HIGH)).float().mean() > 0.1

    def theirs(**kw):
        return sched.step(e, timestep, x_t, eta=eta, variance_noise=z, **kw).prev_sample

    ours = _bare_sampler(schedule, (LOW, HIGH)).ddim(x0h, e, step, Fixed(z))
    assert torch.allclose(ours, theirs(use_clipped_model_output=True), atol=2e-5, rtol=1e-5)
    assert (ours - theirs(use_clipped_model_output=False)).abs().max() > 0.1
    sched.config.clip_sample = False                       # FrozenDict: set the attribute the step reads
    off = _bare_sampler(schedule, None).ddim(x0h, e, step, Fixed(z))
    try:
        assert torch.allclose(off, theirs(), atol=2e-5, rtol=1e-5)
    finally:
        sched.config.clip_sample = True


def test_default_is_off_and_the_ddim_update_unchanged():
    schedule = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(lambda x, t: torch.zeros_like(x), Costs()), schedule, steps=10)
    assert sampler.clip_x0 is None
    x_t, e, z = _inputs(2)
    step = sampler.steps[3]
    x0h = tweedie(x_t, e, step.ab_t)
    assert torch.equal(sampler.ddim(x0h, e, step, Fixed(z)), ddim_update(x0h, e, step, z))


@pytest.mark.parametrize("method", ["none", "dps", "freedom", "lgd", "ugd", "mpgd", "tfg", "shen", "smc", "bon"])
def test_a_range_nothing_leaves_changes_no_sample(subspace, method):
    """Clipping acts only where x0h leaves the range: with a range no x0h reaches every method's samples are
    bit-identical to the default's (no extra draw, no arithmetic on unclipped entries)."""
    def run(clip_x0):
        sched = make_schedule("cosine", 200)
        sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=10, clip_x0=clip_x0)
        noise = PerSampleNoise(list(range(3)), (64,))
        guide = Guide(subspace.objective("quadratic_off"), augment=subspace.augment)
        return sample(sampler, make_method(method, 0.0 if method in ("none", "bon") else 0.2), noise.draw(), noise,
                      guide)

    assert torch.equal(run(None), run((-1e30, 1e30)))


@pytest.mark.parametrize("method", ["none", "mpgd", "ugd"])
def test_clipped_samples_lie_in_the_range(subspace, method):
    """The last update (t_{-1} = 0: ab = 1, no e-term) returns the clipped x0h: a method whose step ends in
    the DDIM update ends in the range; without clipping the subspace's samples do not."""
    def run(clip_x0):
        sched = make_schedule("cosine", 200)
        sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=10, clip_x0=clip_x0)
        noise = PerSampleNoise(list(range(3)), (64,))
        guide = Guide(subspace.objective("quadratic_off"), augment=subspace.augment)
        return sample(sampler, make_method(method, 0.0 if method == "none" else 0.2), noise.draw(), noise, guide)

    assert run(None).abs().max() > 0.5
    assert run((-0.5, 0.5)).abs().max() <= 0.5


def test_smc_prior_mean_is_the_clipped_one(subspace):
    """smc's importance ratio p/q needs the prior's own (clipped) DDIM mean: a proposal that is the prior
    gives log p - log q = 0 for every particle."""
    from benchmark.methods.smc import _Transition

    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=10, clip_x0=(-0.3, 0.3))
    step = sampler.steps[6]
    x_t = 2.0 * torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    transition = _Transition(sampler)
    transition.begin(x_t)
    x_prev = make_method("none").step(x_t, step, transition, Guide(subspace.objective("quadratic_off")),
                                      PerSampleNoise(list(range(5)), (64,)))
    clipped = (transition.x0h(step).abs() > 0.3).float().mean()
    assert clipped > 0.1
    assert transition.log_ratio(x_prev, step).abs().max() < 1e-3


@pytest.mark.parametrize("bad", [(1.0, -1.0), (0.0, 0.0), (-math.inf, 1.0), (-1.0, math.nan)])
def test_bad_range_is_refused(bad):
    with pytest.raises(ValueError, match=r"clip_x0 must be a data range \(low, high\) with finite low < high"):
        Sampler(CountingDenoiser(lambda x, t: x, Costs()), make_schedule("cosine", 10), clip_x0=bad)


# --- the key, end to end ---------------------------------------------------------------------------

def test_spec_refuses_clip_x0_for_a_task_without_a_data_range():
    with pytest.raises(ValueError, match=r"sampling.clip_x0: task 'subspace' declares no data range to clip x0h "
                                         r"to \(Task.data_range\); allowed: false, or true for a task with one: "
                                         r"\['digits', 'images'\]"):
        CellSpec.of(task="subspace", objective="quadratic_off", method="dps", clip_x0=True)
    assert not CellSpec.of(task="subspace", objective="quadratic_off", method="dps").sampling.clip_x0


def test_cli_flag_parses_booleans():
    import argparse

    from benchmark.spec import add_spec_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    base = ["--task", "digits", "--objective", "label", "--method", "dps", "--denoiser", "trained",
            "--checkpoint", "x.safetensors"]
    assert spec_from_args(parser.parse_args(base + ["--clip-x0", "true"]), 0).sampling.clip_x0 is True
    assert spec_from_args(parser.parse_args(base + ["--clip-x0", "false"]), 0).sampling.clip_x0 is False
    assert spec_from_args(parser.parse_args(base), 0).sampling.clip_x0 is False
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--clip-x0", "maybe"])


def test_cell_samples_with_the_tasks_data_range(digits_models):
    from benchmark.cell import Cell

    spec = dict(task="digits", objective="label", method="dps", denoiser="trained",
                checkpoint=str(digits_models / "digits_denoiser.safetensors"), models_dir=str(digits_models),
                steps=5, rounds=1, samples=2)
    assert Cell(CellSpec.of(**spec, clip_x0=True), "cpu").sampler.clip_x0 == (-1.0, 1.0)
    assert Cell(CellSpec.of(**spec), "cpu").sampler.clip_x0 is None


def _config():
    from pathlib import Path

    from snakemake.utils import validate

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    validate(config, str(root / "workflow/schemas/config.schema.yaml"))
    return config, str(root / "workflow/schemas/config.schema.yaml")


def test_config_key_reaches_the_cells_and_only_their_ids_change():
    from snakemake.utils import validate

    from benchmark.sweep import cells_from_config

    config, schema = _config()
    before = cells_from_config(config)
    explicit_off = copy.deepcopy(config)
    explicit_off["experiments"]["digits"]["clip_x0"] = False
    validate(explicit_off, schema)
    assert set(cells_from_config(explicit_off)) == set(before)          # off: every id as it was
    on = copy.deepcopy(config)
    on["experiments"]["digits"]["clip_x0"] = True
    validate(on, schema)
    after = cells_from_config(on)
    digits = {k for k, c in before.items() if c.experiment == "digits"}
    assert digits and all(not before[k].spec.sampling.clip_x0 for k in before)
    assert {k for k, c in after.items() if c.experiment == "digits"}.isdisjoint(digits)   # another variant
    assert all(c.spec.sampling.clip_x0 for c in after.values() if c.experiment == "digits")
    assert set(after) - {k for k, c in after.items() if c.experiment == "digits"} == set(before) - digits


def test_config_refuses_clip_x0_for_a_vector_task():
    from benchmark.config import ConfigError
    from benchmark.sweep import cells_from_config

    config, _ = _config()
    config["experiments"]["subspace_oracle"]["clip_x0"] = True
    with pytest.raises(ConfigError, match=r"experiments.subspace_oracle.clip_x0: task 'subspace' declares no data "
                                          r"range to clip x0h to; allowed: false, or true for a task with one: "
                                          r"\['digits', 'images'\]"):
        cells_from_config(config)


def test_schema_refuses_a_non_boolean():
    from snakemake.utils import validate

    config, schema = _config()
    config["experiments"]["digits"]["clip_x0"] = "yes"
    with pytest.raises(Exception, match="is not of type 'boolean'"):
        validate(config, schema)
