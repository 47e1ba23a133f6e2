"""Latent diffusion (benchmark/denoisers/latent.py, benchmark/tasks/latent.py) on a tiny randomly initialised
Stable-Diffusion-style pipeline folder (AutoencoderKL + UNet2DConditionModel + scheduler, model_index.json)
saved locally (tests/latent_fixture.py), with the shipped example prompts and random stand-in embeddings: never a
download; transformers (the test extra) only for the real pipelines and the text encoders. The model tests and the
cell run on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from benchmark.denoisers.latent import (EMBED_KEYS, LatentEps, PromptEmbeds, encode_prompts,  # noqa: E402
                                        load_latent_unet, load_prompt_embeds, load_vae, prompt_rows, read_prompts,
                                        resolve_pipeline)
from benchmark.diffusion import (Costs, CountingDenoiser, PerSampleNoise, Sampler, derive_seed,  # noqa: E402
                                 sample, timestep_grid)
from benchmark.methods import make_method  # noqa: E402
from benchmark.tasks import make_task  # noqa: E402
from tests.denoisers.test_hf import full_float32  # noqa: E402, F401 (autouse: no TF32 on cuda, see there)
from tests.latent_fixture import D, LATENT, T, load_latent, run_on_decoded_reward, save_tiny_sd  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROMPTS, EMBEDS = FIXTURES / "latent_prompts.txt", FIXTURES / "latent_prompt_embeds.safetensors"
STEPS, CFG = 10, 3.0
L = 4                       # tokens of the shipped embeddings [3, 4, D] (LATENT, D: tests/latent_fixture.py)
#: max |ours - the pipeline loop| / max(1, max |z_0|) in float32 (the same arithmetic; measured ~1e-6)
TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def unet_and_schedule(pipe, device):
    unet, schedule, prediction_type, _ = load_latent_unet(str(pipe), device)
    return unet, schedule, prediction_type


def _embeds(device):
    """The shipped (prompt_embeds [3, L, D], negative_prompt_embeds [1, L, D]) on `device`."""
    cond, neg, *_ = load_prompt_embeds(EMBEDS, 3)
    return cond.to(device), neg.to(device)


# --- prompts and embeddings ----------------------------------------------------------------------------------

def test_prompt_files(tmp_path):
    prompts = read_prompts(PROMPTS)
    assert len(prompts) == 3 and prompts[0] == "A red colored car."
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "a"}, "b"]))
    assert read_prompts(tmp_path / "p.json") == ["a", "b"]
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="at least one prompt"):
        read_prompts(tmp_path / "empty.txt")
    cond, neg, *_ = load_prompt_embeds(EMBEDS, 3)
    assert cond.shape == (3, L, D) and neg.shape == (1, L, D)
    with pytest.raises(ValueError, match="hold 3 prompts"):
        load_prompt_embeds(EMBEDS, 4)
    assert sum(p.stat().st_size for p in (PROMPTS, EMBEDS)) < 100_000


def test_pooled_embeddings_and_their_refusals(tmp_path):
    """SD3's pooled embeddings load beside the token embeddings; wrong shapes are refused, naming the tensor."""
    from safetensors.torch import save_file

    cond, neg, *_ = load_prompt_embeds(EMBEDS, 3)
    path = tmp_path / "e.safetensors"

    def write(**extra):
        save_file({"prompt_embeds": cond, "negative_prompt_embeds": neg} | extra, str(path))
        return path

    e = load_prompt_embeds(write(pooled_prompt_embeds=torch.ones(3, 5), negative_pooled_prompt_embeds=torch.ones(1, 5)))
    assert isinstance(e, PromptEmbeds) and e.pooled.shape == (3, 5) and e.neg_pooled.shape == (1, 5)
    assert load_prompt_embeds(EMBEDS).pooled is None and EMBED_KEYS[2] == "pooled_prompt_embeds"
    with pytest.raises(ValueError, match=r"pooled_prompt_embeds \[2, 5\] must be \[3, D'\]"):
        load_prompt_embeds(write(pooled_prompt_embeds=torch.ones(2, 5)))
    with pytest.raises(ValueError, match=r"negative_pooled_prompt_embeds \[1, 4\] needs \[1 or 3, 5\]"):
        load_prompt_embeds(write(pooled_prompt_embeds=torch.ones(3, 5), negative_pooled_prompt_embeds=torch.ones(1, 4)))
    with pytest.raises(ValueError, match="needs pooled_prompt_embeds beside it"):
        load_prompt_embeds(write(negative_pooled_prompt_embeds=torch.ones(1, 4)))


