"""The networks a task pre-trains, declared by the task (`Task.networks`: name -> Network).

Each network is made once into `<models_dir>/<task>_<name>.safetensors` with its JSON training report
beside it. From the declaration come
- the workflow's pre-training jobs: one generic rule (workflow/rules/pretrain.smk) per (task, network),
  waiting for the networks it `needs` (digits' denoiser waits for the evaluator, which scores its
  unguided samples);
- the config's pre-training keys (`pretrain.<task>`, `settings_schema`): the task-level
  `shared` settings (schedule, T, seed), then per network its own `settings`; a task with a single
  network (a vector task's denoiser) takes them all flat;
- `python -m benchmark pretrain --task T --network N` and its flags (`--batch-size` for batch_size);
- the cells' inputs: the trained denoiser, and the networks `Task.network_files(objective)` names.

A trainer is `trainer(task, network, settings, *, device, progress, needs) -> (save, report)`: settings
holds only what the config or the command line gave (the trainer applies its own defaults), needs maps
each needed network to its file, `save(path)` writes the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: Task-level settings networks may share (classifier guidance needs the noisy classifier on the
#: denoiser's schedule and T).
SHARED = ("schedule", "T", "seed")

#: Every pre-training setting a network may declare: its JSON schema (type, bounds, description), and
#: the one list of their names: the config's `pretrain.<task>` keys are generated from these and the
#: task's declaration (`settings_schema`), `python -m benchmark pretrain` has a flag for each (`flag`);
#: a plug-in network's other settings are free-form.
SETTINGS = {
    "schedule": {"type": "string", "enum": ["cosine", "linear"],
                 "description": "VP noise schedule (classifier guidance needs the noisy classifier on the denoiser's)"},
    "T": {"type": "integer", "minimum": 2, "description": "diffusion steps of the schedule"},
    "seed": {"type": "integer", "minimum": 0, "description": "training seed (initialisation, data, batches, noise)"},
    "hidden": {"type": "integer", "minimum": 1, "description": "width of the ScoreMLP's hidden layers"},
    "depth": {"type": "integer", "minimum": 1, "description": "residual blocks of the ScoreMLP"},
    "width": {"type": "integer", "minimum": 1, "description": "base channels of the network"},
    "epochs": {"type": "integer", "minimum": 1, "description": "training epochs"},
    "batch_size": {"type": "integer", "minimum": 1, "description": "mini-batch size"},
    "lr": {"type": "number", "exclusiveMinimum": 0, "description": "peak learning rate"},
    "n_train": {"type": "integer", "minimum": 1, "description": "training samples drawn from the task's data distribution"},
    "quality_samples": {"type": "integer", "minimum": 2,
                        "description": "unguided samples scored by the evaluator (default: the test-set size)"},
    "quality_steps": {"type": "integer", "minimum": 1, "description": "sampling steps of that quality check"},
}


@dataclass(frozen=True)
class Network:
    """One pre-trained network of a task: how it is trained, what it takes and what it waits for."""

    trainer: Callable
    settings: tuple[str, ...]            # its own settings (config keys; flags --key-with-dashes)
    shared: tuple[str, ...] = ("seed",)  # the task-level settings it reads (SHARED)
    needs: tuple[str, ...] = ()          # networks trained first, whose files reach the trainer
    doc: str = ""
    #: Defaults the config fills in (absent: the trainer's own default applies, named in its docstring).
    defaults: dict = field(default_factory=dict)

    def takes(self) -> tuple[str, ...]:
        return self.shared + self.settings


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def settings_schema(task: str, networks: dict[str, Network]) -> dict:
    """The JSON schema of the config's `pretrain.<task>`, generated from the task's network declaration
    (`networks`: name -> Network): a task with one network takes its settings flat; one with several takes
    the shared settings (schedule, T, seed) at the top and each network's own under its name. Defaults are
    the declarations'."""

    def props(keys, defaults, family=False):
        out = {}
        for k in keys:
            base = dict(SETTINGS.get(k, {}))
            if family:  # a list of values: one checkpoint each (benchmark.pretraining.checkpoint_family)
                description = base.pop("description", "")
                base = {"anyOf": [base, {"type": "array", "minItems": 1, "uniqueItems": True, "items": base}],
                        "description": description + "; a list makes a checkpoint family, one denoiser per value"}
            out[k] = base | ({"default": defaults[k]} if k in defaults else {})
        return out

    if len(networks) == 1:
        (name, net), = networks.items()
        return {"type": "object", "additionalProperties": False, "description": f"{task}: its {name}, {net.doc}",
                "properties": props(net.takes(), net.defaults, family=name == "denoiser")}
    shared = [k for net in networks.values() for k in net.shared]
    defaults = {k: v for net in networks.values() for k, v in net.defaults.items() if k in shared}
    properties = props(dict.fromkeys(shared), defaults)
    for name, net in networks.items():
        properties[name] = {"type": "object", "additionalProperties": False, "default": {},
                            "description": net.doc,
                            "properties": props(net.settings, net.defaults, family=name == "denoiser")}
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "description": f"{task}: its networks {list(networks)}; a setting left out is the network's own default"}


