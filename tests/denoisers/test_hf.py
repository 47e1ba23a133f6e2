"""The diffusers adapter (benchmark/denoisers/hf.py) on tiny randomly initialised UNet2DModels saved
locally with save_pretrained: never a download. The loading, conversion, DDIM-equivalence and every-method tests
run on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import math
import socket

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from tests.test_contract import IDS, SETTINGS, _noisy_stand_in  # noqa: E402

from benchmark.denoisers.hf import DiffusersEps, load_diffusers, prediction_to_eps  # noqa: E402
from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler,  # noqa: E402
                                 derive_seed, sample, timestep_grid)
from benchmark.methods import METHODS, Guide, make_method  # noqa: E402
from benchmark.optimize import linearise  # noqa: E402

T = 1000          # the usual DDPM training length (google/ddpm-cifar10-32 has T = 1000, linear betas)
STEPS = 10        # divides T: our grid and diffusers' "trailing" DDIM grid coincide
SHAPE = (1, 8, 8)
#: Bound on max |ours - diffusers'| of unguided DDIM(eta = 0) samples in float32, relative to the samples'
#: scale: DDIM_TOL * max(1, max |x_0|). The two loops do the same arithmetic (ours takes the alpha-bar
#: square roots in float64), so they differ by float32 rounding: measured ~1e-6 for the v_prediction and
#: sample models (|x_0| ~ 1), ~9e-5 for the random epsilon model, whose x0h = (x - sqrt(1 - ab) e) /
#: sqrt(ab) is amplified by 1 / sqrt(ab_T) ~ 160 and gives |x_0| ~ 400 (a few float32 ulps there).
DDIM_TOL = 1e-5


def tiny_unet(seed: int = 0) -> "diffusers.UNet2DModel":
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=SHAPE[1], in_channels=SHAPE[0], out_channels=SHAPE[0], layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)


def save_pipeline(folder, prediction_type="epsilon", seed=0):
    """A pipeline folder as DDPMPipeline.save_pretrained writes it: model_index.json, unet/, scheduler/."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, prediction_type=prediction_type)
    diffusers.DDPMPipeline(unet=tiny_unet(seed), scheduler=scheduler).save_pretrained(folder)
    return folder


def save_flat(folder, prediction_type="epsilon", seed=0):
    """A flat model folder: config.json, the weights and scheduler_config.json side by side."""
    tiny_unet(seed).save_pretrained(folder)
    diffusers.DDPMScheduler(num_train_timesteps=T, prediction_type=prediction_type).save_pretrained(folder)
    return folder


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


@pytest.fixture(scope="module", autouse=True)
def full_float32():
    """Float32 convolutions and matmuls in full float32 on cuda (a no-op on the CPU). cuDNN's default TF32 rounds
    a convolution's inputs to 10 mantissa bits (~5e-4 relative): two loops whose inputs differ by float32 rounding
    could then differ by far more than the float32-rounding tolerances here (DDIM_TOL; test_flow.py's and
    test_latent.py's, which use this fixture too), so they hold on cuda as on the CPU. Restored after the module."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{prediction type: pipeline folder} plus a flat folder of the same epsilon network."""
    root = tmp_path_factory.mktemp("hf")
    out = {p: save_pipeline(root / f"pipe-{p}", p) for p in ("epsilon", "v_prediction", "sample")}
    out["flat"] = save_flat(root / "flat")
    return out


# --- schedule, timestep mapping, layouts -------------------------------------------------------

def test_both_layouts_load_the_same_model(folders, device):
    scheduler = diffusers.DDPMScheduler.from_pretrained(folders["epsilon"] / "scheduler")
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.tensor([1, 500, T], device=device)
    outs = []
    for key, layout in (("epsilon", "pipeline"), ("flat", "flat")):
        model, schedule, info = load_diffusers(str(folders[key]), device)
        assert {v.device for v in (*model.parameters(), *model.buffers())} == {x.device}   # ab included
        assert info["layout"] == layout and info["prediction_type"] == "epsilon"
        assert (info["sample_size"], info["in_channels"], info["T"]) == (SHAPE[1], SHAPE[0], T)
        assert info["safetensors"] and info["weights"] == "diffusion_pytorch_model.safetensors"
        assert len(info["sha256"]) == 64 and info["diffusers_version"] == diffusers.__version__
        assert info["num_parameters"] == sum(p.numel() for p in model.unet.parameters())
        # ab = [1, alphas_cumprod]: our t is diffusers' t - 1
        assert schedule.T == T and schedule.ab[0] == 1
        assert torch.equal(schedule.ab[1:], scheduler.alphas_cumprod.double())
        # eval mode, no parameter gradients; a VJP w.r.t. x still flows
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        xg = x.clone().requires_grad_(True)
        model(xg, t).sum().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()
        with torch.no_grad():
            outs.append(model(x, t))
            # the timestep mapping: our t calls the UNet at diffusers' timestep t - 1
            assert torch.equal(outs[-1], model.unet(x, t - 1).sample)
        with pytest.raises(ValueError, match="timesteps must lie in 1..T"):
            model(x, torch.zeros(3, dtype=torch.long))
    assert torch.equal(outs[0], outs[1])
    assert load_diffusers(str(folders["flat"]))[2]["sha256"] == load_diffusers(str(folders["epsilon"]))[2]["sha256"]