def test_prompt_rows():
    """An index: every row; "all": row j -> chain j mod chains -> prompt (j mod chains) mod P."""
    assert prompt_rows(2, None, 3, 4, "cpu").tolist() == [2, 2, 2, 2]
    assert prompt_rows("all", 4, 3, 8, "cpu").tolist() == [0, 1, 2, 0, 0, 1, 2, 0]
    assert prompt_rows("all", None, 3, 5, "cpu").tolist() == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="not stacked copies"):
        prompt_rows("all", 4, 3, 6, "cpu")


def test_a_pipeline_without_a_supported_network_is_refused(tmp_path):
    """A PixArt folder (PixArtTransformer2DModel) names the networks that are supported."""
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "PixArtAlphaPipeline", "transformer": ["diffusers", "PixArtTransformer2DModel"],
         "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DPMSolverMultistepScheduler"]}))
    with pytest.raises(ValueError, match="no model component .*UNet2DConditionModel, SD3Transformer2DModel, "
                                         "FluxTransformer2DModel"):
        resolve_pipeline(str(tmp_path))


def test_text_encoder_needs_transformers_or_names_what_is_missing(pipe):
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="transformers"):
            encode_prompts(pipe, ["a"])
    else:
        with pytest.raises(ValueError, match="no text_encoder"):
            encode_prompts(pipe, ["a"])


def _pipeline_from_text(kind, root, prompt, z_T, sigmas, device):
    """The real pipeline of `kind` called with the prompt's text (its own text encoders, negative prompt "", its
    default sequence lengths), from z_T on our grid: SD with DDIM (trailing spacing: our t grid, eta 0), SD3 and
    Flux with our sigmas as their unshifted `sigmas` argument; the final latents [1, C, h, w] on the CPU."""
    from benchmark.denoisers.flow import vp_scale

    if kind == "sd":
        ddim = diffusers.DDIMScheduler.from_pretrained(root / "scheduler", timestep_spacing="trailing",
                                                       set_alpha_to_one=True, clip_sample=False)
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(root, scheduler=ddim, local_files_only=True)
        return pipe.to(device)(prompt=prompt, guidance_scale=CFG, num_inference_steps=STEPS, latents=z_T, eta=0.0,
                               output_type="latent").images.cpu()
    s, shift = sigmas
    u = [x / (shift - (shift - 1) * x) for x in s]
    start = z_T * vp_scale(s[0])
    if kind == "sd3":
        pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(root, local_files_only=True).to(device)
        return pipe(prompt=prompt, guidance_scale=CFG, num_inference_steps=STEPS, sigmas=u, latents=start,
                    height=16, width=16, output_type="latent").images.cpu()
    pipe = diffusers.FluxPipeline.from_pretrained(root, local_files_only=True).to(device)
    packed = pipe(prompt=prompt, guidance_scale=CFG, num_inference_steps=STEPS, sigmas=u, height=16, width=16,
                  latents=pipe._pack_latents(start, 1, *LATENT), output_type="latent").images
    return pipe._unpack_latents(packed, 16, 16, pipe.vae_scale_factor).cpu()


