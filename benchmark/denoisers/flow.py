"""Flow-matching / rectified-flow diffusers models as eps-models on an equivalent VP schedule.

A flow model (diffusers' FlowMatchEulerDiscreteScheduler: SD3, rectified flow; Lipman et al. 2023, Liu et al.
2023, Esser et al. 2024 eq. 1-3) is trained on x_s = (1 - s) x_0 + s eps, s in (0, 1], to predict the velocity
v = dx_s/ds = eps - x_0, called with timestep s * N (N = num_train_timesteps). Dividing by
n(s) = sqrt((1 - s)^2 + s^2) makes it variance preserving:

    x_vp = x_s / n(s) = sqrt(ab) x_0 + sqrt(1 - ab) eps,   ab(s) = (1 - s)^2 / ((1 - s)^2 + s^2),

and the velocity gives eps and x_0 (from x_s = (1 - s) x_0 + s eps and v = eps - x_0):

    eps = x_s + (1 - s) v,     x_0 = x_s - s v            (`velocity_to_eps`).

So `FlowEps(x_vp, t)` = x_s + (1 - s_t) v(x_s, s_t N) with x_s = n(s_t) x_vp, and every method that works with
eps works with the velocity field. Deterministic DDIM (eta = 0) on the VP-equivalent schedule *is* the flow-match
Euler step: with x0h and e as above, x'_vp = sqrt(ab') x0h + sqrt(1 - ab') e is, times n(s'),
x'_s = (1 - s') x0h + s' e = x_s + (s' - s) v, diffusers' FlowMatchEulerDiscreteScheduler.step (no
stochastic_sampling). The two loops agree to float rounding on the same sigmas (tests/denoisers/test_flow.py).

Our integer grid. T = N and t = 0..N stands for u_t = t / N (diffusers' training grid timesteps/N, i = 1..N),
shifted as the scheduler shifts it, s_t = shift u_t / (1 + (shift - 1) u_t) (static `shift`), so the UNet is
called with timestep s_t N exactly as the pipeline calls it. Except at t = T: u = 1 is pure noise, ab = 0, where
x_0 has no Tweedie estimate x0h = (x - sqrt(1 - ab) e) / sqrt(ab) (the suite's VPSchedule refuses a zero
terminal SNR), so t = T stands for u_T = 1 - 1 / (2 N), half a training step short of pure noise (N = 1000,
shift 3: s_T = 0.99983, ab_T = 2.8e-8). The sampler's x_T ~ N(0, I) then differs from diffusers' pure-noise start
by O(1 - s_T) (tests: the gap to diffusers' own default loop shrinks as the steps grow).

Refused: dynamic shifting (use_dynamic_shifting: its mu depends on the image token count of a transformer; at a
fixed size it is a static shift, which benchmark.denoisers.latent_flow reads for SD3-style transformers) and
invert_sigmas. Inference-only sigma options (use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas,
shift_terminal) change only the inference sequence, not the model, and are ignored: the suite's sampler uses its
own uniform grid on t. Models: an unconditional diffusers UNet2DModel (x, timestep) -> v; text-conditional latent
flow transformers (SD3 / SD3.5, Flux) run through the same FlowEps in benchmark.denoisers.latent_flow.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from benchmark.denoisers.base import DenoiserLoader, Loaded
from benchmark.diffusion.schedules import VPSchedule

FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")


def velocity_to_eps(v: torch.Tensor, x_s: torch.Tensor, s) -> torch.Tensor:
    """eps = x_s + (1 - s) v at x_s = (1 - s) x_0 + s eps, v = eps - x_0 (s a float or broadcasting tensor)."""
    return x_s + (1 - s) * v


def vp_scale(s) -> torch.Tensor | float:
    """n(s) = sqrt((1 - s)^2 + s^2): x_s = n(s) x_vp."""
    if isinstance(s, torch.Tensor):
        return ((1 - s) ** 2 + s ** 2).sqrt()
    return math.sqrt((1 - s) ** 2 + s ** 2)


def flow_alpha_bar(s: torch.Tensor) -> torch.Tensor:
    """ab(s) = (1 - s)^2 / ((1 - s)^2 + s^2), the VP alpha-bar of flow level s."""
    return (1 - s) ** 2 / ((1 - s) ** 2 + s ** 2)


def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The scheduler's static time shift s = shift u / (1 + (shift - 1) u) (SD3, Esser et al. 2024 eq. 23)."""
    return shift * u / (1 + (shift - 1) * u)


def flow_sigmas(N: int, shift: float = 1.0) -> torch.Tensor:
    """s_t for t = 0..N (float64): shift(u_t), u_t = t / N, with u_N = 1 - 1 / (2 N) (module docstring)."""
    if N < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {N}")
    if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
        raise ValueError(f"flow-match shift must be a finite number > 0, got {shift!r}")
    u = torch.arange(N + 1, dtype=torch.float64) / N
    u[-1] = 1 - 0.5 / N
    return shift_sigmas(u, float(shift))


def flow_schedule(sigmas: torch.Tensor, name: str = "flow") -> VPSchedule:
    """The VP-equivalent schedule ab[t] = ab(s_t), t = 0..T, of flow levels s_0 = 0 < s_1 < ... < s_T < 1."""
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    if s[0] != 0:
        raise ValueError(f"flow levels must start at s_0 = 0 (the data), got {s[0].item()}")
    return VPSchedule.from_alphas_cumprod(flow_alpha_bar(s[1:]), name)


