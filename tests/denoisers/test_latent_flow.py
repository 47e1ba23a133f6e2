"""Latent flow transformers (benchmark/denoisers/latent_flow.py) on a tiny randomly initialised SD3-style pipeline
folder (AutoencoderKL with SD3's shift_factor + SD3Transformer2DModel + FlowMatchEulerDiscreteScheduler,
model_index.json; and the same for Flux) saved locally (tests/latent_fixture.py), with random stand-in prompt
embeddings (prompt, negative, pooled): never a download; transformers (the test extra) only for the real
pipelines. Model tests run on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from benchmark.denoisers.flow import FlowEps, shift_sigmas, vp_scale  # noqa: E402
from benchmark.denoisers.latent import (EMBED_KEYS, PromptEmbeds, load_prompt_embeds, load_vae,  # noqa: E402
                                        pipeline_latent_shape)
from benchmark.denoisers.latent_flow import (DEFAULT_CFG, GuidedVelocity, calculate_shift,  # noqa: E402
                                             effective_shift, image_seq_len, latent_flow_model, load_latent_flow)
from benchmark.diffusion import (Costs, CountingDenoiser, PerSampleNoise, Sampler, derive_seed,  # noqa: E402
                                 sample)
from benchmark.methods import make_method  # noqa: E402
from benchmark.tasks import make_task  # noqa: E402
from tests.denoisers.test_hf import full_float32  # noqa: E402, F401 (autouse: no TF32 on cuda, see there)
from tests.latent_fixture import (DP, LATENT, D, load_latent, run_on_decoded_reward,  # noqa: E402
                                  save_tiny_flux, save_tiny_sd3)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROMPTS = FIXTURES / "latent_prompts.txt"
N, SHIFT, STEPS, CFG = 1000, 3.0, 10, 4.0
L, P = 4, 3                 # tokens of the stand-in embeddings, prompts (the shipped prompt file); LATENT [4, 8, 8]
                            # (16 image tokens of 2x2 patches), D and DP: tests/latent_fixture.py
#: max |ours - the pipeline loop| relative to max(1, max |z_0|), float32: the first step's Tweedie estimate
#: amplifies rounding by 1 / sqrt(ab_T) ~ 6000 (s_T = 0.99983, flow.py); measured 5.6e-5 (max |z_0| 3.3) here.
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


def random_embeds(seed=0) -> PromptEmbeds:
    g = torch.Generator().manual_seed(seed)
    return PromptEmbeds(torch.randn(P, L, D, generator=g), torch.randn(1, L, D, generator=g),
                        torch.randn(P, DP, generator=g), torch.randn(1, DP, generator=g))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return save_tiny_sd3(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def embeds_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("sd3-embeds") / "embeds.safetensors"
    save_file(dict(zip(EMBED_KEYS, (x.contiguous() for x in random_embeds()))), str(path))
    return path


def _on(embeds: PromptEmbeds, device) -> PromptEmbeds:
    return PromptEmbeds(*(x.to(device) for x in embeds))


# --- the shift -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["exponential", "linear"])
def test_dynamic_shifting_at_a_fixed_size_is_a_static_shift(kind):
    """The scheduler's resolution-dependent time shift (mu from the token count, as the SD3/Flux pipelines compute
    it) equals the static shift effective_shift returns, on diffusers' own set_timesteps(mu=...)."""
    config = {"use_dynamic_shifting": True, "base_image_seq_len": 256, "max_image_seq_len": 4096,
              "base_shift": 0.5, "max_shift": 1.15, "time_shift_type": kind}
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=N, **config)
    for seq in (64, 1024, 4096):
        shift, mu = effective_shift(dict(sched.config), seq)
        assert mu == pytest.approx(calculate_shift(seq)) and mu == pytest.approx(0.5 + 0.65 * (seq - 256) / 3840)
        u = torch.linspace(1.0, 0.05, 7, dtype=torch.float64)
        sched.set_timesteps(sigmas=u.tolist(), mu=mu)
        assert shift == pytest.approx(math.exp(mu) if kind == "exponential" else mu)
        assert torch.allclose(sched.sigmas[:-1].double(), shift_sigmas(u, shift), atol=1e-6, rtol=0)
    assert effective_shift({"shift": 3.0}, 4096) == (3.0, None)
    assert image_seq_len((128, 128), 2) == 4096        # SD3 at 1024 px
    with pytest.raises(ValueError, match="time_shift_type"):
        effective_shift(config | {"time_shift_type": "cosine"}, 64)


