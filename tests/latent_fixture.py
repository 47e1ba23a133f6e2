"""Tiny randomly initialised latent text-to-image pipeline folders, saved locally as the pipelines' save_pretrained
writes them (never a download), for tests/denoisers/test_latent.py and test_latent_flow.py:

- `save_tiny_sd`: Stable Diffusion 1.x (AutoencoderKL + UNet2DConditionModel + PNDM config, SD-1.5's betas),
- `save_tiny_sd3`: SD3 (AutoencoderKL with SD3's shift_factor + SD3Transformer2DModel + flow-match scheduler),
- `save_tiny_flux`: Flux (AutoencoderKL with Flux's factors + FluxTransformer2DModel + dynamic shifting),

each optionally with tiny text encoders and tokenizers (`text=True`, needs transformers): CLIP tokenizers of a
27-letter vocabulary, T5 tokenizers of the shipped prompts' words, CLIP / T5 encoders of width 4-8, so that
`python -m benchmark.denoisers.latent embed` and the pipelines' own `prompt=` path run on them.
Latents are [4, 8, 8] (the VAEs downsample by 2: images [3, 16, 16]); text width D = 8, pooled width DP = 6.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

LATENT = (4, 8, 8)
D, DP, T = 8, 6, 1000
NONE = [None, None]


def _vae(seed: int, **factors):
    import diffusers

    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=LATENT[0], norm_num_groups=4, sample_size=16, **factors)


def _index(root: Path, pipeline: str, components: dict) -> None:
    """Each component saved in its subfolder and model_index.json naming its [library, class] ([None, None]: absent)."""
    import diffusers

    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    for name, value in components.items():
        if isinstance(value, (list, bool)):
            index[name] = value
        else:
            index[name] = [type(value).__module__.split(".")[0], type(value).__name__]
            value.save_pretrained(root / name)
    (root / "model_index.json").write_text(json.dumps(index))


# --- tiny text encoders and tokenizers (transformers) ------------------------------------------------------------

def clip_tokenizer(max_length: int = 8):
    """A CLIPTokenizer of the letters a-z and '.' (no merges: one token per character), model_max_length 8."""
    import tempfile

    import transformers

    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase,
              *(c + "</w>" for c in string.ascii_lowercase + ".")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                          model_max_length=max_length)


def t5_tokenizer():
    """A T5 tokenizer (Unigram) of the shipped prompts' words."""
    import transformers

    words = "a red colored car photo of cat sitting on wooden bench blue".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0), *(("\u2581" + w, -1.0) for w in words)]
    return transformers.T5TokenizerFast(vocab=vocab, extra_ids=0)


