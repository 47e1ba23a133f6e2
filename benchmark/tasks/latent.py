"""The `latent` task: guidance in the latent space of a Stable-Diffusion-style model, rewards on decoded images.

The chains are latents z [C, h, w] of the pipeline folder `pipeline` (its unet/ or transformer/config.json gives
the shape); the denoiser is its UNet (Stable Diffusion 1.x/2.x) or flow transformer (SD3 / SD3.5) with
classifier-free guidance (loader `diffusers_latent`, benchmark.denoisers.latent and latent_flow),
conditioned on prompt `prompt` of the prompt file `prompts` (.txt one per line, or a JSON list; an index, or
"all": chain i takes prompt i mod P) through the precomputed text embeddings `embeds` (safetensors:
prompt_embeds [P, L, D], negative_prompt_embeds [P or 1, L, D], for SD3 and Flux also pooled_prompt_embeds [P, D'] and
negative_pooled_prompt_embeds; without it they are computed from the folder's text encoders, which needs
`transformers`). These are task parameters, so every one of them is part of a cell's
identity. The classifier-free guidance scale w is a sampling setting, `cfg` (benchmark.spec.Sampling; one value per
experiment), read by the diffusers_latent loader.

Objectives: the images task's `reward_model` (a learned reward from local weights, benchmark.rewards; a reward that
takes a prompt gets the cell's prompt text unless `prompt` is given) and `reward` (a user's function
'package.module:function'), each applied to the decoded images D(z) = vae.decode(z / scaling_factor + shift_factor)
(not clamped; shift_factor 0 for Stable Diffusion 1.x/2.x): r(z) = R(D(z)). The decode is part of the objective, so
the compute counters include it: an objective evaluation is a decode + a reward, an objective gradient a VJP through
both (benchmark.diffusion.counting).

Metrics on decoded images clipped to [-1, 1]: diversity (mean pairwise distance). No data (nothing to
pre-train; no oracle), no data range (latents are unbounded: sampling's clip_x0 is refused), no gallery
(the cell's gallery would show latents).
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.objectives.base import Objective
from benchmark.tasks.base import Task


class Decoded(Objective):
    """r(z) = R(D(z)): the reward R of the decoded images D(z) (module docstring); one objective evaluation
    per latent, decode included."""

    kind = "reward"
    optimum = None

    def __init__(self, inner: Objective, decoder: torch.nn.Module, decoder_sha256: str | None = None):
        super().__init__()
        self.inner, self.decoder, self.decoder_sha256 = inner, decoder, decoder_sha256
        self.name = inner.name

    def for_chains(self, n: int) -> Decoded:
        super().for_chains(n)
        self.inner.for_chains(n)
        return self

    @property
    def reward(self):
        return getattr(self.inner, "reward", None)

    def params(self) -> dict:
        """The inner reward's parameters (the objective protocol: what it was built with); the VAE it decodes with
        is recorded with the cell's networks (the diffusers_latent loader's "vae" record joins the run id)."""
        return self.inner.params()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(self.decoder(z))


class LatentUserReward(Decoded):
    """`reward` of the latent task: the images task's UserReward (fn = 'package.module:function') on D(z)."""

    name = "reward"
    tasks = ("latent",)

    def __init__(self, task, fn: str | None = None):
        from benchmark.tasks.images.objectives import UserReward

        super().__init__(UserReward(task, fn=fn), *task.decoder())

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        from benchmark.tasks.images.objectives import UserReward

        UserReward.check_params(params, task, task_seed)


def _takes_prompt(model) -> bool:
    from benchmark.rewards import reward_class, reward_options

    return model is not None and "prompt" in reward_options(reward_class(model))


class LatentRewardModel(Decoded):
    """`reward_model` of the latent task: the images task's RewardModelObjective (benchmark.rewards, local weights)
    on D(z); a reward model that takes a prompt gets the cell's prompt text when `prompt` is not given (and the
    task's `prompt` is an index)."""

    name = "reward_model"
    tasks = ("latent",)

    def __init__(self, task, model: str | None = None, weights: str | None = None, encoder: str | None = None,
                 prompt: str | None = None, sha256: str | None = None):
        from benchmark.tasks.images.objectives import RewardModelObjective

        if prompt is None and task.prompt != "all" and _takes_prompt(model):
            prompt = task.prompt_text()
        super().__init__(RewardModelObjective(task, model=model, weights=weights, encoder=encoder, prompt=prompt,
                                              sha256=sha256), *task.decoder())

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        from benchmark.tasks.images.objectives import RewardModelObjective

        if params.get("prompt") is None and _takes_prompt(params.get("model")):
            params = dict(params) | {"prompt": "(the cell's prompt)"}     # filled in when built
        RewardModelObjective.check_params(params, task, task_seed)