def test_loader_reads_a_dynamic_shift_at_the_transformers_size(tmp_path):
    folder = save_tiny_sd3(tmp_path / "dyn", use_dynamic_shifting=True)
    _, sigmas, schedule, record = load_latent_flow(str(folder))
    mu = calculate_shift(16)                            # (8 // 2) ** 2 tokens
    assert record["mu"] == pytest.approx(mu) and record["shift"] == pytest.approx(math.exp(mu))
    assert schedule.T == N and sigmas[-1] < 1


# --- classifier-free guidance on the velocity and its cost ---------------------------------------------------

def test_cfg_formula_prompt_rows_and_counting(pipe, device):
    transformer, sigmas, _, record = load_latent_flow(str(pipe), device)
    assert record["network"] == "SD3Transformer2DModel" and record["shift"] == SHIFT and record["mu"] is None
    e = _on(random_embeds(), device)
    x = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(0)).to(device)
    ts = torch.tensor([990.0, 37.0], device=device)

    def v(rows, cond, pooled):
        return transformer(hidden_states=x[rows], timestep=ts[rows], encoder_hidden_states=cond,
                           pooled_projections=pooled).sample.cpu()

    with torch.no_grad():
        v_c = v([0, 1], e.cond[[1, 1]], e.pooled[[1, 1]])
        v_u = v([0, 1], e.neg[[0, 0]], e.neg_pooled[[0, 0]])
        guided = GuidedVelocity(transformer, e, cfg=CFG, prompt=1).to(device)
        assert torch.allclose(guided(x, ts).cpu(), v_u + CFG * (v_c - v_u), atol=1e-5, rtol=0)
        plain = GuidedVelocity(transformer, e, cfg=1.0, prompt=1).to(device)
        assert torch.allclose(plain(x, ts).cpu(), v_c, atol=1e-6, rtol=0)
        per_chain = GuidedVelocity(transformer, e, cfg=1.0, prompt="all", chains=2).to(device)
        xx, tt = torch.cat([x, x]), torch.cat([ts, ts])
        out = per_chain(xx, tt).cpu()
        for j in range(4):      # row j: chain j mod 2 -> prompt (j mod 2) mod 3
            k = slice(j % 2, j % 2 + 1)
            want = transformer(hidden_states=xx[j:j + 1], timestep=tt[j:j + 1], encoder_hidden_states=e.cond[k],
                               pooled_projections=e.pooled[k]).sample.cpu()
            assert torch.allclose(out[j:j + 1], want, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        GuidedVelocity(transformer, PromptEmbeds(e.cond, e.neg))
    with pytest.raises(ValueError, match="negative_prompt_embeds and negative_pooled"):
        GuidedVelocity(transformer, PromptEmbeds(e.cond, e.neg, e.pooled), cfg=CFG)
    # one counted forward (and VJP) of the eps-model = 2 transformer rows per sample
    costs, model = Costs(), FlowEps(guided, sigmas, N).to(device)
    guided.network_evals = 0
    CountingDenoiser(model, costs)(x.clone().requires_grad_(True), 500).sum().backward()
    assert (costs.denoiser_forwards, costs.denoiser_vjps) == (2, 2) and guided.network_evals == 4


# --- our DDIM(eta = 0) = StableDiffusion3Pipeline's loop -------------------------------------------------------

def _sd3_loop(transformer, vae, scheduler_dir, latents, e: PromptEmbeds, w, u):
    """StableDiffusion3Pipeline.__call__'s denoising loop and decode (diffusers 0.42,
    pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py, '# 7. Denoising loop'; no skip-layer guidance) with
    the pipeline's `sigmas` argument u (unshifted: set_timesteps shifts them); prompt_embeds = cat([negative,
    prompt]), pooled likewise. The scheduler's timesteps stay on the CPU (expanded and moved, as the pipeline has
    them on the latents' device)."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(scheduler_dir)
    sched.set_timesteps(sigmas=u)
    prompt_embeds = torch.cat([e.neg, e.cond])
    pooled_prompt_embeds = torch.cat([e.neg_pooled, e.pooled])
    with torch.no_grad():
        for t in sched.timesteps:
            latent_model_input = torch.cat([latents] * 2)
            timestep = t.expand(latent_model_input.shape[0]).to(latents.device)
            noise_pred = transformer(hidden_states=latent_model_input, timestep=timestep,
                                     encoder_hidden_states=prompt_embeds, pooled_projections=pooled_prompt_embeds,
                                     return_dict=False)[0]
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + w * (noise_pred_text - noise_pred_uncond)
            latents = sched.step(noise_pred, t, latents, return_dict=False)[0]
        image = vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor).sample
    return latents, image


def _ours(model, schedule, z_T, steps=STEPS):
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=steps, eta=0.0)
    noise = PerSampleNoise([derive_seed("sd3-ddim", i) for i in range(z_T.shape[0])], LATENT, device=z_T.device)
    return sampler, sample(sampler, make_method("none"), z_T.clone(), noise)


def test_ddim_eta0_matches_the_sd3_pipeline_loop(pipe, record_property, device):
    """Same sigmas (the pipeline's `sigmas` argument: our u_t, unshifted; its scheduler shifts them to our s_t),
    same start x_s = n(s_T) z_T: our sampler on the VP-equivalent schedule and the pipeline's flow-match Euler loop
    agree to float32 rounding, latents and decoded images."""
    e = _on(random_embeds(), device)
    model, schedule, record = latent_flow_model(str(pipe), e, CFG, 2, None, device)
    decoder, _ = load_vae(str(pipe), device)
    z_T = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    sampler, ours = _ours(model, schedule, z_T)
    s = [float(model.sigmas[st.t]) for st in sampler.steps]
    u = [x / (SHIFT - (SHIFT - 1) * x) for x in s]             # the inverse of the static shift
    with torch.no_grad():
        ours_image = decoder(ours)
    theirs, image = _sd3_loop(model.model.transformer, decoder.vae, pipe / "scheduler", z_T * vp_scale(s[0]),
                              PromptEmbeds(e.cond[[2, 2]], e.neg[[0, 0]], e.pooled[[2, 2]], e.neg_pooled[[0, 0]]),
                              CFG, u)
    ours, ours_image, theirs, image = ours.cpu(), ours_image.cpu(), theirs.cpu(), image.cpu()
    diff, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    diff_image = (ours_image - image).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\nSD3 flow: max |ours - SD3 pipeline loop (same sigmas)| latents {diff:.3g} (max |z_0| {scale:.3g}), "
          f"decoded images {diff_image:.3g}")
    assert record["cfg"] == CFG and record["network_evals_per_forward"] == 2
    assert torch.isfinite(ours).all() and diff < TOL * max(1.0, scale) and diff_image < TOL * max(1.0, scale)


def test_against_the_real_sd3_pipeline_when_transformers_is_installed(pipe, device):
    """StableDiffusion3Pipeline itself (it imports transformers) with precomputed embeddings and our sigmas:
    skipped without transformers."""
    pytest.importorskip("transformers")
    e = _on(random_embeds(), device)
    model, schedule, _ = latent_flow_model(str(pipe), e, CFG, 0, None, device)
    decoder, _ = load_vae(str(pipe), device)
    sd3 = diffusers.StableDiffusion3Pipeline(
        transformer=model.model.transformer, vae=decoder.vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
        tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(pipe / "scheduler"))
    z_T = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    sampler, ours = _ours(model, schedule, z_T)
    s = [float(model.sigmas[st.t]) for st in sampler.steps]
    theirs = sd3(prompt_embeds=e.cond[:1], negative_prompt_embeds=e.neg, pooled_prompt_embeds=e.pooled[:1],
                 negative_pooled_prompt_embeds=e.neg_pooled, guidance_scale=CFG, num_inference_steps=STEPS,
                 sigmas=[x / (SHIFT - (SHIFT - 1) * x) for x in s], latents=z_T * vp_scale(s[0]),
                 height=16, width=16, output_type="latent").images.cpu()
    diff = (ours.cpu() - theirs).abs().max().item()
    print(f"\nSD3: max |ours - StableDiffusion3Pipeline (same sigmas)| = {diff:.3g}")
    assert diff < TOL * max(1.0, theirs.abs().max().item())
    assert inspect.signature(sd3.__call__).parameters["guidance_scale"].default == DEFAULT_CFG   # null cfg


# --- the loader, the task and a cell ------------------------------------------------------------------------------

def _task(pipe, embeds_file, **params):
    return make_task("latent", 0, pipeline=str(pipe), prompts=str(PROMPTS), embeds=str(embeds_file), **params)


def test_the_latent_loader_dispatches_on_the_network_and_null_cfg_is_7(pipe, embeds_file, device):
    task = _task(pipe, embeds_file, prompt=1)
    assert task.shape == LATENT == pipeline_latent_shape(str(pipe))
    assert load_prompt_embeds(embeds_file, P).pooled.shape == (P, DP)
    for cfg, w, evals in ((None, 7.0, 2), (1.0, 1.0, 1)):
        loaded = load_latent(pipe, task, 2, cfg, device)
        assert isinstance(loaded.model, FlowEps) and isinstance(loaded.model.model, GuidedVelocity)
        record = loaded.networks["denoiser"]
        assert (loaded.model.model.cfg, record["cfg"], record["network_evals_per_forward"]) == (w, w, evals)
        assert record["prediction_type"] == "flow_velocity" and loaded.networks["vae"]["sha256"]
    assert DEFAULT_CFG == 7.0


def test_refusals_name_what_is_wrong(pipe, tmp_path, device):
    e = random_embeds()
    with pytest.raises(ValueError, match="joint_attention_dim is 8"):
        latent_flow_model(str(pipe), PromptEmbeds(torch.zeros(P, L, 5), None, e.pooled), 1.0, 0, None, device)
    with pytest.raises(ValueError, match="pooled_projection_dim is 6"):
        latent_flow_model(str(pipe), PromptEmbeds(e.cond, None, torch.zeros(P, 5)), 1.0, 0, None, device)
    bad = save_tiny_sd3(tmp_path / "ddpm")
    diffusers.DDPMScheduler(num_train_timesteps=N).save_pretrained(bad / "scheduler")
    with pytest.raises(ValueError, match="samples with a FlowMatchEulerDiscreteScheduler"):
        load_latent_flow(str(bad))
    fill = save_tiny_flux(tmp_path / "fill")              # a Flux Fill-style transformer: image channels in, 16 out
    diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=32, out_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=D, pooled_projection_dim=DP,
        axes_dims_rope=(2, 2, 4)).save_pretrained(fill / "transformer")
    with pytest.raises(ValueError, match="takes 32 input channels and returns 16: a variant with image conditioning"):
        load_latent_flow(str(fill))


def test_the_loader_refuses_a_task_of_another_latent_size(pipe, tmp_path, embeds_file, device):
    """The chains' shape comes from the task's pipeline, the network (and its shift) from the denoiser's source:
    they must agree."""
    other = save_tiny_sd3(tmp_path / "big")
    cfg = json.loads((other / "transformer" / "config.json").read_text())
    (other / "transformer" / "config.json").write_text(json.dumps(cfg | {"sample_size": 16}))
    task = _task(other, embeds_file)
    assert task.shape == (4, 16, 16)
    with pytest.raises(ValueError, match=r"takes latents of shape \[4, 8, 8\], task 'latent' has shape "
                                         r"\[4, 16, 16\]"):
        load_latent(pipe, task, 2, None, device)


def test_sd3_timesteps_stay_float32_under_a_low_precision_transformer(pipe):
    """As StableDiffusion3Pipeline passes them (float32 scheduler timesteps): s N near 1000 in bfloat16 would round to
    multiples of 4."""
    transformer = load_latent_flow(str(pipe))[0].to(torch.bfloat16)
    seen = []
    transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"].dtype), with_kwargs=True)
    with torch.no_grad():
        v = GuidedVelocity(transformer, random_embeds(), cfg=CFG)(torch.randn(1, *LATENT), torch.tensor([997.0]))
    assert seen == [torch.float32] and v.dtype == torch.float32


@pytest.mark.parametrize("name,strength,params", [("dps", 0.3, {}), ("smc", 1.0, {"particles": 2})])
def test_methods_on_decoded_rewards_at_their_declared_cost(pipe, embeds_file, name, strength, params, device):
    """dps and smc on an SD3-style model: the declared costs, 2 transformer rows per counted forward, one decode
    per objective evaluation."""
    n = 2
    task = _task(pipe, embeds_file, prompt="all")
    method = make_method(name, strength, **params)
    z, costs, decodes, loaded, _ = run_on_decoded_reward(pipe, task, method, CFG, device, "sd3-methods", n)
    assert z.shape == (n, *LATENT) and torch.isfinite(z).all()
    declared = tuple(c * n for c in method.costs_per_sample(4))
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == declared
    assert sum(decodes) == costs.objective_evals > 0
    assert loaded.model.model.network_evals == 2 * costs.denoiser_forwards


def test_one_sd3_cell_end_to_end(pipe, embeds_file, device):
    from benchmark.cell import run_cell
    from benchmark.spec import CellSpec, Denoiser, Rounds, Sampling

    spec = CellSpec(task="latent", objective="reward", method="dps", strength=0.3,
                    task_params={"pipeline": str(pipe), "prompts": str(PROMPTS), "embeds": str(embeds_file),
                                 "prompt": 0},
                    objective_params={"fn": "images_fixture:brightness"},
                    denoiser=Denoiser(name="sd3_tiny", loader="diffusers_latent", source=str(pipe)),
                    sampling=Sampling(steps=4), rounds=Rounds(rounds=1, samples=2))
    rows = run_cell(spec, device)
    last = rows[-1]
    assert last["status"] == "ok" and last["cost_objective_evals"] == 8 and last["cost_denoiser_forwards"] == 8
    info = json.loads(last["checkpoint_info"])["denoiser"]
    assert info["cfg"] == DEFAULT_CFG and info["network"] == "SD3Transformer2DModel" and info["shift"] == SHIFT


# --- Flux: packed tokens, embedded guidance, dynamic shifting ------------------------------------------------------

FLUX_G = 2.5


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return save_tiny_flux(tmp_path_factory.mktemp("flux"))


def test_packing_is_the_pipelines_and_invertible():
    """pack_latents puts the 2x2 patch of channel c at token (i, j) features 4c + 2a + b (FluxPipeline's view /
    permute), unpack_latents undoes it; the ids are (0, i, j) row-major."""
    from benchmark.denoisers.latent_flow import latent_image_ids, pack_latents, unpack_latents

    z = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    x = pack_latents(z)
    assert x.shape == (2, 6, 12)
    for i, j, c, a, b in ((0, 0, 0, 0, 0), (1, 2, 2, 1, 0), (1, 1, 1, 0, 1)):
        assert x[1, i * 3 + j, 4 * c + 2 * a + b] == z[1, c, 2 * i + a, 2 * j + b]
    assert torch.equal(unpack_latents(x, 4, 6), z)
    assert latent_image_ids(4, 6).tolist()[4] == [0.0, 1.0, 1.0] and latent_image_ids(4, 6).shape == (6, 3)


def _flux_loop(transformer, vae, scheduler_dir, latents, e: PromptEmbeds, g, u, mu):
    """FluxPipeline.__call__'s denoising loop and decode (diffusers 0.42, pipelines/flux/pipeline_flux.py,
    '# 6. Denoising loop'; no true CFG) on packed latents, with the pipeline's `sigmas` argument u and its mu; the
    packing and ids are the pipeline's static methods, copied (the pipeline class imports transformers)."""
    B, C, h, w = latents.shape
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(scheduler_dir)
    sched.set_timesteps(sigmas=u, mu=mu)
    latents = latents.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (h // 2) * (w // 2), C * 4)
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h // 2)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(w // 2)[None, :]
    ids = ids.reshape(-1, 3).to(latents.device)
    guidance = torch.full([1], g, device=latents.device, dtype=torch.float32).expand(B)
    text_ids = torch.zeros(e.cond.shape[1], 3, device=latents.device)
    with torch.no_grad():
        for t in sched.timesteps:
            timestep = t.expand(B).to(latents.dtype).to(latents.device)
            noise_pred = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                                     pooled_projections=e.pooled, encoder_hidden_states=e.cond, txt_ids=text_ids,
                                     img_ids=ids, return_dict=False)[0]
            latents = sched.step(noise_pred, t, latents, return_dict=False)[0]
        latents = latents.view(B, h // 2, w // 2, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, C, h, w)
        image = vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor).sample
    return latents, image


def test_ddim_eta0_matches_the_flux_pipeline_loop(flux, record_property, device):
    """Same sigmas and mu (the resolution-dependent shift of 16 image tokens), same start: our sampler on unpacked
    latents and FluxPipeline's loop on packed tokens agree to float32 rounding, latents and decoded images."""
    e = _on(random_embeds(), device)
    model, schedule, record = latent_flow_model(str(flux), e, FLUX_G, 1, None, device)
    assert record["mu"] == pytest.approx(calculate_shift(16)) and record["network_evals_per_forward"] == 1
    decoder, _ = load_vae(str(flux), device)
    z_T = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    sampler, ours = _ours(model, schedule, z_T)
    s = [float(model.sigmas[st.t]) for st in sampler.steps]
    shift = record["shift"]
    u = [x / (shift - (shift - 1) * x) for x in s]
    with torch.no_grad():
        ours_image = decoder(ours)
    theirs, image = _flux_loop(model.model.transformer, decoder.vae, flux / "scheduler", z_T * vp_scale(s[0]),
                               PromptEmbeds(e.cond[[1, 1]], None, e.pooled[[1, 1]]), FLUX_G, u, record["mu"])
    ours, ours_image, theirs, image = ours.cpu(), ours_image.cpu(), theirs.cpu(), image.cpu()
    diff, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    diff_image = (ours_image - image).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\nFlux: max |ours - Flux pipeline loop (same sigmas)| latents {diff:.3g} (max |z_0| {scale:.3g}), "
          f"decoded images {diff_image:.3g}")
    assert torch.isfinite(ours).all() and diff < TOL * max(1.0, scale) and diff_image < TOL * max(1.0, scale)