# --- the built-in trainers ------------------------------------------------------------------------

def train_score_mlp(task, network, settings, *, device, progress, needs):
    """A vector task's denoiser: a ScoreMLP by denoising score matching (benchmark.denoisers.pretrain).

    A task with an exact denoiser (`task.has_oracle`) also gets `report["jacobian"]`: the Jacobian
    diagnostics of the trained x0h against the oracle's, per noise level and per objective of the task
    (benchmark.diagnostics.jacobian_diagnostics; 512 samples, seed 0, the same x_t for every checkpoint
    of the task), which the held-out eps-loss does not see."""
    from benchmark.denoisers import pretrain, save_checkpoint

    s = dict(settings)
    if "schedule" in s:
        s["schedule_name"] = s.pop("schedule")
    model, schedule, report = pretrain(task, device=device, progress=progress, **s)
    if task.has_oracle:
        from benchmark.diagnostics import jacobian_diagnostics

        report["jacobian"] = jacobian_diagnostics(model, task.oracle(schedule), schedule, task, n=512, seed=0)
    return (lambda path: save_checkpoint(path, model, schedule, report)), report


def train_unet(task, network, settings, *, device, progress, needs):
    """An image task's U-Net denoiser (v-prediction); with the evaluator among `needs`, the report scores
    its unguided samples (FD, confidence)."""
    from benchmark.classifiers import load_classifier
    from benchmark.denoisers import pretrain_unet, save_checkpoint

    evaluator = None
    if needs.get("evaluator"):
        evaluator, ev_report = load_classifier(needs["evaluator"], "evaluator")
        if ev_report.get("task") != task.name or ev_report.get("task_seed") != task.task_seed:
            raise ValueError(f"evaluator {needs['evaluator']} was trained on task {ev_report.get('task')!r} "
                             f"(task_seed {ev_report.get('task_seed')}), not {task.name!r} ({task.task_seed})")
    s = dict(settings)
    if "schedule" in s:
        s["schedule_name"] = s.pop("schedule")
    model, schedule, report = pretrain_unet(task, evaluator=evaluator, device=device, progress=progress, **s)
    return (lambda path: save_checkpoint(path, model, schedule, report)), report


def train_classifier(task, network, settings, *, device, progress, needs):
    """A classifier of an image task: the guide, the noise-conditional one or the evaluator
    (benchmark.classifiers.pretrain)."""
    from benchmark.classifiers import pretrain_classifier, save_classifier

    s = dict(settings)
    if "schedule" in s:
        s["schedule_name"] = s.pop("schedule")
    model, report = pretrain_classifier(task, network, device=device, progress=progress, **s)
    return (lambda path: save_classifier(path, model, network, report)), report


#: A vector task's one network: its denoiser (a ScoreMLP), all settings flat under pretrain.<task>.
SCORE_MLP = Network(train_score_mlp, ("hidden", "depth", "epochs", "batch_size", "lr", "n_train"), SHARED,
                    doc="ScoreMLP denoiser, denoising score matching on n_train fresh samples of the task",
                    defaults={"schedule": "cosine", "T": 200, "seed": 0, "hidden": 256, "depth": 3, "epochs": 10,
                              "batch_size": 256, "lr": 0.001, "n_train": 65536})