def test_subfolder_and_trainable(folders):
    model, _, info = load_diffusers(str(folders["epsilon"]), subfolder="unet", trainable=True)
    assert info["layout"] == "subfolder" and info["scheduler_path"].endswith("scheduler/scheduler_config.json")
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_missing_source_errors_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_diffusers tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    # a model id absent from the (empty) cache: a ValueError naming it and saying how to fetch it
    with pytest.raises(ValueError, match=r"'google/ddpm-cifar10-32'.*hf download google/ddpm-cifar10-32"):
        load_diffusers("google/ddpm-cifar10-32", cache_dir=str(tmp_path / "cache"))
    # a path that does not exist (not a valid model id either)
    with pytest.raises(ValueError, match="nowhere"):
        load_diffusers(str(tmp_path / "nowhere" / "x" / "y"))
    # a folder that is neither layout
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_diffusers(str(tmp_path / "empty"))
    # a model folder without its scheduler: the schedule is unknown
    tiny_unet().save_pretrained(tmp_path / "noscheduler")
    with pytest.raises(ValueError, match="no scheduler_config.json"):
        load_diffusers(str(tmp_path / "noscheduler"))


def test_model_id_resolves_in_the_local_cache(folders, tmp_path, monkeypatch):
    """A model id is looked up in the Hugging Face cache (models--org--name/refs/main -> snapshots/<commit>)."""
    import shutil

    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("network access"))
    repo, commit = tmp_path / "cache" / "models--tiny--ddpm", "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folders["epsilon"], repo / "snapshots" / commit)
    model, schedule, info = load_diffusers("tiny/ddpm", cache_dir=str(tmp_path / "cache"))
    assert info["source"] == "tiny/ddpm" and info["path"] == str((repo / "snapshots" / commit).resolve())
    assert info["sha256"] == load_diffusers(str(folders["epsilon"]))[2]["sha256"]


# --- prediction types --------------------------------------------------------------------------