def test_flux_guidance_is_the_sampling_cfg_and_null_is_3_5(flux, tmp_path, embeds_file, device):
    from benchmark.denoisers.latent_flow import DEFAULT_FLUX_GUIDANCE, FluxVelocity

    task = make_task("latent", 0, pipeline=str(flux), prompts=str(PROMPTS), embeds=str(embeds_file), prompt=0)
    assert task.shape == LATENT
    for cfg, g in ((None, 3.5), (FLUX_G, FLUX_G)):
        loaded = load_latent(flux, task, 2, cfg, device)
        assert isinstance(loaded.model.model, FluxVelocity) and loaded.model.model.guidance == g
        assert loaded.networks["denoiser"]["cfg"] == g and loaded.networks["denoiser"]["network_evals_per_forward"] == 1
    assert DEFAULT_FLUX_GUIDANCE == 3.5
    # the guidance reaches the network: another g, another velocity
    x, ts = torch.randn(1, *LATENT).to(device), torch.tensor([500.0], device=device)
    with torch.no_grad():
        e = _on(random_embeds(), device)
        v1, v2 = (FluxVelocity(loaded.model.model.transformer, e, guidance=g).to(device)(x, ts) for g in (1.0, 5.0))
    assert (v1 - v2).abs().max() > 1e-4
    schnell = save_tiny_flux(tmp_path / "schnell", guidance_embeds=False)
    task = make_task("latent", 0, pipeline=str(schnell), prompts=str(PROMPTS), embeds=str(embeds_file), prompt=0)
    with pytest.raises(ValueError, match="has no guidance embedding .*give cfg null"):
        load_latent(schnell, task, 2, 2.0, device)
    loaded = load_latent(schnell, task, 2, None, device)
    assert loaded.model.model.guidance is None and loaded.networks["denoiser"]["cfg"] is None


