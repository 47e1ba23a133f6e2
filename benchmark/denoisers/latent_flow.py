"""Latent flow transformers (Stable Diffusion 3 / 3.5) as eps-models in latent space.

A pipeline folder as StableDiffusion3Pipeline.save_pretrained writes it: model_index.json naming an AutoencoderKL
(`vae`), an SD3Transformer2DModel (`transformer`) and a FlowMatchEulerDiscreteScheduler (`scheduler`); the text
encoders are optional (they only make the prompt embeddings, benchmark.denoisers.latent.encode_prompts). Nothing is
downloaded: a local folder or a model id in the local Hugging Face cache. The model (Esser et al. 2024, "Scaling
rectified flow transformers", eq. 1-3) is trained on x_s = (1 - s) x_0 + s eps to predict v = eps - x_0 and is
called at timestep s N (N = num_train_timesteps), with the text conditioning c [L, D] (CLIP + T5 tokens) and the
pooled CLIP embedding p [D'].

Classifier-free guidance on the velocity, as StableDiffusion3Pipeline.__call__ combines it:

    v = v_u + w (v_c - v_u),   v_c = v(x_s, sN; c, p),   v_u = v(x_s, sN; c_neg, p_neg)

one transformer call on [x_s; x_s] with [negative; prompt] (the pipeline's batch), so one counted denoiser forward
is 2 network evaluations (1 at w = 1: the conditional model alone), the same for every method
(`network_evals_per_forward`, `network_evals` as in benchmark.denoisers.latent). w is the sampling setting `cfg`;
null: DEFAULT_CFG = 7.0, StableDiffusion3Pipeline's default. Skip-layer guidance (SD3.5 medium's option, off in the
pipeline by default) is not applied.

The guided velocity becomes an eps-model on the VP-equivalent schedule exactly as for a pixel flow UNet
(benchmark.denoisers.flow.FlowEps: x_s = n(s) x_vp, eps = x_s + (1 - s) v; affine in v, so guiding v and
converting equals converting each half and guiding eps), so every method runs unchanged, and deterministic DDIM
(eta = 0) on that schedule is the pipeline's flow-match Euler loop (tests/denoisers/test_latent_flow.py: the
pipeline's loop on the same sigmas; our grid's t = N stands for u = 1 - 1/(2N), see flow.py).

The shift: the scheduler's static `shift` (SD3: 3.0), or, with use_dynamic_shifting, the pipeline's
resolution-dependent mu (calculate_shift: linear in the image token count (h/p)(w/p) of the latents, from
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
from benchmark.denoisers.latent import (SD3_CLASS, PromptEmbeds, _digest, _load_model, cfg_combine, check_prompt,
                                        prompt_rows, resolve_pipeline)
from benchmark.diffusion.schedules import VPSchedule

#: The guidance scale w when the sampling setting `cfg` is null: StableDiffusion3Pipeline's default.
DEFAULT_CFG = 7.0
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
            v = self.transformer(hidden_states=x_s.to(dtype), timestep=timestep.to(dtype),
                                 encoder_hidden_states=c.to(dtype), pooled_projections=p.to(dtype)).sample
        else:   # one call on [x_s; x_s] with [negative; prompt], as StableDiffusion3Pipeline batches CFG
            j = idx % self.uncond.shape[0]
            k = idx % self.uncond_pooled.shape[0]
            both = self.transformer(hidden_states=torch.cat([x_s, x_s]).to(dtype),
                                    timestep=torch.cat([timestep, timestep]).to(dtype),
                                    encoder_hidden_states=torch.cat([self.uncond[j], c]).to(dtype),
                                    pooled_projections=torch.cat([self.uncond_pooled[k], p]).to(dtype)).sample
            v = cfg_combine(both.to(x_s.dtype), self.cfg)
        self.network_evals += self.network_evals_per_forward * B
        return v.to(x_s.dtype)


def load_latent_flow(source: str, device: str = "cpu") -> tuple[nn.Module, torch.Tensor, VPSchedule, dict]:
    """(SD3Transformer2DModel, flow levels s_t for t = 0..N, the VP-equivalent schedule, record) of a pipeline
    folder; the shift is the scheduler's at the transformer's own latent size (`effective_shift`)."""
    import diffusers

    from benchmark.denoisers.hf import _MODEL_CONFIG, _SCHEDULER_CONFIG, _read_json

    root, comps = resolve_pipeline(source)
    if comps["model_class"] != SD3_CLASS:
        raise ValueError(f"latent flow source {source!r}: its network is a {comps['model_class']}, not an "
                         f"{SD3_CLASS}")
    scheduler_file = comps["scheduler"] / _SCHEDULER_CONFIG
    if not scheduler_file.is_file():
        raise ValueError(f"latent flow source {source!r}: no {scheduler_file}")
    raw = _read_json(scheduler_file)
    kind = str(raw.get("_class_name", ""))
    if kind != FLOW_MATCH_SCHEDULER:
        raise ValueError(f"latent flow source {source!r}: the scheduler is {kind or 'unnamed'}; an {SD3_CLASS} "
                         f"samples with a {FLOW_MATCH_SCHEDULER}")
    config = dict(diffusers.FlowMatchEulerDiscreteScheduler.from_config(raw).config)   # defaults filled in
    if config.get("invert_sigmas"):
        raise ValueError(f"latent flow source {source!r}: invert_sigmas = true is not supported")
    model_config = _read_json(comps["model"] / _MODEL_CONFIG)
    size = model_config.get("sample_size", 128)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    patch = int(model_config.get("patch_size", 2))
    shift, mu = effective_shift(config, image_seq_len(hw, patch))
    transformer, files = _load_model(SD3_CLASS, comps["model"])
    N = int(config["num_train_timesteps"])
    sigmas = flow_sigmas(N, shift)
    schedule = flow_schedule(sigmas, f"flow:shift={shift:g}")
    record = {"source": str(source), "path": str(root), "file": str(comps["model"]),
              "sha256": _digest([*files, scheduler_file]), "prediction_type": "flow_velocity", "T": N,
              "shift": shift, "mu": mu, "s_T": float(sigmas[-1]), "scheduler": kind, "network": SD3_CLASS,
              "in_channels": int(transformer.config.in_channels), "patch_size": patch,
              "joint_attention_dim": int(transformer.config.joint_attention_dim),
              "pooled_projection_dim": int(transformer.config.pooled_projection_dim),
              "num_parameters": sum(p.numel() for p in transformer.parameters()),
              "diffusers_version": diffusers.__version__}
    return transformer.to(device), sigmas, schedule, record


def latent_flow_model(source: str, embeds: PromptEmbeds, cfg: float | None, prompt: int | str,
                      chains: int | None, device: str) -> tuple[nn.Module, VPSchedule, dict]:
    """(FlowEps of the guided velocity, its VP-equivalent schedule, record) for the diffusers_latent loader; cfg
    None: DEFAULT_CFG. The embeddings' widths must be the transformer's."""
    transformer, sigmas, schedule, record = load_latent_flow(source, device)
    for name, x, key in (("prompt_embeds", embeds.cond, "joint_attention_dim"),
                         ("pooled_prompt_embeds", embeds.pooled, "pooled_projection_dim")):
        if x is not None and x.shape[-1] != record[key]:
            raise ValueError(f"{name} have width {x.shape[-1]}, the transformer's {key} is {record[key]}: "
                             "embeddings of another text encoder?")
    w = DEFAULT_CFG if cfg is None else cfg
    velocity = GuidedVelocity(transformer, embeds, cfg=w, prompt=prompt, chains=chains)
    model = FlowEps(velocity, sigmas, record["T"]).to(device)
    return model, schedule, record | {"cfg": w, "network_evals_per_forward": velocity.network_evals_per_forward}


__all__ = ["DEFAULT_CFG", "GuidedVelocity", "calculate_shift", "effective_shift", "image_seq_len",
           "latent_flow_model", "load_latent_flow"]
