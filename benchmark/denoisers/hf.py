"""Hugging Face diffusers `UNet2DModel`s as denoisers: every guidance method runs on them unchanged.

`load_diffusers(source)` returns (eps-model, VPSchedule, info): the eps-model has the call signature of
the suite's own networks, (x [B, C, H, W], t [B] long) -> eps [B, C, H, W]; the schedule is the
scheduler's `alphas_cumprod`; info names the checkpoint (sha256 of its weights) for the results.

Timestep convention. Our schedules index noise levels t = 0..T with ab[0] = 1 (the data) and
ab[t] = prod_{s=1..t} (1 - beta_s); `timestep_grid` runs T -> 0 and the `Sampler` calls the
denoiser (through `CountingDenoiser`, which passes t as a LongTensor [B] filled with step.t) only at
the grid's t >= 1, never at t = 0. A diffusers scheduler indexes its `num_train_timesteps` = T
training levels i = 0..T-1 with alphas_cumprod[i] = prod_{j=0..i} (1 - betas[j]), and its UNet is
trained on x_i with that alpha-bar, taking `timestep` = i. So

    our t (1..T)  <->  diffusers timestep i = t - 1,   ab[t] = alphas_cumprod[t - 1],

i.e. the schedule is ab = [1, alphas_cumprod] (`VPSchedule.from_alphas_cumprod`) and the wrapper
calls the UNet with t - 1. Our DDIM grid T, T - T/S, ..., T/S, 0 with S steps is diffusers'
DDIMScheduler with `timestep_spacing="trailing"` (timesteps T-1, T-1-T/S, ..., T/S-1) and
`set_alpha_to_one=True` (the last step lands on alpha-bar 1), when S divides T.

Loading is local only unless asked: `source` is a directory, or a model id resolved in the local
Hugging Face cache (`local_files_only=True`); a model that is not there is a ValueError saying
how to fetch it, never a download. Weights are read from safetensors when the folder has them,
else from diffusion_pytorch_model.bin through diffusers' `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from torch import nn

from benchmark.diffusion.schedules import VPSchedule

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

_WEIGHTS = "diffusion_pytorch_model"
_MODEL_CONFIG = "config.json"
_SCHEDULER_CONFIG = "scheduler_config.json"
_PIPELINE_INDEX = "model_index.json"


def prediction_to_eps(output: torch.Tensor, x_t: torch.Tensor, ab: torch.Tensor | float,
                      prediction_type: str) -> torch.Tensor:
    """eps from a network's prediction at x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps (ab = alpha-bar_t,
    a float or a tensor broadcasting against x_t):

        epsilon:       eps = output
        v_prediction:  v = sqrt(ab) eps - sqrt(1 - ab) x_0  (Salimans & Ho 2022), so
                       eps = sqrt(ab) v + sqrt(1 - ab) x_t
        sample:        x_0 = output, so  eps = (x_t - sqrt(ab) x_0) / sqrt(1 - ab)

    (the same formulas as diffusers' DDIMScheduler.step uses for its `pred_epsilon`)."""
    if prediction_type == "epsilon":
        return output
    ab = torch.as_tensor(ab, dtype=x_t.dtype, device=x_t.device)
    if prediction_type == "v_prediction":
        return ab.sqrt() * output + (1 - ab).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - ab.sqrt() * output) / (1 - ab).sqrt()
    raise ValueError(f"unknown prediction_type {prediction_type!r}; allowed: {list(PREDICTION_TYPES)}")


