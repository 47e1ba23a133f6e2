"""Latent flow transformers (Stable Diffusion 3 / 3.5, Flux) as eps-models in latent space.

A pipeline folder as StableDiffusion3Pipeline / FluxPipeline.save_pretrained writes it: model_index.json naming an
AutoencoderKL (`vae`), an SD3Transformer2DModel or FluxTransformer2DModel (`transformer`) and a
FlowMatchEulerDiscreteScheduler (`scheduler`); the text encoders are optional (they only make the prompt
embeddings, benchmark.denoisers.latent.encode_prompts). Nothing is downloaded: a local folder or a model id in the
local Hugging Face cache. The model (Esser et al. 2024, "Scaling rectified flow transformers", eq. 1-3) is trained
on x_s = (1 - s) x_0 + s eps to predict v = eps - x_0, with the text conditioning c [L, D] (SD3: CLIP + T5 tokens;
Flux: T5) and a pooled CLIP embedding p [D'].

SD3 (called at timestep s N, N = num_train_timesteps): classifier-free guidance on the velocity, as
StableDiffusion3Pipeline.__call__ combines it:

    v = v_u + w (v_c - v_u),   v_c = v(x_s, sN; c, p),   v_u = v(x_s, sN; c_neg, p_neg)

one transformer call on [x_s; x_s] with [negative; prompt] (the pipeline's batch), so one counted denoiser forward
is 2 network evaluations (1 at w = 1: the conditional model alone), the same for every method
(`network_evals_per_forward`, `network_evals` as in benchmark.denoisers.latent). w is the sampling setting `cfg`;
null: DEFAULT_CFG = 7.0, StableDiffusion3Pipeline's default. Skip-layer guidance (SD3.5 medium's option, off in the
pipeline by default) is not applied.

Flux (Black Forest Labs 2024; FluxPipeline.__call__): the transformer takes the latents 2x2-packed into tokens
[(h/2)(w/2), 4C] with their position ids (`pack_latents`, `latent_image_ids`; the chains stay unpacked [C, h, w],
a permutation, so the ODE and every method are the same), the timestep s (the pipeline's t / 1000) and, for a
guidance-distilled model (FLUX.1-dev: config guidance_embeds), the guidance scale g as an input: one network
evaluation per counted forward. `cfg` is that g (null: FluxPipeline's 3.5); a model without a guidance embedding
(FLUX.1-schnell) takes cfg null. FluxPipeline's optional true CFG (true_cfg_scale with a negative prompt, off by
default) is not applied.

The velocity becomes an eps-model on the VP-equivalent schedule exactly as for a pixel flow UNet
(benchmark.denoisers.flow.FlowEps: x_s = n(s) x_vp, eps = x_s + (1 - s) v; affine in v, so guiding v and
converting equals converting each half and guiding eps), so every method runs unchanged, and deterministic DDIM
(eta = 0) on that schedule is the pipeline's flow-match Euler loop (tests/denoisers/test_latent_flow.py: each
pipeline's loop on the same sigmas; our grid's t = N stands for u = 1 - 1/(2N), see flow.py).

The shift: the scheduler's static `shift` (SD3: 3.0), or, with use_dynamic_shifting (Flux), the pipeline's
resolution-dependent mu (calculate_shift: linear in the image token count (h/p)(w/p) of the latents (p = 2), from
base_image_seq_len -> base_shift to max_image_seq_len -> max_shift). At a fixed latent size the time shift is a
static one: exp(mu) / (exp(mu) + 1/u - 1) = shift u / (1 + (shift - 1) u) with shift = exp(mu) ('exponential',
FlowMatchEulerDiscreteScheduler.time_shift with sigma = 1), and mu / (mu + 1/u - 1) is the same with shift = mu
('linear') (`effective_shift`). The decode is latent.py's VaeDecoder: vae.decode(z / scaling_factor + shift_factor).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.denoisers.flow import FlowEps, flow_schedule, flow_sigmas
from benchmark.denoisers.latent import (FLUX_CLASS, SD3_CLASS, PromptEmbeds, _digest, _latent_shape, _load_model,
                                        cfg_combine, check_prompt, prompt_rows, resolve_pipeline)
from benchmark.diffusion.schedules import VPSchedule

#: The guidance scale w when the sampling setting `cfg` is null: StableDiffusion3Pipeline's default.
DEFAULT_CFG = 7.0
#: The embedded guidance scale g of a guidance-distilled Flux model when `cfg` is null: FluxPipeline's default.
DEFAULT_FLUX_GUIDANCE = 3.5
#: FluxPipeline calls the transformer at timestep / 1000 (a literal, whatever num_train_timesteps is).
FLUX_TIMESTEP_SCALE = 1000.0
FLOW_MATCH_SCHEDULER = "FlowMatchEulerDiscreteScheduler"


def image_seq_len(latent_hw: tuple[int, int], patch_size: int) -> int:
    """The transformer's image token count (h // p) (w // p) (StableDiffusion3Pipeline, '5. Prepare timesteps')."""
    return (latent_hw[0] // patch_size) * (latent_hw[1] // patch_size)


def calculate_shift(seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                    max_shift: float = 1.15) -> float:
    """mu, linear in the image token count through (base_seq_len, base_shift) and (max_seq_len, max_shift)
    (diffusers' calculate_shift of the SD3 and Flux pipelines)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * m + base_shift - m * base_seq_len


def effective_shift(config: dict, seq_len: int) -> tuple[float, float | None]:
    """(the static shift equal to the scheduler's time shift at this resolution, mu or None) of a flow-match
    scheduler config (module docstring): `shift` without dynamic shifting; exp(mu) ('exponential') or mu ('linear')
    with it."""
    if not config.get("use_dynamic_shifting"):
        return float(config.get("shift", 1.0)), None
    mu = calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    kind = config.get("time_shift_type", "exponential")
    if kind == "exponential":
        return math.exp(mu), mu
    if kind == "linear":
        if mu <= 0:
            raise ValueError(f"a linear time shift needs mu > 0, got mu = {mu:g} at {seq_len} image tokens")
        return float(mu), mu
    raise ValueError(f"unknown time_shift_type {kind!r}; allowed: 'exponential', 'linear'")


class GuidedVelocity(nn.Module):
    """(x_s [B, C, h, w], timestep [B] = s N) -> the classifier-free guided velocity of an SD3Transformer2DModel
    (module docstring). embeds: the prompts' PromptEmbeds (pooled required; the negatives for w != 1); prompt: an
    index or "all" (row j -> chain j mod chains -> prompt (j mod chains) mod P, as latent.LatentEps)."""

    def __init__(self, transformer: nn.Module, embeds: PromptEmbeds, cfg: float = DEFAULT_CFG,
                 prompt: int | str = 0, chains: int | None = None):
        super().__init__()
        cond, neg, pooled, neg_pooled = embeds
        if pooled is None:
            raise ValueError("an SD3 transformer needs pooled_prompt_embeds [P, D'] beside prompt_embeds (the pooled "
                             "CLIP embeddings; `python -m benchmark.denoisers.latent embed` writes them)")
        if cfg != 1 and (neg is None or neg_pooled is None):
            raise ValueError(f"classifier-free guidance scale {cfg} != 1 needs negative_prompt_embeds and "
                             "negative_pooled_prompt_embeds (the empty prompt's, for plain CFG)")
        check_prompt(prompt, cond.shape[0])
        self.transformer, self.cfg, self.prompt, self.chains = transformer, float(cfg), prompt, chains
        self.register_buffer("cond", cond.float(), persistent=False)
        self.register_buffer("pooled", pooled.float(), persistent=False)
        self.register_buffer("uncond", (cond[:1] if neg is None else neg).float(), persistent=False)
        self.register_buffer("uncond_pooled", (pooled[:1] if neg_pooled is None else neg_pooled).float(),
                             persistent=False)
        self.network_evals_per_forward = 1 if self.cfg == 1 else 2
        self.network_evals = 0

    def forward(self, x_s: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        B, dtype = x_s.shape[0], self.transformer.dtype
        idx = prompt_rows(self.prompt, self.chains, self.cond.shape[0], B, x_s.device)
        c, p = self.cond[idx], self.pooled[idx]
        if self.network_evals_per_forward == 1:
            v = self.transformer(hidden_states=x_s.to(dtype), timestep=timestep.float(),
                                 encoder_hidden_states=c.to(dtype), pooled_projections=p.to(dtype)).sample
        else:   # one call on [x_s; x_s] with [negative; prompt], as StableDiffusion3Pipeline batches CFG
            j = idx % self.uncond.shape[0]
            k = idx % self.uncond_pooled.shape[0]
            both = self.transformer(hidden_states=torch.cat([x_s, x_s]).to(dtype),
                                    timestep=torch.cat([timestep, timestep]).float(),   # float32, as the pipeline
                                    encoder_hidden_states=torch.cat([self.uncond[j], c]).to(dtype),
                                    pooled_projections=torch.cat([self.uncond_pooled[k], p]).to(dtype)).sample
            v = cfg_combine(both.to(x_s.dtype), self.cfg)
        self.network_evals += self.network_evals_per_forward * B
        return v.to(x_s.dtype)


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: 2x2 patches as tokens (FluxPipeline._pack_latents)."""
    B, C, h, w = z.shape
    return z.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (h // 2) * (w // 2), C * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of pack_latents: [B, (h/2)(w/2), 4C] -> [B, C, h, w] (FluxPipeline._unpack_latents)."""
    B, _, C4 = x.shape
    return x.view(B, h // 2, w // 2, C4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, C4 // 4, h, w)


def latent_image_ids(h: int, w: int) -> torch.Tensor:
    """The packed tokens' position ids [(h/2)(w/2), 3]: (0, row, column) (FluxPipeline._prepare_latent_image_ids)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


class FluxVelocity(nn.Module):
    """(x_s [B, C, h, w], timestep [B] = s N) -> the velocity of a FluxTransformer2DModel (module docstring):
    packed, called at s N / 1000 (the pipeline's t / 1000), with the embedded guidance g (None: a model without guidance
    embedding), unpacked. embeds: the prompts' PromptEmbeds (pooled required; negatives unused); prompt, chains:
    as GuidedVelocity."""

    def __init__(self, transformer: nn.Module, embeds: PromptEmbeds, guidance: float | None = DEFAULT_FLUX_GUIDANCE,
                 prompt: int | str = 0, chains: int | None = None):
        super().__init__()
        if embeds.pooled is None:
            raise ValueError("a Flux transformer needs pooled_prompt_embeds [P, D'] beside prompt_embeds (the pooled "
                             "CLIP embeddings; `python -m benchmark.denoisers.latent embed` writes them)")
        check_prompt(prompt, embeds.cond.shape[0])
        self.transformer, self.prompt, self.chains = transformer, prompt, chains
        self.guidance = None if guidance is None else float(guidance)
        self.register_buffer("cond", embeds.cond.float(), persistent=False)
        self.register_buffer("pooled", embeds.pooled.float(), persistent=False)
        self.register_buffer("txt_ids", torch.zeros(embeds.cond.shape[1], 3), persistent=False)
        self.network_evals_per_forward = 1
        self.network_evals = 0

    def forward(self, x_s: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        B, _, h, w = x_s.shape
        dtype = self.transformer.dtype
        idx = prompt_rows(self.prompt, self.chains, self.cond.shape[0], B, x_s.device)
        guidance = None if self.guidance is None else torch.full((B,), self.guidance, device=x_s.device)
        v = self.transformer(hidden_states=pack_latents(x_s).to(dtype),
                             timestep=(timestep / FLUX_TIMESTEP_SCALE).to(dtype), guidance=guidance, pooled_projections=self.pooled[idx].to(dtype),
                             encoder_hidden_states=self.cond[idx].to(dtype), txt_ids=self.txt_ids,
                             img_ids=latent_image_ids(h, w).to(x_s.device)).sample
        self.network_evals += B
        return unpack_latents(v.to(x_s.dtype), h, w)


def load_latent_flow(source: str, device: str = "cpu") -> tuple[nn.Module, torch.Tensor, VPSchedule, dict]:
    """(SD3 or Flux transformer, flow levels s_t for t = 0..N, the VP-equivalent schedule, record) of a pipeline
    folder; the shift is the scheduler's at the task's latent size (`effective_shift`)."""
    import diffusers

    from benchmark.denoisers.hf import _SCHEDULER_CONFIG, _read_json

    root, comps = resolve_pipeline(source)
    cls = comps["model_class"]
    if cls not in (SD3_CLASS, FLUX_CLASS):
        raise ValueError(f"latent flow source {source!r}: its network is a {cls}, not an {SD3_CLASS} or {FLUX_CLASS}")
    scheduler_file = comps["scheduler"] / _SCHEDULER_CONFIG
    if not scheduler_file.is_file():
        raise ValueError(f"latent flow source {source!r}: no {scheduler_file}")
    raw = _read_json(scheduler_file)
    kind = str(raw.get("_class_name", ""))
    if kind != FLOW_MATCH_SCHEDULER:
        raise ValueError(f"latent flow source {source!r}: the scheduler is {kind or 'unnamed'}; a {cls} samples with "
                         f"a {FLOW_MATCH_SCHEDULER}")
    config = dict(diffusers.FlowMatchEulerDiscreteScheduler.from_config(raw).config)   # defaults filled in
    if config.get("invert_sigmas"):
        raise ValueError(f"latent flow source {source!r}: invert_sigmas = true is not supported")
    transformer, files = _load_model(cls, comps["model"])
    tc = transformer.config
    if (tc.out_channels or tc.in_channels) != tc.in_channels:
        raise ValueError(f"latent flow source {source!r}: its {cls} takes {tc.in_channels} input channels and returns "
                         f"{tc.out_channels}: a variant with image conditioning (e.g. Flux Fill / Control) is not "
                         "supported; a text-to-image transformer (input channels = output channels) is")
    C, h, w = _latent_shape(comps)
    patch = 2 if cls == FLUX_CLASS else int(transformer.config.patch_size)    # Flux: the pipeline's 2x2 packing
    shift, mu = effective_shift(config, image_seq_len((h, w), patch))
    N = int(config["num_train_timesteps"])
    sigmas = flow_sigmas(N, shift)
    schedule = flow_schedule(sigmas, f"flow:shift={shift:g}")
    record = {"source": str(source), "path": str(root), "file": str(comps["model"]),
              "sha256": _digest([*files, scheduler_file]), "prediction_type": "flow_velocity", "T": N,
              "shift": shift, "mu": mu, "s_T": float(sigmas[-1]), "scheduler": kind, "network": cls,
              "in_channels": C, "latent_shape": [C, h, w], "patch_size": patch,
              "joint_attention_dim": int(tc.joint_attention_dim),
              "pooled_projection_dim": int(tc.pooled_projection_dim),
              "guidance_embeds": bool(getattr(tc, "guidance_embeds", False)),
              "num_parameters": sum(p.numel() for p in transformer.parameters()),
              "diffusers_version": diffusers.__version__}
    return transformer.to(device), sigmas, schedule, record


def latent_flow_model(source: str, embeds: PromptEmbeds, cfg: float | None, prompt: int | str,
                      chains: int | None, device: str) -> tuple[nn.Module, VPSchedule, dict]:
    """(FlowEps of the (guided) velocity, its VP-equivalent schedule, record) for the diffusers_latent loader. cfg:
    SD3's classifier-free guidance scale (None: DEFAULT_CFG), a guidance-distilled Flux model's embedded guidance
    (None: DEFAULT_FLUX_GUIDANCE), None for a Flux model without one. The embeddings' widths must be the
    transformer's."""
    transformer, sigmas, schedule, record = load_latent_flow(source, device)
    for name, x, key in (("prompt_embeds", embeds.cond, "joint_attention_dim"),
                         ("pooled_prompt_embeds", embeds.pooled, "pooled_projection_dim")):
        if x is not None and x.shape[-1] != record[key]:
            raise ValueError(f"{name} have width {x.shape[-1]}, the transformer's {key} is {record[key]}: "
                             "embeddings of another text encoder?")
    if record["network"] == FLUX_CLASS:
        if record["guidance_embeds"]:
            w = DEFAULT_FLUX_GUIDANCE if cfg is None else cfg
        elif cfg is not None:
            raise ValueError(f"cfg = {cfg}: the Flux transformer of {source!r} has no guidance embedding "
                             "(guidance_embeds false, e.g. FLUX.1-schnell) and true CFG is not applied; give cfg null")
        else:
            w = None
        velocity = FluxVelocity(transformer, embeds, guidance=w, prompt=prompt, chains=chains)
    else:
        w = DEFAULT_CFG if cfg is None else cfg
        velocity = GuidedVelocity(transformer, embeds, cfg=w, prompt=prompt, chains=chains)
    model = FlowEps(velocity, sigmas, record["T"]).to(device)
    return model, schedule, record | {"cfg": w, "network_evals_per_forward": velocity.network_evals_per_forward}


__all__ = ["DEFAULT_CFG", "DEFAULT_FLUX_GUIDANCE", "FluxVelocity", "GuidedVelocity", "calculate_shift",
           "effective_shift", "image_seq_len", "latent_flow_model", "latent_image_ids", "load_latent_flow",
           "pack_latents", "unpack_latents"]