@pytest.mark.parametrize("kind", ["sd", "sd3", "flux"])
def test_the_embed_command_gives_what_the_pipeline_computes_from_text(kind, tmp_path, record_property, device):
    """`python -m benchmark.denoisers.latent embed` on a tiny pipeline with text encoders (tests/latent_fixture.py),
    then a cell's model from that file and our DDIM(eta = 0), equals the real pipeline called with the prompt's
    text (Stable Diffusion, SD3: classifier-free guidance with the empty negative prompt; Flux: embedded guidance):
    the whole path from text to latents. Skipped without transformers."""
    pytest.importorskip("transformers")
    from benchmark.denoisers.latent import _main
    from tests.latent_fixture import save_tiny_flux, save_tiny_sd3

    root = {"sd": save_tiny_sd, "sd3": save_tiny_sd3, "flux": save_tiny_flux}[kind](tmp_path / kind, text=True)
    out = tmp_path / "embeds.safetensors"
    assert _main(["embed", str(root), str(PROMPTS), str(out)]) == 0
    e = load_prompt_embeds(out, 3)
    assert (e.pooled is None) == (kind == "sd") and e.neg is not None
    task = make_task("latent", 0, pipeline=str(root), prompts=str(PROMPTS), embeds=str(out), prompt=1)
    loaded = load_latent(root, task, 1, CFG, device)
    z_T = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    sampler = Sampler(CountingDenoiser(loaded.model, Costs()), loaded.schedule, steps=STEPS, eta=0.0)
    ours = sample(sampler, make_method("none"), z_T.clone(), PerSampleNoise([1], LATENT, device=device)).cpu()
    sigmas = None if kind == "sd" else ([float(loaded.model.sigmas[st.t]) for st in sampler.steps],
                                        loaded.networks["denoiser"]["shift"])
    theirs = _pipeline_from_text(kind, root, task.prompt_text(), z_T.clone(), sigmas, device)
    diff = (ours - theirs).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\n{kind}: text -> embed -> ours vs the pipeline from text: max |difference| {diff:.3g}")
    assert torch.isfinite(ours).all() and diff < 1e-4 * max(1.0, theirs.abs().max().item())
    if kind == "sd3":                   # the embed command needs all three text encoders (T5 included)
        import shutil

        shutil.rmtree(root / "text_encoder_3")
        with pytest.raises(ValueError, match="has no text_encoder_3/ .*T5 included"):
            _main(["embed", str(root), str(PROMPTS), str(out)])


# --- classifier-free guidance and its cost --------------------------------------------------------------------