class DiffusersEps(nn.Module):
    """eps_theta(x_t, t) of a diffusers UNet2DModel: (x [B, C, H, W], t [B] long in 1..T) -> eps.

    Calls the UNet at diffusers timestep t - 1 (see the module docstring), keeps the first C output
    channels when the UNet also predicts a variance (out_channels = 2 C, the learned-sigma layout)
    and converts its prediction to eps with `prediction_to_eps`."""

    def __init__(self, unet: nn.Module, schedule: VPSchedule, prediction_type: str):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; allowed: {list(PREDICTION_TYPES)}")
        self.unet = unet
        self.prediction_type = prediction_type
        self.T = schedule.T
        self.register_buffer("ab", schedule.ab.float(), persistent=False)
        self.in_channels = int(unet.config.in_channels)
        self.out_channels = int(unet.config.out_channels)
        if self.out_channels not in (self.in_channels, 2 * self.in_channels):
            raise ValueError(f"UNet2DModel has {self.in_channels} input and {self.out_channels} output channels: "
                             "expected out_channels = in_channels (or 2 in_channels with a learned variance)")

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).long()
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if bool(((t < 1) | (t > self.T)).any()):
            raise ValueError(f"timesteps must lie in 1..T={self.T} (our index; diffusers' is t - 1), got "
                             f"{sorted(set(t.tolist()))}")
        dtype = self.unet.dtype
        out = self.unet(x.to(dtype), t - 1).sample.to(x.dtype)
        if self.out_channels != self.in_channels:
            out = out[:, :self.in_channels]
        return prediction_to_eps(out, x, self.ab[t].view(-1, *([1] * (x.dim() - 1))), self.prediction_type)


# --- resolving a source -----------------------------------------------------------------------

def _fetch_hint(source: str) -> str:
    return (f"download it into the Hugging Face cache first, e.g. `hf download {source}` "
            f"(`huggingface-cli download {source}` with huggingface_hub < 1.0), or pass "
            "local_files_only=False to allow a download, or give a local directory")