def clip_text(hidden: int, projection: int | None = None, seed: int = 0):
    """A 1-layer CLIP text encoder (with a projection of width `projection`: CLIPTextModelWithProjection)."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.CLIPTextConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden,
                                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=8,
                                         projection_dim=projection or hidden, bos_token_id=0, eos_token_id=1,
                                         pad_token_id=1)
    cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return cls(config).eval()


def t5_encoder(d_model: int = D, seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    return transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=32, d_model=d_model, d_kv=4, d_ff=2 * d_model, num_layers=1, num_heads=2, pad_token_id=0,
        eos_token_id=1, decoder_start_token_id=0)).eval()


# --- the pipeline folders --------------------------------------------------------------------------------------

def save_tiny_sd(root: Path, prediction_type: str = "epsilon", seed: int = 0, text: bool = False) -> Path:
    """vae/, unet/, scheduler/ (SD-1.5's PNDM config: scaled_linear betas 0.00085..0.012) and model_index.json as
    StableDiffusionPipeline.save_pretrained writes them; text: text_encoder/ (CLIP, width D) and tokenizer/."""
    import diffusers

    vae = _vae(seed)                                   # the UNet follows on the same stream (as measured)
    unet = diffusers.UNet2DConditionModel(
        sample_size=LATENT[1], in_channels=LATENT[0], out_channels=LATENT[0], layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=D, norm_num_groups=4,
        attention_head_dim=2)
    scheduler = diffusers.PNDMScheduler(num_train_timesteps=T, beta_start=0.00085, beta_end=0.012,
                                        beta_schedule="scaled_linear", skip_prk_steps=True, set_alpha_to_one=False,
                                        steps_offset=1, prediction_type=prediction_type)
    _index(root, "StableDiffusionPipeline", {
        "vae": vae, "unet": unet, "scheduler": scheduler,
        "text_encoder": clip_text(D, seed=seed) if text else NONE,
        "tokenizer": clip_tokenizer() if text else NONE,
        "safety_checker": NONE, "feature_extractor": NONE, "requires_safety_checker": False})
    return root


def save_tiny_sd3(root: Path, seed: int = 0, text: bool = False, **scheduler) -> Path:
    """vae/ (SD3's scaling_factor 1.5305, shift_factor 0.0609), transformer/, scheduler/ (shift 3, SD3's) and
    model_index.json as StableDiffusion3Pipeline.save_pretrained writes them; text: two CLIPs (hidden 4, projection
    3: pooled 3 + 3 = DP) and a T5 of width D (SD3 pads the CLIP tokens to it), with their tokenizers."""
    import diffusers

    vae = _vae(seed, scaling_factor=1.5305, shift_factor=0.0609)
    torch.manual_seed(seed)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=LATENT[1], patch_size=2, in_channels=LATENT[0], out_channels=LATENT[0], num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=D, caption_projection_dim=16,
        pooled_projection_dim=DP, pos_embed_max_size=LATENT[1])
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, **({"shift": 3.0} | scheduler))
    parts = {"vae": vae, "transformer": transformer, "scheduler": sched}
    if text:
        parts |= {"text_encoder": clip_text(4, 3, seed), "text_encoder_2": clip_text(4, 3, seed + 1),
                  "text_encoder_3": t5_encoder(D, seed), "tokenizer": clip_tokenizer(),
                  "tokenizer_2": clip_tokenizer(), "tokenizer_3": t5_tokenizer()}
    else:
        parts |= {k: NONE for k in ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
                                    "tokenizer_3")}
    _index(root, "StableDiffusion3Pipeline", parts | {"image_encoder": NONE, "feature_extractor": NONE})
    return root


def save_tiny_flux(root: Path, guidance_embeds: bool = True, seed: int = 0, text: bool = False) -> Path:
    """vae/ (Flux's scaling_factor 0.3611, shift_factor 0.1159), transformer/ (a FluxTransformer2DModel on 2x2-packed
    tokens: in_channels 4 x 4), scheduler/ (Flux's: dynamic shifting, 0.5 at 256 tokens to 1.15 at 4096) and
    model_index.json as FluxPipeline.save_pretrained writes them; text: a CLIP of width DP (pooled) and a T5 of
    width D, with their tokenizers."""
    import diffusers

    vae = _vae(seed, scaling_factor=0.3611, shift_factor=0.1159)       # the transformer follows on the same stream
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT[0], num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=D, pooled_projection_dim=DP, guidance_embeds=guidance_embeds,
        axes_dims_rope=(2, 2, 4))
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=3.0, use_dynamic_shifting=True,
                                                      base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                      max_image_seq_len=4096)
    parts = {"vae": vae, "transformer": transformer, "scheduler": sched}
    if text:
        parts |= {"text_encoder": clip_text(DP, seed=seed), "text_encoder_2": t5_encoder(D, seed),
                  "tokenizer": clip_tokenizer(), "tokenizer_2": t5_tokenizer()}
    else:
        parts |= {k: NONE for k in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")}
    _index(root, "FluxPipeline", parts | {"image_encoder": NONE, "feature_extractor": NONE})
    return root


# --- a cell's set-up on these folders ------------------------------------------------------------------------

def load_latent(source, task, samples: int, cfg: float | None, device):
    """The diffusers_latent loader on `source` for `task`, as a cell calls it (the spec's denoiser source, chains and
    sampling.cfg; the rest of the spec unread)."""
    import types

    from benchmark.denoisers import DENOISERS

    spec = types.SimpleNamespace(denoiser=types.SimpleNamespace(source=str(source)), task="latent",
                                 rounds=types.SimpleNamespace(samples=samples), sampling=types.SimpleNamespace(cfg=cfg))
    return DENOISERS["diffusers_latent"].load(spec, task, device)


def run_on_decoded_reward(source, task, method, cfg, device, tag: str, n: int = 2, steps: int = 4):
    """One sampling pass (eta 1) of `method` (a made method) on n chains with the task's `reward` objective
    (images_fixture:brightness of the decoded images), counted as a cell counts it. Returns (z, costs, the batch
    sizes the VAE decoder saw, the loader's Loaded, the objective)."""
    from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler,
                                     derive_seed, sample)
    from benchmark.methods import Guide

    objective = task.objective("reward", {"fn": "images_fixture:brightness"}).for_chains(n).to(device)
    loaded = load_latent(source, task, n, cfg, device)
    decodes = []
    objective.decoder.register_forward_hook(lambda m, i, o: decodes.append(i[0].shape[0]))
    costs = Costs()
    sampler = Sampler(CountingDenoiser(loaded.model, costs), loaded.schedule, steps=steps, eta=1.0)
    noise = PerSampleNoise([derive_seed(tag, i) for i in range(n)], LATENT, device=device)
    z = sample(sampler, method, noise.draw(), noise, Guide(CountingObjective(objective, costs)))
    return z, costs, decodes, loaded, objective
