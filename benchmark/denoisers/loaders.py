"""Denoiser loaders: how a cell's `Denoiser(name, loader, source)` becomes an eps-model and its schedule.

- `oracle`: the task's exact denoiser (subspace) on the spec's schedule and T; no source.
- `checkpoint`: the suite's own safetensors checkpoint (`python -m benchmark pretrain`); its task
  and task seed must be the cell's; Algorithm 2 can fine-tune it.
- `diffusers`: any diffusers `UNet2DModel` with its scheduler, from a local folder or a model id in
  the user's local Hugging Face cache (benchmark.denoisers.hf); nothing is downloaded.
- `diffusers_flow`: a flow-matching (velocity) UNet2DModel as an eps-model (benchmark.denoisers.flow).
- `diffusers_latent`: a Stable-Diffusion-style pipeline folder in latent space: a UNet (benchmark.denoisers.latent)
  or an SD3 / Flux flow transformer (benchmark.denoisers.latent_flow).

A loader is a class with `needs_source`, `trainable`, `reads` and
`load(spec, task, device) -> Loaded(model, schedule, networks)`, where `networks` is
{kind: {"file", "sha256", training figures...}} of the files it read (the cell's checkpoint
provenance). Plug-ins add loaders through the entry-point group `guidebench.denoisers`.
"""

from __future__ import annotations

from benchmark.denoisers.base import DenoiserLoader, Loaded
from benchmark.denoisers.flow import DiffusersFlowLoader
from benchmark.denoisers.latent import DiffusersLatentLoader
from benchmark.registry import Registry


class OracleLoader(DenoiserLoader):
    """The task's exact denoiser on the spec's schedule (Sampling.schedule, Sampling.T)."""

    reads = ()

    needs_source = False

    @classmethod
    def load(cls, spec, task, device):
        from benchmark.diffusion import make_schedule

        schedule = make_schedule(spec.sampling.schedule, spec.sampling.T)
        return Loaded(task.oracle(schedule), schedule)


class CheckpointLoader(DenoiserLoader):
    """The suite's own checkpoint (safetensors, benchmark.denoisers.pretrain.save_checkpoint)."""

    reads = ()

    trainable = True

    @classmethod
    def load(cls, spec, task, device):
        from benchmark.checkpoints import network_record
        from benchmark.denoisers.pretrain import load_checkpoint

        path = spec.denoiser.source
        model, schedule, report = load_checkpoint(path, device)
        if report.get("task") != spec.task or report.get("task_seed") != spec.task_seed:
            raise ValueError(f"checkpoint {path} was trained on task {report.get('task')!r} "
                             f"(task_seed {report.get('task_seed')}), not {spec.task!r} ({spec.task_seed})")
        model.requires_grad_(False)
        return Loaded(model, schedule, {"denoiser": network_record(path, "denoiser")}, trainable=model)


class DiffusersLoader(DenoiserLoader):
    """A diffusers UNet2DModel and its scheduler (benchmark.denoisers.hf.load_diffusers)."""

    reads = ()

    @classmethod
    def load(cls, spec, task, device):
        from benchmark.denoisers.hf import load_diffusers

        model, schedule, info = load_diffusers(spec.denoiser.source, device)
        shape = (info.get("in_channels"), info.get("sample_size"), info.get("sample_size"))
        if None not in shape and tuple(task.shape) != shape:
            raise ValueError(f"diffusers model {spec.denoiser.source!r} makes images of shape {list(shape)}, task "
                             f"{spec.task!r} has shape {list(task.shape)}")
        record = {k: v for k, v in info.items() if v is None or isinstance(v, (bool, int, float, str))}
        record.setdefault("file", str(info.get("path", spec.denoiser.source)))
        return Loaded(model, schedule, {"denoiser": record})


DENOISERS: Registry[type[DenoiserLoader]] = Registry(
    "denoiser loader", "guidebench.denoisers",
    {"oracle": OracleLoader, "checkpoint": CheckpointLoader, "diffusers": DiffusersLoader,
     "diffusers_flow": DiffusersFlowLoader, "diffusers_latent": DiffusersLatentLoader})
