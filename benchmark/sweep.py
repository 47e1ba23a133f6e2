"""The sweep: a validated config -> the table of cells (one Snakemake job each).

The structure of the config is checked by the JSON schema in workflow/schemas/ (Snakemake's
`validate`, which also fills defaults); `check_config` adds what a schema cannot know: names
against the registries (methods, their hyper-parameters, tasks, objectives, denoisers) and
impossible combinations. `cells_from_config` is the one function that makes the target list.

A cell id is a relative path
`<task>/<denoiser>/<experiment>/<objective>/<method>/<algorithm>/s<strength>_n<steps>_seed<seed>`
whose every component matches SAFE_NAME, so no value can escape the results folder. Task and
denoiser lead the path so the workflow's rules can name the checkpoint a cell needs by pattern.

A job is a cell id without its `_seed<seed>` suffix: with `batch_seeds` one process runs all
seeds of a job (the start-up, mostly `import torch`, is paid once), each seed still its own
cell and file; without it every cell is its own job.

Tasks that load pre-trained networks (`Task.uses_models`, the image task digits) have four of them,
each pre-trained by its own rule into the models folder as `<task>_<network>.safetensors`
(NETWORKS); their cells get `--models-dir` and depend on all four. An experiment's
`objective_params` reach every one of its cells as `--objective-param NAME=VALUE`; they are not
part of the cell id (the experiment name is). A method runs on every objective of its experiment,
or on the subset its `objectives` names (classifier guidance only where there is a noise-conditional
classifier).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

SAFE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*"
# A relative path of SAFE_NAMEs, written flat (lookaheads, no repeated group) because Snakemake
# matches it against every input file of the aggregate: no component starts with '.' or '-'
# (so no '..'), no empty component, no leading '/'.
CELL_ID_PATTERN = r"(?![./-])(?!.*/[.-])(?!.*//)[A-Za-z0-9_.+=/-]+"
_SAFE = re.compile(rf"^{SAFE_NAME}$")
#: The networks of a task that `uses_models`, each `<models_dir>/<task>_<network>.safetensors`:
#: the denoiser (a cell's --checkpoint) and the classifiers it loads from --models-dir.
NETWORKS = ("denoiser", "classifier", "noisy_classifier", "evaluator")
#: Per-network pre-training settings of such a task: config key -> `pretrain` flag (absent or
#: null: the network's own default). The denoiser also takes the QUALITY_KEYS.
NETWORK_KEYS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "width": "--width"}
QUALITY_KEYS = {"quality_samples": "--quality-samples", "quality_steps": "--quality-steps"}


class ConfigError(ValueError):
    """A config that cannot run; the message names the key, the bad value and what is allowed."""


@dataclass(frozen=True)
class CellArgs:
    experiment: str
    task: str
    objective: str
    denoiser: str
    method: str
    strength: float
    seed: int
    rounds: int
    samples: int
    steps: int | None
    eta: float
    algorithm: str
    linearise: str
    finetune_start: int
    finetune_lr: float
    finetune_steps: int
    task_seed: int
    params: tuple[tuple[str, object], ...]
    objective_params: tuple[tuple[str, object], ...] = ()
    models_dir: str | None = None   # set for tasks that load pre-trained networks from it

    def cli(self) -> list[str]:
        """`python -m benchmark run` arguments (everything but --seed/--checkpoint/--out/--device/--threads)."""
        args = ["--task", self.task, "--objective", self.objective, "--method", self.method,
                "--strength", repr(self.strength), "--rounds", str(self.rounds),
                "--samples", str(self.samples), "--denoiser", self.denoiser, "--eta", repr(self.eta),
                "--algorithm", self.algorithm, "--linearise", self.linearise,
                "--finetune-start", str(self.finetune_start), "--finetune-lr", repr(self.finetune_lr),
                "--finetune-steps", str(self.finetune_steps), "--task-seed", str(self.task_seed)]
        if self.steps is not None:
            args += ["--steps", str(self.steps)]
        for k, v in self.params:
            args += ["--param", f"{k}={_cli_value(v)}"]
        for k, v in self.objective_params:
            args += ["--objective-param", f"{k}={_cli_value(v)}"]
        if self.models_dir is not None:
            args += ["--models-dir", self.models_dir]
        return args


def _cli_value(value) -> str:
    """A config value as the CLI parses it back (JSON, else the raw string): true, not True."""
    return value if isinstance(value, str) else json.dumps(value)


def _safe(where: str, value) -> str:
    text = str(value)
    if not _SAFE.match(text):
        raise ConfigError(f"{where}: {text!r} cannot be part of a file name; allowed: letters, digits and "
                          "'_.+=-', not starting with '.' or '-' (no '/' or '..')")
    return text


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_config(config: dict) -> None:
    """Semantic checks with the registries; raises ConfigError naming the key."""
    from benchmark.denoisers import DENOISERS
    from benchmark.methods import METHODS, make_method, method_params
    from benchmark.optimize import ALGORITHMS, LINEARISATIONS
    from benchmark.tasks import TASKS

    if not config.get("experiments"):
        raise ConfigError("experiments: empty; declare at least one experiment")
    if not config.get("seeds"):
        raise ConfigError("seeds: empty grid; give at least one seed")
    for name, exp in config["experiments"].items():
        where = f"experiments.{name}"
        _safe(where, name)
        task = exp["task"]
        if task not in TASKS:
            raise ConfigError(f"{where}.task: unknown task {task!r}; allowed: {sorted(TASKS)}")
        if exp["denoiser"] not in DENOISERS:
            raise ConfigError(f"{where}.denoiser: unknown denoiser {exp['denoiser']!r}; allowed: {list(DENOISERS)}")
        t = TASKS[task]
        if exp["denoiser"] == "oracle" and not t.has_oracle:
            raise ConfigError(f"{where}.denoiser: task {task!r} has no oracle denoiser; allowed: ['trained']")
        if exp["denoiser"] == "trained" and task not in config.get("pretrain", {}):
            raise ConfigError(f"{where}.denoiser: 'trained' needs a pretrain.{task} section")
        if not exp.get("objectives"):
            raise ConfigError(f"{where}.objectives: empty; allowed: {list(t.objectives)}")
        for obj in exp["objectives"]:
            if obj not in t.objectives:
                raise ConfigError(f"{where}.objectives: task {task!r} has no objective {obj!r}; "
                                  f"allowed: {list(t.objectives)}")
            allowed = t.objective_params.get(obj, {})
            for k in exp.get("objective_params") or {}:
                if k not in allowed:  # every cell of the experiment gets every parameter
                    raise ConfigError(f"{where}.objective_params: objective {obj!r} of task {task!r} has no "
                                      f"parameter {k!r}; allowed: {sorted(allowed) or 'none'}"
                                      + ("" if len(exp["objectives"]) == 1 else
                                         " (the parameters reach every objective of the experiment: give "
                                         "objectives with other parameters their own experiment)"))
        for alg in _as_list(exp.get("algorithm", "alg1")):
            if alg not in ALGORITHMS:
                raise ConfigError(f"{where}.algorithm: unknown {alg!r}; allowed: {list(ALGORITHMS)}")
            if alg == "alg2" and exp["denoiser"] != "trained":
                raise ConfigError(f"{where}.algorithm: 'alg2' fine-tunes the network; needs denoiser 'trained'")
        if exp.get("linearise", "per_sample") not in LINEARISATIONS:
            raise ConfigError(f"{where}.linearise: unknown {exp['linearise']!r}; allowed: {list(LINEARISATIONS)}")
        if not exp.get("methods"):
            raise ConfigError(f"{where}.methods: empty; allowed: {sorted(METHODS)}")
        for mname, mcfg in exp["methods"].items():
            mwhere = f"{where}.methods.{mname}"
            if mname not in METHODS:
                raise ConfigError(f"{mwhere}: unknown method {mname!r}; allowed: {sorted(METHODS)}")
            for obj in mcfg.get("objectives") or []:
                if obj not in exp["objectives"]:
                    raise ConfigError(f"{mwhere}.objectives: {obj!r} is not an objective of the experiment; "
                                      f"allowed: {list(exp['objectives'])}")
            strengths = mcfg.get("strengths")
            if not strengths:
                raise ConfigError(f"{mwhere}.strengths: empty grid; give at least one strength")
            if mname == "none" and any(s != 0 for s in strengths):
                raise ConfigError(f"{mwhere}.strengths: 'none' has no strength; allowed: [0.0]")
            allowed = {k: v for k, v in method_params(mname).items() if k != "strength"}
            for k, v in (mcfg.get("params") or {}).items():
                if k not in allowed:
                    raise ConfigError(f"{mwhere}.params: {mname!r} has no parameter {k!r}; "
                                      f"allowed: {sorted(allowed) or 'none'}")
                if allowed[k] in (float, int) and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ConfigError(f"{mwhere}.params.{k}: expected a number, got {v!r}")
            for strength in strengths:  # the method's own checks (ranges, choices), before any job
                try:
                    make_method(mname, strength, **(mcfg.get("params") or {}))
                except ValueError as exc:
                    raise ConfigError(f"{mwhere}: {exc}") from None
        for steps in _as_list(exp.get("steps")):
            T = config["pretrain"][task]["T"] if exp["denoiser"] == "trained" else 200  # the oracle's T
            if steps is not None and not 1 <= steps <= T:
                raise ConfigError(f"{where}.steps: {steps} out of range; allowed: 1..{T} (T of the denoiser)")


def cells_from_config(config: dict) -> dict[str, CellArgs]:
    """Every cell of the sweep, keyed by its id (a safe relative path)."""
    check_config(config)
    cells: dict[str, CellArgs] = {}
    for name, exp in config["experiments"].items():
        for obj, (mname, mcfg), alg, steps, seed in itertools.product(
                exp["objectives"], exp["methods"].items(), _as_list(exp.get("algorithm", "alg1")),
                _as_list(exp.get("steps")), config["seeds"]):
            if obj not in (mcfg.get("objectives") or exp["objectives"]):
                continue
            params = tuple(sorted((mcfg.get("params") or {}).items()))
            objective_params = tuple(sorted((exp.get("objective_params") or {}).items()))
            models_dir = config.get("models_dir", "models") if _uses_models(exp["task"]) else None
            for strength in mcfg["strengths"]:
                cell_id = "/".join([exp["task"], exp["denoiser"], name, _safe(f"experiments.{name}.objectives", obj), mname, alg,
                                    _safe(f"experiments.{name}.methods.{mname}.strengths",
                                          f"s{float(strength)!r}_n{steps or 'all'}_seed{seed}")])
                if cell_id in cells:
                    raise ConfigError(f"experiments.{name}.methods.{mname}.strengths: {strength!r} appears twice")
                cells[cell_id] = CellArgs(
                    experiment=name, task=exp["task"], objective=obj, denoiser=exp["denoiser"], method=mname,
                    strength=float(strength), seed=int(seed), rounds=exp["rounds"], samples=exp["samples"],
                    steps=steps, eta=float(exp.get("eta", 1.0)), algorithm=alg,
                    linearise=exp.get("linearise", "per_sample"),
                    finetune_start=exp.get("finetune_start", 50), finetune_lr=float(exp.get("finetune_lr", 1e-6)),
                    finetune_steps=exp.get("finetune_steps", 1), task_seed=config.get("task_seed", 0),
                    params=params, objective_params=objective_params, models_dir=models_dir)
    return cells


def _uses_models(task: str) -> bool:
    from benchmark.tasks import TASKS

    return TASKS[task].uses_models


def pretrain_tasks(cells: dict[str, CellArgs]) -> tuple[list[str], list[str]]:
    """(tasks whose one network is a denoiser, tasks with NETWORKS) among the trained cells, sorted."""
    trained = sorted({c.task for c in cells.values() if c.denoiser == "trained"})
    return [t for t in trained if not _uses_models(t)], [t for t in trained if _uses_models(t)]


def pretrain_cli(config: dict, task: str, network: str = "denoiser") -> list[str]:
    """`python -m benchmark pretrain` arguments of one network of `task` (all but --task/--out/--report/
    --device, and the denoiser's --evaluator, which the rules pass as files)."""
    p = config["pretrain"][task]
    if _uses_models(task):
        if network not in NETWORKS:
            raise ConfigError(f"pretrain.{task}: no network {network!r}; allowed: {list(NETWORKS)}")
        args = ["--network", network, "--seed", str(p.get("seed", 0)), "--task-seed", str(config.get("task_seed", 0))]
        if network in ("denoiser", "noisy_classifier"):  # classifier guidance needs the two on one schedule
            args += ["--schedule", p.get("schedule", "cosine"), "--T", str(p.get("T", 200))]
        settings = p.get(network) or {}
        keys = {**NETWORK_KEYS, **(QUALITY_KEYS if network == "denoiser" else {})}
        for key, flag in keys.items():
            if settings.get(key) is not None:
                args += [flag, _cli_value(settings[key])]
        return args
    if network != "denoiser":
        raise ConfigError(f"pretrain.{task}: task {task!r} has one network; allowed: ['denoiser']")
    return ["--schedule", p["schedule"], "--T", str(p["T"]), "--hidden", str(p["hidden"]), "--depth", str(p["depth"]),
            "--epochs", str(p["epochs"]), "--batch-size", str(p["batch_size"]), "--lr", repr(float(p["lr"])),
            "--n-train", str(p["n_train"]), "--seed", str(p["seed"]), "--task-seed", str(config.get("task_seed", 0))]


def job_key(cell_id: str) -> str:
    """The cell id without its seed: the cells of one job differ only in their seed."""
    key, sep, seed = cell_id.rpartition("_seed")
    if not sep or not seed.isdigit():
        raise ValueError(f"not a cell id: {cell_id!r}")
    return key


def jobs_from_cells(cells: dict[str, CellArgs]) -> dict[str, list[str]]:
    """Group cell ids by job key; every job holds the same seeds, in config order."""
    jobs: dict[str, list[str]] = {}
    for cell_id in cells:
        jobs.setdefault(job_key(cell_id), []).append(cell_id)
    return jobs