class LatentTask(Task):
    name = "latent"
    metric_directions = {"diversity": "higher"}
    is_image = False
    data_range = None
    networks = {}

    def __init__(self, task_seed: int = 0, pipeline: str | None = None, prompts: str | None = None,
                 embeds: str | None = None, prompt: int | str = 0, negative: str = ""):
        super().__init__(task_seed)
        self.check_params(pipeline, prompts, prompt)
        self.pipeline, self.prompts_file, self.embeds = str(pipeline), str(prompts), embeds
        self.prompt, self.negative = prompt, negative
        from benchmark.denoisers.latent import read_prompts

        self.prompts = read_prompts(prompts)
        if prompt != "all" and prompt >= len(self.prompts):
            raise ValueError(f"task 'latent': prompt {prompt} is out of range: {prompts} holds {len(self.prompts)} "
                             "prompts")
        self._shape = None
        self._decoder = None
        self._embeds = None

    @staticmethod
    def check_params(pipeline, prompts, prompt) -> None:
        if not (isinstance(pipeline, (str, Path)) and str(pipeline)):
            raise ValueError("task 'latent' needs pipeline: a Stable-Diffusion-style pipeline folder (vae/, unet/ or "
                             "transformer/, scheduler/, model_index.json) or a model id in the local Hugging Face "
                             "cache")
        if not (isinstance(prompts, (str, Path)) and str(prompts)):
            raise ValueError("task 'latent' needs prompts: a prompt file (.txt one per line, or a JSON list)")
        if prompt != "all" and (isinstance(prompt, bool) or not isinstance(prompt, int) or prompt < 0):
            raise ValueError(f"task 'latent': prompt must be 'all' or a prompt's index (>= 0), got {prompt!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            from benchmark.denoisers.latent import pipeline_latent_shape

            self._shape = pipeline_latent_shape(self.pipeline)
        return self._shape

    def prompt_text(self, chain: int = 0) -> str:
        """The prompt chain `chain` is conditioned on."""
        return self.prompts[(chain if self.prompt == "all" else self.prompt) % len(self.prompts)]

    def conditioning(self):
        """The prompts' PromptEmbeds (benchmark.denoisers.latent: prompt_embeds [P, L, D], the negatives, and SD3's
        pooled embeddings): from `embeds`, else from the pipeline's text encoders (needs transformers)."""
        if self._embeds is None:
            from benchmark.denoisers.latent import encode_prompts, load_prompt_embeds, resolve_pipeline

            if self.embeds is not None:
                self._embeds = load_prompt_embeds(self.embeds, len(self.prompts))
            else:
                root, _ = resolve_pipeline(self.pipeline)
                self._embeds = encode_prompts(root, self.prompts, negative=self.negative)
        return self._embeds

    def decoder(self) -> tuple[torch.nn.Module, str]:
        """(the pipeline's VAE decoder D, its weights' digest), loaded once."""
        if self._decoder is None:
            from benchmark.denoisers.latent import load_vae

            dec, record = load_vae(self.pipeline)
            self._decoder = (dec, record["sha256"])
        return self._decoder

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise ValueError("task 'latent' has no data: its denoiser is a pre-trained latent diffusion model "
                         "(loader diffusers_latent)")

    # --- metrics --------------------------------------------------------------------------------------

    def decode(self, z: torch.Tensor, batch: int = 8) -> torch.Tensor:
        """Decoded images of latents z, no graph, in chunks of `batch`, clipped to [-1, 1]."""
        decoder = self.decoder()[0].to(z.device)
        with torch.no_grad():
            return torch.cat([decoder(z[i:i + batch]) for i in range(0, z.shape[0], batch)]).clamp(-1, 1)

    def sample_metrics(self, z: torch.Tensor, objective=None) -> dict:
        """diversity (mean pairwise distance) of the decoded images, for B >= 2."""
        from benchmark.images.metrics import mean_pairwise_distance

        if z.shape[0] < 2:
            return {}
        return {"diversity": mean_pairwise_distance(self.decode(z))}
