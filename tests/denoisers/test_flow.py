"""Flow-matching models (benchmark/denoisers/flow.py) on a tiny randomly initialised UNet2DModel with a
FlowMatchEulerDiscreteScheduler config, saved locally: never a download. The loaded model's tests run on the
`device` fixture (`pytest --device cuda`) and compare on the CPU."""

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from benchmark.denoisers import DENOISERS  # noqa: E402
from benchmark.denoisers.flow import (FlowEps, flow_alpha_bar, flow_schedule, flow_sigmas, load_flow,  # noqa: E402
                                      velocity_to_eps, vp_scale)
from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, derive_seed, sample  # noqa: E402
from benchmark.diffusion.sampler import tweedie  # noqa: E402
from benchmark.methods import make_method  # noqa: E402
from tests.denoisers.test_hf import full_float32  # noqa: E402, F401 (autouse: no TF32 on cuda, see there)

N = 1000
SHIFT = 3.0       # SD3's shift: s = 3 u / (1 + 2 u)
SHAPE = (1, 8, 8)
#: max |ours - diffusers' Euler| on the same sigmas, relative to max(1, max |x_0|): the first step's Tweedie
#: x0h = (x - sqrt(1 - ab_T) e) / sqrt(ab_T) amplifies float32 rounding by 1 / sqrt(ab_T) ~ 6000 (s_T = 0.99983);
#: measured ~1.4e-5 at 10 steps.
EULER_TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=SHAPE[1], in_channels=SHAPE[0], out_channels=SHAPE[0], layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    tiny_unet().save_pretrained(root)
    diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=N, shift=SHIFT).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def loaded(folder, device):
    return load_flow(str(folder), device)


# --- the conversion ------------------------------------------------------------------------------------------

def test_velocity_to_eps_and_vp_equivalence_closed_form():
    """x_s = (1 - s) x0 + s eps, v = eps - x0: eps = x_s + (1 - s) v, and x_s / n(s) is the VP point of ab(s)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(4, 3, 5, generator=g, dtype=torch.float64) for _ in range(2))
    for s in (1e-3, 0.3, 0.5, 0.9, 0.9998):
        x_s = (1 - s) * x0 + s * eps
        v = eps - x0
        assert torch.allclose(velocity_to_eps(v, x_s, s), eps, atol=1e-12, rtol=0)
        ab = flow_alpha_bar(torch.tensor(s, dtype=torch.float64)).item()
        x_vp = x_s / vp_scale(s)
        assert torch.allclose(x_vp, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps, atol=1e-12, rtol=0)
        assert torch.allclose(tweedie(x_vp, eps, ab), x0, atol=1e-8, rtol=0)


class LinearVelocity(torch.nn.Module):
    """The exact velocity of Gaussian data x0 ~ N(0, c^2 I): v*(x_s, s) = E[eps - x0 | x_s] = (s - (1 - s) c^2)
    x_s / ((1 - s)^2 c^2 + s^2); called with the timestep s N, as the pipeline calls a flow model."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, timestep):
        s = (timestep / N).view(-1, *([1] * (x.dim() - 1)))
        return (s - (1 - s) * self.c ** 2) * x / ((1 - s) ** 2 * self.c ** 2 + s ** 2)


def test_flow_eps_of_a_linear_model_is_the_exact_vp_eps(device):
    """FlowEps of the exact Gaussian velocity equals the exact VP eps-model of the same data on ab(s_t):
    E[eps | x_vp] = sqrt(1 - ab) x_vp / (ab c^2 + 1 - ab)."""
    c = 0.7
    sigmas = flow_sigmas(N, SHIFT)
    schedule = flow_schedule(sigmas)
    model = FlowEps(LinearVelocity(c), sigmas, N).double().to(device)
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([1, 10, 500, N - 1, N])
    ab = schedule.ab[t].view(-1, 1, 1)
    exact = (1 - ab).sqrt() * x / (ab * c ** 2 + 1 - ab)                    # on the CPU
    assert torch.allclose(model(x.to(device), t.to(device)).cpu(), exact, atol=1e-9, rtol=0)


def test_sigma_grid_and_schedule():
    s = flow_sigmas(N, SHIFT)
    u = torch.arange(N + 1, dtype=torch.float64) / N
    assert s[0] == 0 and torch.allclose(s[1:-1], SHIFT * u[1:-1] / (1 + (SHIFT - 1) * u[1:-1]), rtol=0, atol=1e-15)
    assert 1 - 1e-3 < s[-1] < 1 and (s[1:] > s[:-1]).all()
    # diffusers' own training sigmas (shifted i / N, i = 1..N) are our s_t for t = 1..N - 1
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=N, shift=SHIFT)
    assert torch.allclose(sched.sigmas.flip(0)[:-1].double(), s[1:-1], atol=1e-6, rtol=0)
    schedule = flow_schedule(s)
    assert schedule.T == N and schedule.ab[0] == 1 and 0 < schedule.ab[-1] < 1e-7


def test_loader_registered_and_refuses_other_schedulers(folder, tmp_path):
    assert DENOISERS["diffusers_flow"].__name__ == "DiffusersFlowLoader"
    tiny_unet().save_pretrained(tmp_path)
    diffusers.DDPMScheduler(num_train_timesteps=N).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a flow-match scheduler"):
        load_flow(str(tmp_path))
    diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        load_flow(str(tmp_path))