def test_cfg_formula_and_counting(unet_and_schedule, device):
    """Classifier-free guidance as the pipeline combines it, prompt selection and the 2 UNet evaluations per counted
    forward. On `device`: t is made there (a UNet2DConditionModel moves only a 0-d timestep to the sample's device),
    and each LatentEps is moved with .to(device) as the loader does (its ab, cond and uncond are buffers)."""
    unet, schedule, prediction_type = unet_and_schedule
    cond, neg = _embeds(device)
    z = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.tensor([T, 37], device=device)
    with torch.no_grad():
        e_c = unet(z, t - 1, encoder_hidden_states=cond[[1, 1]]).sample.cpu()
        e_u = unet(z, t - 1, encoder_hidden_states=neg[[0, 0]]).sample.cpu()
        guided = LatentEps(unet, schedule, prediction_type, cond, neg, cfg=CFG, prompt=1).to(device)
        assert torch.allclose(guided(z, t).cpu(), e_u + CFG * (e_c - e_u), atol=1e-5, rtol=0)
        plain = LatentEps(unet, schedule, prediction_type, cond, neg, cfg=1.0, prompt=1).to(device)
        assert torch.allclose(plain(z, t).cpu(), e_c, atol=1e-6, rtol=0)
        # prompt "all": row j is chain j mod chains, chain i takes prompt i mod P
        per_chain = LatentEps(unet, schedule, prediction_type, cond, neg, cfg=1.0, prompt="all", chains=2).to(device)
        zz = torch.cat([z, z])
        e = per_chain(zz, torch.cat([t, t])).cpu()
        for j in range(4):
            want = unet(zz[j:j + 1], t[j % 2:j % 2 + 1] - 1, encoder_hidden_states=cond[j % 2:j % 2 + 1]).sample
            assert torch.allclose(e[j:j + 1], want.cpu(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        LatentEps(unet, schedule, prediction_type, cond, None, cfg=CFG)
    # the counting wrapper sees one forward per row; the UNet ran twice per row (and twice per VJP)
    costs = Costs()
    counted = CountingDenoiser(guided, costs)
    guided.network_evals = 0
    x = z.clone().requires_grad_(True)
    counted(x, 500).sum().backward()
    assert (costs.denoiser_forwards, costs.denoiser_vjps) == (2, 2)
    assert guided.network_evals == 2 * costs.denoiser_forwards and guided.network_evals_per_forward == 2


# --- our DDIM(eta = 0) = StableDiffusionPipeline's loop --------------------------------------------------------

def _pipeline_loop(unet, vae, scheduler_dir, latents, cond, neg, w, steps):
    """StableDiffusionPipeline.__call__'s denoising loop and decode (diffusers 0.42,
    pipelines/stable_diffusion/pipeline_stable_diffusion.py, '# 7. Denoising loop'), with a DDIMScheduler
    (trailing spacing, set_alpha_to_one: our grid) and eta = 0; prompt_embeds = cat([negative, prompt]). On the
    latents' device; the scheduler's timesteps stay on the CPU (0-d: the UNet moves them, the step broadcasts)."""
    ddim = diffusers.DDIMScheduler.from_pretrained(scheduler_dir, timestep_spacing="trailing", set_alpha_to_one=True,
                                                   clip_sample=False, thresholding=False)
    ddim.set_timesteps(steps)
    assert [int(t) + 1 for t in ddim.timesteps] == timestep_grid(T, steps)[:-1]
    prompt_embeds = torch.cat([neg, cond])
    latents = latents * ddim.init_noise_sigma
    with torch.no_grad():
        for t in ddim.timesteps:
            latent_model_input = ddim.scale_model_input(torch.cat([latents] * 2), t)
            noise_pred = unet(latent_model_input, t, encoder_hidden_states=prompt_embeds).sample
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + w * (noise_pred_text - noise_pred_uncond)
            latents = ddim.step(noise_pred, t, latents, eta=0.0).prev_sample
        image = vae.decode(latents / vae.config.scaling_factor).sample
    return latents, image


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_eta0_matches_the_stable_diffusion_loop(pipe, tmp_path, prediction_type, record_property, device):
    folder = pipe if prediction_type == "epsilon" else save_tiny_sd(tmp_path / "sd-v", prediction_type)
    unet, schedule, ptype, _ = load_latent_unet(str(folder), device)
    assert ptype == prediction_type
    decoder, _ = load_vae(str(folder), device)
    cond, neg = _embeds(device)
    B = 2
    z_T = torch.randn(B, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    model = LatentEps(unet, schedule, ptype, cond, neg, cfg=CFG, prompt=2).to(device)
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=STEPS, eta=0.0)
    noise = PerSampleNoise([derive_seed("sd-ddim", i) for i in range(B)], LATENT, device=device)
    ours = sample(sampler, make_method("none"), z_T.clone(), noise)
    with torch.no_grad():
        ours_image = decoder(ours)
    theirs, image = _pipeline_loop(unet, decoder.vae, folder / "scheduler", z_T.clone(), cond[[2, 2]],
                                   neg[[0, 0]], CFG, STEPS)
    ours, ours_image, theirs, image = ours.cpu(), ours_image.cpu(), theirs.cpu(), image.cpu()
    diff, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    diff_image = (ours_image - image).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\nlatent {prediction_type}: max |ours - SD pipeline loop| latents {diff:.3g} (max |z_0| {scale:.3g}), "
          f"decoded images {diff_image:.3g}")
    assert torch.isfinite(ours).all() and diff < TOL * max(1.0, scale) and diff_image < TOL * max(1.0, scale)


def test_against_the_real_pipeline_when_transformers_is_installed(pipe, device):
    """StableDiffusionPipeline itself (it imports transformers) with prompt_embeds: skipped without it. On `device`
    (the pipeline runs where its UNet is)."""
    pytest.importorskip("transformers")
    unet, schedule, ptype, _ = load_latent_unet(str(pipe), device)
    decoder, _ = load_vae(str(pipe), device)
    ddim = diffusers.DDIMScheduler.from_pretrained(pipe / "scheduler", timestep_spacing="trailing",
                                                   set_alpha_to_one=True, clip_sample=False)
    sd = diffusers.StableDiffusionPipeline(vae=decoder.vae, text_encoder=None, tokenizer=None, unet=unet,
                                           scheduler=ddim, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    cond, neg = _embeds(device)
    z_T = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(7)).to(device)
    theirs = sd(prompt_embeds=cond[:1], negative_prompt_embeds=neg, guidance_scale=CFG, num_inference_steps=STEPS,
                latents=z_T.clone(), eta=0.0, output_type="latent").images.cpu()
    model = LatentEps(unet, schedule, ptype, cond, neg, cfg=CFG, prompt=0).to(device)
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=STEPS, eta=0.0)
    ours = sample(sampler, make_method("none"), z_T.clone(), PerSampleNoise([1], LATENT, device=device)).cpu()
    assert (ours - theirs).abs().max().item() < TOL * max(1.0, theirs.abs().max().item())
    from benchmark.denoisers.latent import DEFAULT_CFG       # null cfg = the pipeline's own default

    assert inspect.signature(sd.__call__).parameters["guidance_scale"].default == DEFAULT_CFG


# --- the task: rewards on decoded images, decode counted -----------------------------------------------------

def _task(pipe, **params):
    return make_task("latent", 0, pipeline=str(pipe), prompts=str(PROMPTS), embeds=str(EMBEDS), **params)