def test_prediction_to_eps_formulas(device):
    """Each prediction type converted back to eps (float64, on `device`: a float ab becomes a tensor there)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 3, generator=g,
                                                                                    dtype=torch.float64)
    for ab in (0.9999, 0.5, 4e-5):
        x_t = (math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps).to(device)
        v = math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0
        assert torch.equal(prediction_to_eps(eps.to(device), x_t, ab, "epsilon").cpu(), eps)
        assert torch.allclose(prediction_to_eps(v.to(device), x_t, ab, "v_prediction").cpu(), eps, atol=1e-12, rtol=0)
        assert torch.allclose(prediction_to_eps(x0.to(device), x_t, ab, "sample").cpu(), eps, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        prediction_to_eps(eps, eps, 0.5, "score")


class _Output:
    def __init__(self, sample):
        self.sample = sample


class _Reparametrised(torch.nn.Module):
    """An epsilon UNet turned into a v_prediction or sample UNet (same interface and config)."""

    def __init__(self, unet, alphas_cumprod, prediction_type):
        super().__init__()
        self.unet, self.config, self.prediction_type = unet, unet.config, prediction_type
        self.register_buffer("ac", alphas_cumprod.double())

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, x, timestep):
        eps = self.unet(x, timestep).sample
        ab = self.ac[timestep].view(-1, 1, 1, 1)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return _Output(ab.sqrt() * eps - (1 - ab).sqrt() * x0 if self.prediction_type == "v_prediction" else x0)


def test_v_and_sample_models_give_the_epsilon_models_eps(folders, device):
    """Wrapped v_prediction / sample versions of the same network give its eps exactly (float64)."""
    model, schedule, _ = load_diffusers(str(folders["epsilon"]), device)
    model = model.double()
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    t = torch.tensor([1, 10, 400, T], device=device)
    with torch.no_grad():
        e = model(x, t).cpu()
        for p in ("v_prediction", "sample"):
            wrapped = DiffusersEps(_Reparametrised(model.unet, schedule.ab[1:], p), schedule, p).double().to(device)
            assert torch.allclose(wrapped(x, t).cpu(), e, atol=1e-9, rtol=0), p


# --- our DDIM = diffusers' DDIM ----------------------------------------------------------------

@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_eta0_matches_diffusers(folders, prediction_type, record_property, device):
    """Unguided DDIM(eta = 0) through our Sampler + method 'none' equals diffusers' DDIMScheduler loop.

    Our grid for S steps is T, T - T/S, ..., T/S, 0 (timestep_grid). diffusers' DDIMScheduler with
    timestep_spacing="trailing" visits timesteps T-1, T-1-T/S, ..., T/S-1 (= our t - 1 for each t of
    the grid but the last), steps each to timestep - T // S, and with set_alpha_to_one=True the last
    step (to timestep -1) uses alpha-bar 1 = our ab[0]. clip_sample=False: our sampler never clips x0h.
    Both loops run on `device` from one x_T (drawn on the CPU); diffusers' scheduler keeps alphas_cumprod and its
    timesteps on the CPU, 0-d tensors that broadcast against device tensors (UNet2DModel moves a 0-d timestep to
    the sample's device itself).
    """
    model, schedule, _ = load_diffusers(str(folders[prediction_type]), device)
    B = 3
    x_T = torch.randn(B, *SHAPE, generator=torch.Generator().manual_seed(7)).to(device)

    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=STEPS, eta=0.0)
    noise = PerSampleNoise([derive_seed("hf-ddim", i) for i in range(B)], SHAPE, device=device)
    ours = sample(sampler, make_method("none"), x_T.clone(), noise)

    ddim = diffusers.DDIMScheduler.from_pretrained(folders[prediction_type] / "scheduler", timestep_spacing="trailing",
                                                   set_alpha_to_one=True, clip_sample=False, thresholding=False)
    ddim.set_timesteps(STEPS)
    assert [int(t) + 1 for t in ddim.timesteps] == timestep_grid(T, STEPS)[:-1]
    x = x_T.clone()
    with torch.no_grad():
        for t in ddim.timesteps:
            x = ddim.step(model.unet(x, t).sample, t, x, eta=0.0).prev_sample

    ours, x = ours.cpu(), x.cpu()
    diff = (ours - x).abs().max().item()
    scale = x.abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\n{prediction_type}: max |ours - diffusers DDIM| = {diff:.3g} (max |x_0| = {scale:.3g})")
    assert torch.isfinite(ours).all()
    assert diff < DDIM_TOL * max(1.0, scale)


# --- every registered method on a diffusers model ----------------------------------------------

class NegSqDistance:
    """r(x) = -||x - target||^2 per sample, a differentiable image objective."""

    def __init__(self, target):
        self.target = target

    def __call__(self, x):
        return -((x - self.target) ** 2).flatten(1).sum(-1)


def _jitter(x, z):
    return x + 0.05 * z


@pytest.fixture(scope="module")
def v_model(folders, device):
    """The v_prediction tiny model on `device`: random weights still give a well-conditioned x0h near t = T
    (x0h ~ -v there), as with the suite's own v-prediction networks."""
    return load_diffusers(str(folders["v_prediction"]), device)[:2]


def test_every_method_is_covered():
    assert {name for name, *_ in SETTINGS} == set(METHODS)


#: The contract's settings of the methods that can guide a plain reward (GuidanceMethod.skip: the posterior samplers,
#: which need a linear measurement, run on the tiny diffusers model's inverse problems in their own test files).
REWARD = [i for i, s in enumerate(SETTINGS) if not make_method(s[0], s[1], **s[2]).skip(NegSqDistance)[0]]


@pytest.mark.parametrize("setting", [SETTINGS[i] for i in REWARD], ids=[IDS[i] for i in REWARD])
def test_every_method_runs_on_a_diffusers_model(v_model, setting, device):
    name, strength, params, cost = setting
    model, schedule = v_model
    n = 3
    costs = Costs()
    sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=STEPS, eta=1.0)
    target = torch.full((1, *SHAPE), 0.5, device=device)
    objective = CountingObjective(NegSqDistance(target), costs)
    method = make_method(name, strength, **params)
    noise = PerSampleNoise([derive_seed("hf-methods", i) for i in range(n)], SHAPE, device=device)
    z_prev = PerSampleNoise([1000 + i for i in range(n)], SHAPE, device=device).draw() * 0.5
    linear = linearise(objective, z_prev, method.strength, "per_sample") if method.uses_linear_target else None
    before = costs.snapshot()
    x = sample(sampler, method, noise.draw(), noise,
               Guide(objective, linear, augment=_jitter, noisy_log_prob=_noisy_stand_in(objective)))
    spent = costs - before
    assert x.shape == (n, *SHAPE) and torch.isfinite(x).all()
    steps = len(sampler.steps)
    per_sample = cost(steps) if callable(cost) else tuple(c * steps for c in cost)
    got = (spent.denoiser_forwards, spent.denoiser_vjps, spent.objective_evals, spent.objective_grads)
    assert got == tuple(c * n for c in per_sample)