def test_the_eps_loader_refuses_a_flow_model(folder):
    """`diffusers` would read a velocity field as eps on DDPM betas: it names the flow loader instead."""
    from benchmark.denoisers.hf import load_diffusers

    with pytest.raises(ValueError, match="is a flow-matching model .*use loader 'diffusers_flow'"):
        load_diffusers(str(folder))


def test_loaded_model_calls_the_unet_at_timestep_s_times_n(folder, loaded, device):
    model, _, info = loaded
    assert info["shift"] == SHIFT and info["T"] == N and info["prediction_type"] == "flow_velocity"
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2)).to(device)
    t = torch.tensor([1, 400, N], device=device)
    s = model.sigmas[t].float().view(-1, 1, 1, 1)
    x_s = vp_scale(s) * x
    with torch.no_grad():
        v = model.model(x_s, s.flatten() * N).sample
        assert torch.allclose(model(x, t).cpu(), (x_s + (1 - s) * v).cpu(), atol=1e-6, rtol=0)


# --- our DDIM(eta = 0) = diffusers' flow-match Euler loop --------------------------------------------------

def _ours(model, schedule, x_T, steps):
    B = x_T.shape[0]
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=steps, eta=0.0)
    noise = PerSampleNoise([derive_seed("flow-ddim", i) for i in range(B)], SHAPE, device=x_T.device)
    return sampler, sample(sampler, make_method("none"), x_T.clone(), noise)


def _euler(folder, unet, x, sigmas=None, steps=None):
    """diffusers' flow-match Euler loop from x on x's device; the scheduler's sigmas and timesteps stay on the CPU
    (0-d tensors broadcast against device tensors), the UNet gets the timestep batch on x's device (UNet2DModel moves
    only a 0-d timestep there itself)."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder)
    if sigmas is None:
        sched.set_timesteps(steps)               # diffusers' own grid: from sigma = 1 (pure noise)
    else:                                         # given (already shifted) sigmas: set them as they are
        sched.sigmas = torch.tensor([*sigmas, 0.0])
        sched.timesteps = torch.tensor(sigmas) * N
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t.expand(x.shape[0]).to(x.device)).sample, t, x).prev_sample
    return x


def test_ddim_eta0_is_the_flow_match_euler_loop(folder, loaded, record_property, device):
    """Same sigmas, same start x_s = n(s_T) x_T: our sampler (DDIM eta = 0 on ab(s)) and diffusers'
    FlowMatchEulerDiscreteScheduler.step loop agree to float32 rounding (the module docstring's identity)."""
    model, schedule, _ = loaded
    x_T = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(7)).to(device)
    sampler, ours = _ours(model, schedule, x_T, 10)
    sigmas = [float(model.sigmas[st.t]) for st in sampler.steps]
    theirs = _euler(folder, model.model, x_T * vp_scale(sigmas[0]), sigmas=sigmas)
    ours, theirs = ours.cpu(), theirs.cpu()
    diff, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\nflow: max |ours - diffusers flow-match Euler (same sigmas)| = {diff:.3g} (max |x_0| = {scale:.3g})")
    assert torch.isfinite(ours).all() and diff < EULER_TOL * max(1.0, scale)


def test_against_diffusers_default_loop_in_the_limit(folder, loaded, record_property, device):
    """diffusers' own set_timesteps(S) loop starts at sigma = 1 on another grid (its shifted linspace to
    sigma_min, then 0); ours starts at s_T = 0.99983 on t = T, T - T/S, ..., 0. Both are Euler schemes of the
    same probability-flow ODE, so their gap is a discretisation error that shrinks as S grows (measured
    0.076, 0.012, 0.0034 at S = 10, 50, 200: ~1/S)."""
    model, schedule, _ = loaded
    x_T = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(7)).to(device)
    gaps = {}
    for S in (10, 50):
        ours = _ours(model, schedule, x_T, S)[1]
        gaps[S] = (ours.cpu() - _euler(folder, model.model, x_T.clone(), steps=S).cpu()).abs().max().item()
    record_property("gaps", gaps)
    print(f"\nflow: max |ours - diffusers default loop| by steps: {gaps}")
    assert gaps[50] < gaps[10] / 3 and gaps[50] < 0.03


@pytest.mark.parametrize("name,strength,params", [("dps", 0.3, {}), ("bon", 0.0, {"n": 2})])
def test_guidance_methods_run_on_the_velocity_field(loaded, name, strength, params, device):
    """Methods that use eps (here DPS's VJP through the converted model, best-of-N) run unchanged, at their cost."""
    from benchmark.diffusion import CountingObjective
    from benchmark.methods import Guide

    model, schedule, _ = loaded
    n, costs = 2, Costs()
    sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=5, eta=1.0)
    objective = CountingObjective(lambda x: -(x - 0.5).square().flatten(1).sum(-1), costs)
    method = make_method(name, strength, **params)
    noise = PerSampleNoise([derive_seed("flow-methods", i) for i in range(n)], SHAPE, device=device)
    x = sample(sampler, method, noise.draw(), noise, Guide(objective))
    assert torch.isfinite(x).all()
    declared = tuple(c * n for c in method.costs_per_sample(5))
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == declared