def _resolve(source: str, *, local_files_only: bool, cache_dir: str | None) -> Path:
    """A local directory as is; else a model id looked up in the local Hugging Face cache (downloaded
    only with local_files_only=False)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ValueError(f"diffusers source {source!r} is a file; give a model folder or a model id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError  # (also huggingface_hub.errors since 0.23)

    try:
        folder = snapshot_download(repo_id=source, cache_dir=cache_dir, local_files_only=local_files_only,
                                   allow_patterns=["*.json", "*.safetensors", "*.bin"])
    except HFValidationError as err:
        raise ValueError(f"diffusers source {source!r} is neither an existing directory nor a valid model id "
                         f"({err})") from None
    except Exception as err:  # LocalEntryNotFoundError, RepositoryNotFoundError, network errors, ...
        where = "in the local Hugging Face cache" if local_files_only else "on the Hugging Face Hub"
        raise ValueError(f"diffusers model {source!r} is not a local directory and was not found {where}"
                         f"{f' ({cache_dir})' if cache_dir else ''}: {_fetch_hint(source)}. "
                         f"[{type(err).__name__}]") from None
    return Path(folder).resolve()


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _locate(root: Path, subfolder: str | None, source: str) -> tuple[Path, Path, str]:
    """(model folder, scheduler config file, layout) for a pipeline folder (model_index.json with the
    UNet and scheduler in subfolders, as DDPMPipeline.save_pretrained writes) or a flat model folder
    (config.json + scheduler_config.json side by side)."""
    if subfolder is not None:
        model_dir, layout = root / subfolder, "subfolder"
        candidates = [model_dir / _SCHEDULER_CONFIG, root / "scheduler" / _SCHEDULER_CONFIG, root / _SCHEDULER_CONFIG]
    elif (root / _PIPELINE_INDEX).is_file() and not (root / _MODEL_CONFIG).is_file():
        index = _read_json(root / _PIPELINE_INDEX)
        comps = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, (list, tuple))}
        unets = [k for k, v in comps.items() if len(v) == 2 and v[1] == "UNet2DModel"]
        scheds = [k for k, v in comps.items() if len(v) == 2 and "Scheduler" in str(v[1])]
        if not unets:
            raise ValueError(f"diffusers pipeline {source!r} has no UNet2DModel component "
                             f"(model_index.json lists {comps}); only UNet2DModel pipelines are supported")
        model_dir, layout = root / unets[0], "pipeline"
        candidates = [root / s / _SCHEDULER_CONFIG for s in scheds or ["scheduler"]]
    else:
        model_dir, layout = root, "flat"
        candidates = [root / _SCHEDULER_CONFIG, root / "scheduler" / _SCHEDULER_CONFIG]
    if not (model_dir / _MODEL_CONFIG).is_file():
        raise ValueError(f"diffusers source {source!r} ({root}): no {_MODEL_CONFIG} in {model_dir}; expected a "
                         f"pipeline folder ({_PIPELINE_INDEX} with unet/ and scheduler/) or a model folder "
                         f"({_MODEL_CONFIG} + {_SCHEDULER_CONFIG})")
    for c in candidates:
        if c.is_file():
            return model_dir, c, layout
    raise ValueError(f"diffusers source {source!r} ({root}): no {_SCHEDULER_CONFIG} found (looked at "
                     f"{[str(c) for c in candidates]}); the noise schedule of the model is unknown without it")


def _weight_files(model_dir: Path) -> tuple[list[Path], bool]:
    """The weights diffusers loads from `model_dir` (safetensors preferred, sharded or not) and whether
    they are safetensors."""
    for ext, safe in (("safetensors", True), ("bin", False)):
        single = model_dir / f"{_WEIGHTS}.{ext}"
        if single.is_file():
            return [single], safe
        index = model_dir / f"{_WEIGHTS}.{ext}.index.json"
        if index.is_file():
            shards = sorted(set(_read_json(index)["weight_map"].values()))
            return [model_dir / s for s in shards], safe
    raise ValueError(f"no {_WEIGHTS}.safetensors or {_WEIGHTS}.bin in {model_dir}")


def load_pretrained(cls_name: str, model_dir: Path):
    """(model, weight files, whether they are safetensors): diffusers' `cls_name` (e.g. UNet2DModel) from the local
    folder `model_dir` only, safetensors preferred; the one loader of hf.py, flow.py and latent.py."""
    import diffusers

    files, safe = _weight_files(model_dir)
    # low_cpu_mem_usage needs `accelerate`; without it diffusers falls back (with a warning) to False.
    low_mem = importlib.util.find_spec("accelerate") is not None
    model = getattr(diffusers, cls_name).from_pretrained(model_dir, use_safetensors=safe, local_files_only=True,
                                                         low_cpu_mem_usage=low_mem)
    return model, files, safe


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(files: list[Path]) -> str:
    """The sha256 of the weights file; of several shards, the sha256 of the lines "<name> <sha256>\\n"
    of the shards in name order."""
    if len(files) == 1:
        return _sha256(files[0])
    return hashlib.sha256("".join(f"{p.name} {_sha256(p)}\n" for p in sorted(files)).encode()).hexdigest()


def _load_scheduler(config_file: Path):
    """The scheduler of `config_file` (its own class when it has alphas_cumprod, else a DDPMScheduler
    built from the same betas configuration)."""
    import diffusers

    config = _read_json(config_file)
    cls = getattr(diffusers, str(config.get("_class_name", "DDPMScheduler")), None)
    if cls is not None and hasattr(cls, "from_config"):
        try:
            scheduler = cls.from_config(config)
            if hasattr(scheduler, "alphas_cumprod"):
                return scheduler, config
        except Exception:  # an unknown or exotic scheduler: fall back to the betas configuration
            pass
    return diffusers.DDPMScheduler.from_config(config), config


def load_diffusers(source: str, device: str = "cpu", *, local_files_only: bool = True,
                   subfolder: str | None = None, cache_dir: str | None = None,
                   trainable: bool = False) -> tuple[nn.Module, VPSchedule, dict]:
    """(eps-model, schedule, info) of a diffusers UNet2DModel and its scheduler.

    source: a local directory (a pipeline folder with model_index.json, unet/ and scheduler/, or a
        flat model folder with config.json, the weights and scheduler_config.json), or a model id
        (e.g. "google/ddpm-cifar10-32") looked up in the local Hugging Face cache (`cache_dir`, default
        the user's); nothing is downloaded unless local_files_only=False.
    subfolder: the UNet's folder inside `source` when it is neither layout's default.
    trainable: leave the parameters trainable and the module in train mode (default: eval mode,
        requires_grad_(False); guidance methods take VJPs w.r.t. x only).

    The model maps (x [B, C, H, W], t [B] long in 1..T) -> eps (see `DiffusersEps`); the schedule is
    ab = [1, scheduler.alphas_cumprod] (T = num_train_timesteps). info: source, path (the resolved
    folder), model_path, scheduler_path, layout, file (the weights file), weights, sha256,
    safetensors, prediction_type, sample_size, in_channels, out_channels, num_parameters, T,
    scheduler, beta_schedule, diffusers_version."""
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("the diffusers loader needs the `diffusers` package: pip install diffusers") from err

    root = _resolve(source, local_files_only=local_files_only, cache_dir=cache_dir)
    model_dir, scheduler_file, layout = _locate(root, subfolder, source)
    model_config = _read_json(model_dir / _MODEL_CONFIG)
    class_name = model_config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"diffusers source {source!r}: the model in {model_dir} is a {class_name}, not a "
                         "UNet2DModel (text- or class-conditional UNets are not supported)")
    if model_config.get("num_class_embeds") is not None or model_config.get("class_embed_type") is not None:
        raise ValueError(f"diffusers source {source!r}: a class-conditional UNet2DModel (num_class_embeds / "
                         "class_embed_type) needs class labels, which the eps-model interface has no place for")
    unet, files, safe = load_pretrained("UNet2DModel", model_dir)
    scheduler, scheduler_config = _load_scheduler(scheduler_file)
    if "FlowMatch" in str(scheduler_config.get("_class_name", "")):  # a velocity model read as eps would be wrong
        raise ValueError(f"diffusers source {source!r} is a flow-matching model ({scheduler_config['_class_name']}): "
                         "use loader 'diffusers_flow' (benchmark/denoisers/flow.py)")
    prediction_type = str(scheduler_config.get("prediction_type", "epsilon"))
    T = int(scheduler.config.num_train_timesteps)
    ab = scheduler.alphas_cumprod
    if len(ab) != T:
        raise ValueError(f"scheduler of {source!r}: {len(ab)} alphas_cumprod for num_train_timesteps = {T}")
    schedule = VPSchedule.from_alphas_cumprod(ab, f"diffusers:{scheduler_config.get('beta_schedule', 'custom')}")

    model = DiffusersEps(unet, schedule, prediction_type).to(device)
    if trainable:
        model.train()
    else:
        model.eval().requires_grad_(False)

    size = unet.config.sample_size
    info = {
        "source": str(source),
        "path": str(root),
        "model_path": str(model_dir),
        "scheduler_path": str(scheduler_file),
        "layout": layout,
        "file": str(files[0]) if len(files) == 1 else str(model_dir),
        "weights": ",".join(p.name for p in files),
        "sha256": weights_sha256(files),
        "safetensors": safe,
        "prediction_type": prediction_type,
        "sample_size": int(size) if isinstance(size, int) else list(size),
        "in_channels": int(unet.config.in_channels),
        "out_channels": int(unet.config.out_channels),
        "num_parameters": sum(p.numel() for p in unet.parameters()),
        "T": T,
        "scheduler": type(scheduler).__name__,
        "beta_schedule": str(scheduler_config.get("beta_schedule", "")),
        "diffusers_version": diffusers.__version__,
    }
    return model, schedule, info


__all__ = ["DiffusersEps", "PREDICTION_TYPES", "load_diffusers", "prediction_to_eps", "weights_sha256"]