class FlowEps(nn.Module):
    """eps(x_vp, t) of a velocity model v(x_s, timestep): (x [B, ...], t [B] long in 1..T) -> eps (module docstring).

    `model(x_s, timestep)` returns v (a tensor or an object with `.sample`, as diffusers models do); it is
    called with the float timestep s_t * N, as diffusers' flow pipelines call it."""

    def __init__(self, model: nn.Module, sigmas: torch.Tensor, num_train_timesteps: int):
        super().__init__()
        self.model = model
        self.N = int(num_train_timesteps)
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float64), persistent=False)
        self.T = self.sigmas.numel() - 1

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).long()
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if bool(((t < 1) | (t > self.T)).any()):
            raise ValueError(f"timesteps must lie in 1..T={self.T}, got {sorted(set(t.tolist()))}")
        s = self.sigmas.to(x.device)[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        x_s = vp_scale(s) * x
        dtype = getattr(self.model, "dtype", x.dtype)
        out = self.model(x_s.to(dtype), (s.flatten() * self.N).to(dtype))
        v = getattr(out, "sample", out).to(x.dtype)
        return velocity_to_eps(v, x_s, s)


def _config_digest(files) -> str:
    """sha256 of the lines `<name> <sha256>` of the given files (weights and scheduler config)."""
    from benchmark.denoisers.hf import _sha256

    return hashlib.sha256("".join(f"{p.name} {_sha256(p)}\n" for p in files).encode()).hexdigest()


def load_flow(source: str, device: str = "cpu", *, local_files_only: bool = True, subfolder: str | None = None,
              cache_dir: str | None = None) -> tuple[nn.Module, VPSchedule, dict]:
    """(eps-model, VP-equivalent schedule, info) of a diffusers UNet2DModel trained for flow matching with a
    FlowMatchEulerDiscreteScheduler config; the same folder layouts and local-only resolution as
    benchmark.denoisers.hf.load_diffusers (nothing is downloaded)."""
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("the diffusers_flow loader needs the `diffusers` package: pip install diffusers") from err
    from benchmark.denoisers.hf import _MODEL_CONFIG, _locate, _read_json, _resolve, load_pretrained, weights_sha256

    root = _resolve(source, local_files_only=local_files_only, cache_dir=cache_dir)
    model_dir, scheduler_file, layout = _locate(root, subfolder, source)
    config = _read_json(scheduler_file)
    kind = str(config.get("_class_name", ""))
    if kind not in FLOW_SCHEDULERS:
        raise ValueError(f"diffusers_flow source {source!r}: the scheduler in {scheduler_file} is {kind or 'unnamed'}, "
                         f"not a flow-match scheduler ({', '.join(FLOW_SCHEDULERS)}); use loader 'diffusers'")
    for key in ("use_dynamic_shifting", "invert_sigmas"):
        if config.get(key):
            raise ValueError(f"diffusers_flow source {source!r}: {key} = true is not supported (its sigmas depend on "
                             "the image size or are inverted)")
    model_config = _read_json(model_dir / _MODEL_CONFIG)
    if model_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ValueError(f"diffusers_flow source {source!r}: the model is a {model_config.get('_class_name')}; only an "
                         "unconditional UNet2DModel is supported (conditional flow transformers are not yet)")
    unet, files, safe = load_pretrained("UNet2DModel", model_dir)
    N = int(config.get("num_train_timesteps", 1000))
    shift = float(config.get("shift", 1.0))
    sigmas = flow_sigmas(N, shift)
    schedule = flow_schedule(sigmas, f"flow:shift={shift:g}")
    model = FlowEps(unet, sigmas, N).to(device).eval().requires_grad_(False)
    size = unet.config.sample_size
    info = {
        "source": str(source), "path": str(root), "model_path": str(model_dir), "scheduler_path": str(scheduler_file),
        "layout": layout, "file": str(files[0]) if len(files) == 1 else str(model_dir),
        "weights": ",".join(p.name for p in files), "weights_sha256": weights_sha256(files),
        # the schedule is part of the model here: the digest covers the weights and the scheduler config
        "sha256": _config_digest([*files, scheduler_file]), "safetensors": safe,
        "prediction_type": "flow_velocity", "shift": shift, "T": N, "s_T": float(sigmas[-1]),
        "sample_size": int(size) if isinstance(size, int) else list(size),
        "in_channels": int(unet.config.in_channels), "out_channels": int(unet.config.out_channels),
        "num_parameters": sum(p.numel() for p in unet.parameters()), "scheduler": kind,
        "diffusers_version": diffusers.__version__,
    }
    return model, schedule, info


class DiffusersFlowLoader(DenoiserLoader):
    """`diffusers_flow`: a flow-matching diffusers UNet2DModel (FlowMatchEulerDiscreteScheduler config) on the
    VP-equivalent schedule (`load_flow`); source: a local folder or a model id in the local Hugging Face cache."""

    reads = ()

    @classmethod
    def load(cls, spec, task, device):
        model, schedule, info = load_flow(spec.denoiser.source, device)
        shape = (info["in_channels"], info["sample_size"], info["sample_size"])
        if isinstance(info["sample_size"], int) and tuple(task.shape) != shape:
            raise ValueError(f"flow model {spec.denoiser.source!r} makes images of shape {list(shape)}, task "
                             f"{spec.task!r} has shape {list(task.shape)}")
        record = {k: v for k, v in info.items() if v is None or isinstance(v, (bool, int, float, str))}
        return Loaded(model, schedule, {"denoiser": record})


__all__ = ["DiffusersFlowLoader", "FlowEps", "flow_alpha_bar", "flow_schedule", "flow_sigmas", "load_flow",
           "shift_sigmas", "velocity_to_eps", "vp_scale"]
