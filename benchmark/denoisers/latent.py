"""Latent diffusion (a Stable-Diffusion-style pipeline folder) as an eps-model in latent space.

A pipeline folder as StableDiffusionPipeline.save_pretrained writes it: model_index.json naming an
AutoencoderKL (`vae`), a UNet2DConditionModel (`unet`) and a scheduler (`scheduler`), each in its subfolder;
text_encoder / tokenizer are optional (only to compute prompt embeddings, needing `transformers`). Nothing is
downloaded: a local folder or a model id in the local Hugging Face cache (benchmark.denoisers.hf). A folder whose
network is a latent flow transformer (SD3 / SD3.5: SD3Transformer2DModel; Flux: FluxTransformer2DModel; in
`transformer`, with a flow-match scheduler) is read by the same functions and runs through
benchmark.denoisers.latent_flow.

The eps-model (`LatentEps`) takes latents z [B, C, h, w] and t [B] (our t = diffusers timestep + 1, ab =
[1, alphas_cumprod], as benchmark.denoisers.hf) and returns classifier-free guided eps (Ho & Salimans 2022, eq. 6
in the eps form StableDiffusionPipeline uses):

    eps = eps_u + w (eps_c - eps_u),   eps_c = eps(z, t, c_prompt),  eps_u = eps(z, t, c_negative)

with w the guidance scale (the sampling setting `cfg`, benchmark.spec.Sampling; null: DEFAULT_CFG); w = 1 is the conditional model alone (one UNet evaluation). For w != 1 a
forward runs the UNet once on the batch of 2 B rows [z; z] with [c_negative; c_prompt] (as the pipeline does),
so one counted denoiser forward (benchmark.diffusion.counting.CountingDenoiser: B per call) is 2 UNet
evaluations, and one counted VJP backpropagates through both halves: 2 UNet VJPs. The factor is the same for
every method, so equal-compute comparisons stay fair; `network_evals_per_forward` (2, or 1 at w = 1) says it and
`network_evals` counts the UNet rows actually run. A v_prediction UNet's output is converted after the CFG
combination (prediction_to_eps is affine in the output, so this equals converting each half).

Conditioning: precomputed text embeddings, a safetensors file with `prompt_embeds` [P, L, D] (one per prompt of
the prompt file, in order) and optionally `negative_prompt_embeds` [P or 1, L, D] (the empty prompt's embedding
for plain CFG; needed when w != 1); SD3 and Flux also take `pooled_prompt_embeds` [P, D'] and
`negative_pooled_prompt_embeds` [P or 1, D'] (`PromptEmbeds`). Made once with the user's text encoder
(`encode_prompts`, or `python -m benchmark.denoisers.latent embed PIPELINE PROMPTS OUT`, both needing
`transformers`). `prompt` picks the conditioning: an index k (every row uses prompt k; robust to any batch layout)
or "all" (row j uses prompt (j mod chains) mod P, the suite's convention for per-chain parameters: a batch is
stacked copies of the chains, benchmark.objectives.base.Objective.chain_index).

Decode: images = vae.decode(z / scaling_factor + shift_factor) (StableDiffusionPipeline's decode, shift_factor 0;
SD3's and Flux's with theirs), in [-1, 1] up to the VAE's
error (not clamped, so rewards keep their gradient); `VaeDecoder`. Rewards apply to decoded images, so the decode
is part of the objective (benchmark.tasks.latent): CountingObjective counts one objective evaluation per decoded
latent and one objective gradient per VJP through decode + reward.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from benchmark.denoisers.base import DenoiserLoader, Loaded
from benchmark.diffusion.schedules import VPSchedule

#: The guidance scale w when the sampling setting `cfg` is null: StableDiffusionPipeline's default.
DEFAULT_CFG = 7.5

UNET_CLASS, VAE_CLASS = "UNet2DConditionModel", "AutoencoderKL"
SD3_CLASS, FLUX_CLASS = "SD3Transformer2DModel", "FluxTransformer2DModel"
#: The denoising networks a pipeline folder may hold: a UNet (here) or a latent flow transformer (latent_flow.py).
BACKBONES = (UNET_CLASS, SD3_CLASS, FLUX_CLASS)


#: The safetensors keys of PromptEmbeds' fields, in order (diffusers' pipeline argument names).
EMBED_KEYS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


class PromptEmbeds(NamedTuple):
    """Text conditioning of P prompts: cond [P, L, D], neg [P or 1, L, D] or None; pooled [P, D'] and neg_pooled
    [P or 1, D'] (SD3's and Flux's pooled CLIP embeddings) or None."""

    cond: torch.Tensor
    neg: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    neg_pooled: torch.Tensor | None = None


# --- prompts and their embeddings -------------------------------------------------------------------

def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a file: `.txt` one per line (blank lines and lines starting with '#' skipped), or `.json`
    a list of strings or of objects with a "prompt" key (GenEval / DrawBench-style lists), or {"prompts": [...]}."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file {str(path)!r} does not exist")
    if path.suffix.lower() == ".json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = data.get("prompts")
        if not isinstance(data, list):
            raise ValueError(f"prompt file {str(path)!r}: expected a JSON list of prompts or {{\"prompts\": [...]}}")
        prompts = [d.get("prompt") if isinstance(d, dict) else d for d in data]
    else:
        with open(path, encoding="utf-8") as f:
            prompts = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError(f"prompt file {str(path)!r} must hold at least one prompt, each a non-empty string")
    return prompts


def load_prompt_embeds(path: str | Path, count: int | None = None) -> PromptEmbeds:
    """The `PromptEmbeds` of a safetensors file (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds,
    negative_pooled_prompt_embeds; the first required); `count`: the number of prompts they must match."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt embeddings {str(path)!r} do not exist: make them once with your text encoder "
                         "(`python -m benchmark.denoisers.latent embed PIPELINE PROMPTS OUT`, needs transformers)")
    data = load_file(str(path))
    cond, neg, pooled, neg_pooled = (data.get(k) for k in EMBED_KEYS)
    if cond is None or cond.dim() != 3:
        raise ValueError(f"prompt embeddings {str(path)!r}: need a tensor `prompt_embeds` [P, L, D], got "
                         f"{None if cond is None else list(cond.shape)}")
    P = cond.shape[0]
    if count is not None and P != count:
        raise ValueError(f"prompt embeddings {str(path)!r} hold {P} prompts, the prompt file {count}")
    if neg is not None and (neg.dim() != 3 or neg.shape[1:] != cond.shape[1:] or neg.shape[0] not in (1, P)):
        raise ValueError(f"prompt embeddings {str(path)!r}: negative_prompt_embeds {list(neg.shape)} must be "
                         f"[1 or {P}, {cond.shape[1]}, {cond.shape[2]}]")
    if pooled is not None and (pooled.dim() != 2 or pooled.shape[0] != P):
        raise ValueError(f"prompt embeddings {str(path)!r}: pooled_prompt_embeds {list(pooled.shape)} must be "
                         f"[{P}, D']")
    if neg_pooled is not None and (pooled is None or neg_pooled.dim() != 2 or neg_pooled.shape[1] != pooled.shape[1]
                                   or neg_pooled.shape[0] not in (1, P)):
        want = "pooled_prompt_embeds beside it" if pooled is None else f"[1 or {P}, {pooled.shape[1]}]"
        raise ValueError(f"prompt embeddings {str(path)!r}: negative_pooled_prompt_embeds {list(neg_pooled.shape)} "
                         f"needs {want}")
    return PromptEmbeds(*(None if x is None else x.float() for x in (cond, neg, pooled, neg_pooled)))


def encode_prompts(pipeline: str | Path, prompts: list[str], device: str = "cpu",
                   negative: str = "") -> PromptEmbeds:
    """The `PromptEmbeds` of `prompts` (negative: `negative`, [1, ...]) from the pipeline folder's own text encoders.
    Stable Diffusion 1.x/2.x: the CLIP text encoder's last hidden state of tokenizer(max_length, padded), as
    StableDiffusionPipeline.encode_prompt without clip_skip; SD3: StableDiffusion3Pipeline.encode_prompt itself
    (two CLIPs and T5, pooled embeddings too); Flux: FluxPipeline.encode_prompt (T5 tokens, pooled CLIP). The text
    encoders run in float32 whatever dtype their files hold. Needs `transformers` and the folder's text encoders and
    tokenizers."""
    if importlib.util.find_spec("transformers") is None:
        raise ImportError("computing prompt embeddings needs `transformers` (pip install transformers); or give "
                          "precomputed embeddings (task parameter `embeds`: a safetensors file with prompt_embeds "
                          "[P, L, D] and negative_prompt_embeds)")
    root = Path(pipeline)
    if _pipeline_class(root) in _PIPELINE_ENCODERS:
        return _encode_with_pipeline(root, _pipeline_class(root), prompts, device, negative)
    from transformers import CLIPTextModel, CLIPTokenizer

    for sub in ("text_encoder", "tokenizer"):
        if not (root / sub).is_dir():
            raise ValueError(f"pipeline {str(root)!r} has no {sub}/: give precomputed embeddings instead")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True).to(device, torch.float32)
    encoder.eval()

    def embed(texts):
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            return encoder(ids)[0].float().cpu()

    return PromptEmbeds(embed(list(prompts)), embed([negative]))


#: Pipelines whose own encode_prompt makes the embeddings: (how many text encoders, what they are, texts ->
#: (token embeddings, pooled) with the pipeline's defaults: SD3 max_sequence_length 256 and no clip_skip, its negatives
#: not asked for; Flux max_sequence_length 512).
_PIPELINE_ENCODERS = {
    "StableDiffusion3Pipeline": (3, "SD3's three text encoders, T5 included",
                                 lambda pipe, texts, device: pipe.encode_prompt(
                                     texts, None, None, device=device, do_classifier_free_guidance=False)[0::2]),
    "FluxPipeline": (2, "Flux's CLIP and T5 text encoders",
                     lambda pipe, texts, device: pipe.encode_prompt(texts, None, device=device)[:2]),
}


def _encode_with_pipeline(root: Path, cls: str, prompts: list[str], device: str, negative: str) -> PromptEmbeds:
    """The pipeline class `cls`'s own encode_prompt (`_PIPELINE_ENCODERS`) on the folder's text encoders and
    tokenizers only (no transformer, no VAE loaded), for the prompts and the negative prompt (Flux uses the latter
    only with true CFG, not applied here: written for the record)."""
    import diffusers

    n, what, encode = _PIPELINE_ENCODERS[cls]
    for kind in ("text_encoder", "tokenizer"):
        for sub in (kind, *(f"{kind}_{i}" for i in range(2, n + 1))):
            if not (root / sub).is_dir():
                raise ValueError(f"pipeline {str(root)!r} has no {sub}/ (the embed command needs {what}): give "
                                 "precomputed embeddings instead")
    pipe = getattr(diffusers, cls).from_pretrained(root, transformer=None, vae=None,
                                                   local_files_only=True).to(device, torch.float32)
    with torch.no_grad():
        cond, pooled = encode(pipe, list(prompts), device)
        neg, neg_pooled = encode(pipe, [negative], device)
    return PromptEmbeds(*(x.float().cpu() for x in (cond, neg, pooled, neg_pooled)))


# --- the pipeline folder ------------------------------------------------------------------------------

def _pipeline_class(root: Path) -> str:
    """model_index.json's _class_name ("" without one)."""
    from benchmark.denoisers.hf import _PIPELINE_INDEX, _read_json

    index_file = root / _PIPELINE_INDEX
    return str(_read_json(index_file).get("_class_name", "")) if index_file.is_file() else ""


def _components(root: Path, source: str) -> dict:
    """{"model", "vae", "scheduler"} -> subfolder of a pipeline folder, by the classes model_index.json names,
    and "model_class": the denoising network's class (a key of BACKBONES)."""
    from benchmark.denoisers.hf import _PIPELINE_INDEX, _read_json

    index_file = root / _PIPELINE_INDEX
    if not index_file.is_file():
        raise ValueError(f"latent diffusion source {source!r} ({root}): no {_PIPELINE_INDEX}; expected a "
                         "Stable-Diffusion-style pipeline folder (vae/, unet/ or transformer/, scheduler/)")
    index = _read_json(index_file)
    comps = {k: v[1] for k, v in index.items() if not k.startswith("_") and isinstance(v, (list, tuple))
             and len(v) == 2 and v[1]}
    found = {}
    for role, test, what in (("model", lambda c: c in BACKBONES, ", ".join(BACKBONES)),
                             ("vae", lambda c: c == VAE_CLASS, VAE_CLASS),
                             ("scheduler", lambda c: "Scheduler" in c, "a scheduler")):
        names = [k for k, c in comps.items() if test(str(c))]
        if not names:
            raise ValueError(f"latent diffusion source {source!r}: model_index.json has no {role} component "
                             f"({what}); it lists {comps}")
        found[role] = root / names[0]
        if role == "model":
            found["model_class"] = str(comps[names[0]])
    return found


def _load_model(cls_name: str, folder: Path):
    from benchmark.denoisers.hf import load_pretrained

    model, files, _ = load_pretrained(cls_name, folder)
    return model.eval().requires_grad_(False), files


def _digest(files: list[Path]) -> str:
    from benchmark.denoisers.hf import _sha256

    return hashlib.sha256("".join(f"{p.parent.name}/{p.name} {_sha256(p)}\n" for p in files).encode()).hexdigest()


def resolve_pipeline(source: str, *, local_files_only: bool = True, cache_dir: str | None = None) -> tuple[Path, dict]:
    """(pipeline root, {role: subfolder}) of a local folder or a model id in the local Hugging Face cache."""
    try:
        import diffusers  # noqa: F401
    except ImportError as err:
        raise ImportError("latent diffusion needs the `diffusers` package: pip install diffusers") from err
    from benchmark.denoisers.hf import _resolve

    root = _resolve(source, local_files_only=local_files_only, cache_dir=cache_dir)
    return root, _components(root, source)


class VaeDecoder(nn.Module):
    """D(z) = vae.decode(z / scaling_factor + shift_factor).sample: latents [B, C, h, w] -> images [B, 3, H, W] in
    ~[-1, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dtype = self.vae.dtype
        z = z / self.scaling_factor + self.shift_factor
        return self.vae.decode(z.to(dtype)).sample.to(z.dtype)


def load_vae(source: str, device: str = "cpu") -> tuple[VaeDecoder, dict]:
    """The pipeline's VAE decoder and its record {"file", "sha256", "scaling_factor", ...}."""
    _, comps = resolve_pipeline(source)
    vae, files = _load_model(VAE_CLASS, comps["vae"])
    dec = VaeDecoder(vae).to(device)
    return dec, {"file": str(comps["vae"]), "sha256": _digest(files), "scaling_factor": dec.scaling_factor,
                 "latent_channels": int(vae.config.latent_channels),
                 "downsample": 2 ** (len(vae.config.block_out_channels) - 1)}


def pipeline_latent_shape(source: str) -> tuple[int, int, int]:
    """(C, h, w) of the network's latents, read from unet/ or transformer/config.json (no weights loaded). A Flux
    transformer takes 2x2-packed latents (in_channels = 4 C) and names no size: h, w are the VAE's sample_size
    (FluxPipeline's default 1024 px) over its downsampling factor."""
    return _latent_shape(resolve_pipeline(source)[1])


def _latent_shape(comps: dict) -> tuple[int, int, int]:
    """pipeline_latent_shape of a resolved folder's components (`_components`)."""
    from benchmark.denoisers.hf import _MODEL_CONFIG, _read_json

    cfg = _read_json(comps["model"] / _MODEL_CONFIG)
    if comps["model_class"] == FLUX_CLASS:
        vae = _read_json(comps["vae"] / _MODEL_CONFIG)
        down = 2 ** (len(vae.get("block_out_channels", (0,) * 4)) - 1)
        size = vae.get("sample_size", 1024)
        h, w = (size, size) if isinstance(size, int) else size
        return int(cfg.get("in_channels", 64)) // 4, int(h) // down, int(w) // down
    size = cfg.get("sample_size", 64)
    h, w = (size, size) if isinstance(size, int) else size
    return int(cfg.get("in_channels", 4)), int(h), int(w)


def prompt_rows(prompt: int | str, chains: int | None, P: int, B: int, device) -> torch.Tensor:
    """The prompt index [B] of each row of a batch of B: prompt k for every row, or for "all" row j -> chain
    j mod chains -> prompt (j mod chains) mod P (the module docstring)."""
    if prompt != "all":
        return torch.full((B,), prompt, device=device, dtype=torch.long)
    n = chains or B
    if B % n:
        raise ValueError(f"prompt 'all' reads row j as chain j mod {n}; a batch of {B} rows is not stacked "
                         "copies of the chains")
    return (torch.arange(B, device=device) % n) % P


def check_prompt(prompt: int | str, P: int) -> None:
    if prompt != "all" and not (isinstance(prompt, int) and not isinstance(prompt, bool) and 0 <= prompt < P):
        raise ValueError(f"prompt must be 'all' or an index in 0..{P - 1}, got {prompt!r}")


def cfg_combine(out: torch.Tensor, cfg: float) -> torch.Tensor:
    """out_u + w (out_c - out_u) of a network output on the batch [uncond; cond] (Ho & Salimans 2022, eq. 6)."""
    out_u, out_c = out.chunk(2)
    return out_u + cfg * (out_c - out_u)


class LatentEps(nn.Module):
    """Classifier-free guided eps of a UNet2DConditionModel: (z [B, C, h, w], t [B] long in 1..T) -> eps
    (module docstring). cond [P, L, D], uncond [P or 1, L, D] or None; prompt: an index or "all"; chains: the
    cell's chains (rows j -> chain j mod chains) for prompt "all". `network_evals` counts the UNet rows run,
    `network_evals_per_forward` per counted forward (2, or 1 at cfg = 1)."""

    def __init__(self, unet: nn.Module, schedule: VPSchedule, prediction_type: str, cond: torch.Tensor,
                 uncond: torch.Tensor | None = None, cfg: float = DEFAULT_CFG, prompt: int | str = 0,
                 chains: int | None = None):
        super().__init__()
        from benchmark.denoisers.hf import PREDICTION_TYPES

        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; allowed: {list(PREDICTION_TYPES)}")
        if cfg != 1 and uncond is None:
            raise ValueError(f"classifier-free guidance scale {cfg} != 1 needs negative_prompt_embeds (the empty "
                             "prompt's embedding for plain CFG)")
        check_prompt(prompt, cond.shape[0])
        self.unet, self.prediction_type, self.cfg = unet, prediction_type, float(cfg)
        self.prompt, self.chains, self.T = prompt, chains, schedule.T
        self.register_buffer("ab", schedule.ab.float(), persistent=False)
        self.register_buffer("cond", cond.float(), persistent=False)
        self.register_buffer("uncond", (uncond if uncond is not None else cond[:1]).float(), persistent=False)
        self.network_evals_per_forward = 1 if self.cfg == 1 else 2
        self.network_evals = 0

    def conditioning(self, B: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(c [B, L, D], c_neg [B, L, D]) of the rows of a batch of B."""
        idx = prompt_rows(self.prompt, self.chains, self.cond.shape[0], B, device)
        return self.cond[idx], self.uncond[idx % self.uncond.shape[0]]

    def forward(self, z: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        from benchmark.denoisers.hf import prediction_to_eps

        t = torch.as_tensor(t, device=z.device).long()
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        if bool(((t < 1) | (t > self.T)).any()):
            raise ValueError(f"timesteps must lie in 1..T={self.T}, got {sorted(set(t.tolist()))}")
        B, dtype = z.shape[0], self.unet.dtype
        c, c_neg = self.conditioning(B, z.device)
        if self.network_evals_per_forward == 1:
            out = self.unet(z.to(dtype), t - 1, encoder_hidden_states=c.to(dtype)).sample.to(z.dtype)
        else:   # one UNet call on [z; z] with [negative; prompt], as StableDiffusionPipeline batches CFG
            out = cfg_combine(self.unet(torch.cat([z, z]).to(dtype), torch.cat([t, t]) - 1,
                                        encoder_hidden_states=torch.cat([c_neg, c]).to(dtype)).sample.to(z.dtype),
                              self.cfg)
        self.network_evals += self.network_evals_per_forward * B
        return prediction_to_eps(out, z, self.ab[t].view(-1, *([1] * (z.dim() - 1))), self.prediction_type)


def load_latent_unet(source: str, device: str = "cpu") -> tuple[nn.Module, VPSchedule, str, dict]:
    """(UNet2DConditionModel, schedule ab = [1, alphas_cumprod], prediction_type, record) of a pipeline folder."""
    import diffusers

    from benchmark.denoisers.hf import _SCHEDULER_CONFIG, _load_scheduler

    root, comps = resolve_pipeline(source)
    if comps["model_class"] != UNET_CLASS:
        raise ValueError(f"latent diffusion source {source!r}: its network is a {comps['model_class']}, not a "
                         f"{UNET_CLASS} (benchmark.denoisers.latent_flow.load_latent_flow loads it)")
    unet, files = _load_model(UNET_CLASS, comps["model"])
    scheduler_file = comps["scheduler"] / _SCHEDULER_CONFIG
    if not scheduler_file.is_file():
        raise ValueError(f"latent diffusion source {source!r}: no {scheduler_file}")
    scheduler, config = _load_scheduler(scheduler_file)
    if "FlowMatch" in str(config.get("_class_name", "")):
        raise ValueError(f"latent diffusion source {source!r}: a {UNET_CLASS} with a flow-match scheduler is not "
                         "supported (latent flow models: an SD3 or Flux transformer, benchmark.denoisers.latent_flow)")
    schedule = VPSchedule.from_alphas_cumprod(scheduler.alphas_cumprod,
                                              f"diffusers:{config.get('beta_schedule', 'custom')}")
    prediction_type = str(config.get("prediction_type", "epsilon"))
    record = {"source": str(source), "path": str(root), "file": str(comps["model"]),
              "sha256": _digest([*files, scheduler_file]), "prediction_type": prediction_type,
              "T": schedule.T, "scheduler": type(scheduler).__name__, "in_channels": int(unet.config.in_channels),
              "latent_shape": list(_latent_shape(comps)),
              "cross_attention_dim": int(unet.config.cross_attention_dim),
              "num_parameters": sum(p.numel() for p in unet.parameters()),
              "diffusers_version": diffusers.__version__}
    return unet.to(device), schedule, prediction_type, record


def latent_unet_model(source: str, embeds: PromptEmbeds, cfg: float | None, prompt: int | str,
                      chains: int | None, device: str) -> tuple[nn.Module, VPSchedule, dict]:
    """(LatentEps, schedule, record) for the diffusers_latent loader; cfg None: DEFAULT_CFG. The embeddings' width
    must be the UNet's cross_attention_dim."""
    unet, schedule, prediction_type, record = load_latent_unet(source, device)
    if embeds.cond.shape[-1] != record["cross_attention_dim"]:
        raise ValueError(f"prompt embeddings have width {embeds.cond.shape[-1]}, the UNet's cross_attention_dim is "
                         f"{record['cross_attention_dim']}: embeddings of another text encoder?")
    w = DEFAULT_CFG if cfg is None else cfg
    model = LatentEps(unet, schedule, prediction_type, embeds.cond, embeds.neg, cfg=w, prompt=prompt,
                      chains=chains).to(device)
    return model, schedule, record | {"cfg": w, "network_evals_per_forward": model.network_evals_per_forward}


class DiffusersLatentLoader(DenoiserLoader):
    """`diffusers_latent`: the denoising network of a latent text-to-image pipeline folder with classifier-free
    guidance, on the `latent` task (benchmark.tasks.latent), whose parameters give the prompts, their embeddings
    and which prompt: a UNet2DConditionModel (Stable Diffusion 1.x/2.x, `latent_unet_model`), an
    SD3Transformer2DModel (SD3 / SD3.5) or a FluxTransformer2DModel (flow models: benchmark.denoisers.latent_flow),
    by model_index.json. The guidance scale is the sampling setting `cfg` (one value per experiment; null: the
    pipeline's default, 7.5 for Stable Diffusion, 7.0 for SD3, Flux's embedded guidance 3.5)."""

    reads = ()
    takes_cfg = True

    @classmethod
    def load(cls, spec, task, device):
        if not callable(getattr(task, "conditioning", None)):
            raise ValueError(f"denoiser loader 'diffusers_latent' needs the 'latent' task (prompts and their "
                             f"embeddings), not {spec.task!r}")
        source = spec.denoiser.source
        _, comps = resolve_pipeline(source)
        if comps["model_class"] == UNET_CLASS:
            make = latent_unet_model
        else:
            from benchmark.denoisers.latent_flow import latent_flow_model as make
        model, schedule, record = make(source, task.conditioning(), spec.sampling.cfg, task.prompt,
                                       spec.rounds.samples, device)
        shape = record["latent_shape"]
        if list(task.shape) != list(shape):
            raise ValueError(f"the network of {source!r} takes latents of shape {list(shape)}, task {spec.task!r} "
                             f"has shape {list(task.shape)} (its pipeline {getattr(task, 'pipeline', '?')!r})")
        # the decoder the task's rewards apply to is part of the cell too (its digest joins the run_id)
        vae_sha256 = task.decoder()[1]
        return Loaded(model, schedule, {"denoiser": record, "vae": {"file": str(Path(record["path"]) / "vae"),
                                                                    "sha256": vae_sha256}})


def _main(argv: list[str]) -> int:
    """`embed PIPELINE PROMPTS OUT [--device D] [--negative TEXT]`: write OUT (safetensors) from the text encoder."""
    import argparse

    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(prog="python -m benchmark.denoisers.latent")
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="prompt embeddings for the latent task from the pipeline's text encoder")
    e.add_argument("pipeline")
    e.add_argument("prompts")
    e.add_argument("out")
    e.add_argument("--device", default="cpu")
    e.add_argument("--negative", default="", help="the negative prompt (default: empty, plain CFG)")
    args = parser.parse_args(argv)
    root, _ = resolve_pipeline(args.pipeline)
    embeds = encode_prompts(root, read_prompts(args.prompts), args.device, args.negative)
    tensors = {name: x.contiguous() for name, x in zip(EMBED_KEYS, embeds) if x is not None}
    save_file(tensors, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {list(x.shape)}" for k, x in tensors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

__all__ = ["DiffusersLatentLoader", "LatentEps", "PromptEmbeds", "VaeDecoder", "cfg_combine", "encode_prompts",
           "latent_unet_model", "load_latent_unet", "load_prompt_embeds", "load_vae", "pipeline_latent_shape",
           "prompt_rows", "read_prompts", "resolve_pipeline"]