def test_task_shape_conditioning_and_refusals(pipe):
    task = _task(pipe, prompt=1)
    assert task.shape == LATENT and task.prompt_text() == "A photo of a cat sitting on a wooden bench."
    with pytest.raises(ValueError, match="out of range"):
        _task(pipe, prompt=3)
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['cfg'\]"):     # a sampling setting
        _task(pipe, cfg=CFG)
    with pytest.raises(ValueError, match="no data"):
        task.sample_data(2, torch.Generator())
    with pytest.raises(ValueError, match="has no objective"):
        task.objective("inpaint", {})


def test_the_loader_reads_the_sampling_cfg_and_null_is_7_5(pipe, device):
    """sampling.cfg sets w; null is StableDiffusionPipeline's 7.5 (2 UNet evaluations per forward), 1 the
    conditional model alone (1); the record names the scale used."""
    from benchmark.denoisers.latent import DEFAULT_CFG

    task = _task(pipe, prompt=0)
    for cfg, w, evals in ((None, 7.5, 2), (1.0, 1.0, 1), (CFG, CFG, 2)):
        loaded = load_latent(pipe, task, 2, cfg, device)
        assert (loaded.model.cfg, loaded.model.network_evals_per_forward, loaded.networks["denoiser"]["cfg"]) == \
            (w, evals, w)
    assert DEFAULT_CFG == 7.5


@pytest.mark.parametrize("name,strength,params",
                         [("dps", 0.3, {}), ("bon", 0.0, {"n": 2}), ("smc", 1.0, {"particles": 2})])
def test_methods_on_decoded_rewards_count_the_decode(pipe, name, strength, params, device):
    """dps, bon, smc at the declared cost: every objective evaluation / gradient is a decode (+ VJP) + reward."""
    n = 2
    task = _task(pipe, prompt=0 if name == "dps" else "all")     # "all": chain i takes prompt i mod 3
    method = make_method(name, strength, **params)
    z, costs, decodes, loaded, objective = run_on_decoded_reward(pipe, task, method, CFG, device, "latent-methods", n)
    assert loaded.networks["denoiser"]["network_evals_per_forward"] == 2
    assert z.shape == (n, *LATENT) and torch.isfinite(z).all()
    declared = tuple(c * n for c in method.costs_per_sample(4))
    assert (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads) == declared
    assert sum(decodes) == costs.objective_evals > 0
    assert loaded.model.network_evals == 2 * costs.denoiser_forwards
    metrics = task.sample_metrics(z, objective)
    assert math.isfinite(float(metrics["diversity"]))


def test_reward_gradient_flows_through_the_decoder(pipe, device):
    task = _task(pipe)
    objective = task.objective("reward", {"fn": "images_fixture:brightness"}).to(device)
    z = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3)).to(device).requires_grad_(True)
    r = objective(z)
    (g,) = torch.autograd.grad(r.sum(), z)
    dec = task.decoder()[0]                                         # the objective's: on `device` with it
    with torch.no_grad():
        assert torch.allclose(r.cpu(), dec(z).flatten(1).mean(-1).cpu(), atol=1e-6, rtol=0)
    assert g.abs().sum() > 0 and objective.params() == {"fn": "images_fixture:brightness"}   # VAE: the networks' record


def test_one_cell_end_to_end(pipe, device):
    """A `latent` cell through the suite's own cell runner: spec -> loader -> sampler -> rows."""
    from benchmark.cell import run_cell
    from benchmark.spec import CellSpec, Denoiser, Rounds, Sampling

    spec = CellSpec(task="latent", objective="reward", method="dps", strength=0.3,
                    task_params={"pipeline": str(pipe), "prompts": str(PROMPTS), "embeds": str(EMBEDS), "prompt": 1},
                    objective_params={"fn": "images_fixture:brightness"},
                    denoiser=Denoiser(name="sd_tiny", loader="diffusers_latent", source=str(pipe)),
                    sampling=Sampling(steps=4, cfg=CFG), rounds=Rounds(rounds=1, samples=2))
    rows = run_cell(spec, device)
    last = rows[-1]
    assert last["status"] == "ok" and last["cost_objective_evals"] == 8 and last["cost_denoiser_forwards"] == 8
    info = json.loads(last["checkpoint_info"])
    assert info["denoiser"]["cfg"] == CFG and info["denoiser"]["network_evals_per_forward"] == 2
    assert info["vae"]["sha256"]
    assert "diversity" in {r["metric"] for r in rows} and any(r["metric"].startswith("reward") for r in rows)