def test_flux_dps_at_its_declared_cost(flux, embeds_file, device):
    n = 2
    task = make_task("latent", 0, pipeline=str(flux), prompts=str(PROMPTS), embeds=str(embeds_file), prompt="all")
    method = make_method("dps", 0.3)
    z, costs, _, loaded, _ = run_on_decoded_reward(flux, task, method, None, device, "flux-dps", n)
    assert torch.isfinite(z).all()
    declared = tuple(c * n for c in method.costs_per_sample(4))
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == declared
    assert loaded.model.model.network_evals == costs.denoiser_forwards


def test_against_the_real_flux_pipeline_when_transformers_is_installed(flux, device):
    """FluxPipeline itself (it imports transformers) with precomputed embeddings, our sigmas and packed latents:
    skipped without transformers."""
    pytest.importorskip("transformers")
    from benchmark.denoisers.latent_flow import DEFAULT_FLUX_GUIDANCE

    e = _on(random_embeds(), device)
    model, schedule, record = latent_flow_model(str(flux), e, FLUX_G, 0, None, device)
    decoder, _ = load_vae(str(flux), device)
    pipe = diffusers.FluxPipeline(
        transformer=model.model.transformer, vae=decoder.vae, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(flux / "scheduler"))
    z_T = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    sampler, ours = _ours(model, schedule, z_T)
    s, shift = [float(model.sigmas[st.t]) for st in sampler.steps], record["shift"]
    packed = pipe(prompt_embeds=e.cond[:1], pooled_prompt_embeds=e.pooled[:1], guidance_scale=FLUX_G,
                  num_inference_steps=STEPS, sigmas=[x / (shift - (shift - 1) * x) for x in s],
                  latents=pipe._pack_latents(z_T * vp_scale(s[0]), 1, LATENT[0], *LATENT[1:]), height=16,
                  width=16, output_type="latent").images
    theirs = pipe._unpack_latents(packed, 16, 16, pipe.vae_scale_factor).cpu()     # the pipeline's own packing
    diff = (ours.cpu() - theirs).abs().max().item()
    print(f"\nFlux: max |ours - FluxPipeline (same sigmas)| = {diff:.3g}")
    assert diff < TOL * max(1.0, theirs.abs().max().item())
    assert inspect.signature(pipe.__call__).parameters["guidance_scale"].default == DEFAULT_FLUX_GUIDANCE
