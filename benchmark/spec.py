"""One cell's specification, from config to Parquet: a frozen, typed `CellSpec`.

    CellSpec
    ├── task, task_seed, task_params          which problem (a task's data and networks)
    ├── objective, objective_params           which reward
    ├── method, strength, params              which guidance, with its own hyper-parameters
    ├── denoiser: Denoiser                    which eps-model: name, loader, source
    ├── sampling: Sampling                    schedule, T (oracle), steps, eta, clip_x0, cfg
    ├── rounds: Rounds                        Algorithm 1/2: rounds, samples, fine-tuning
    ├── seed                                  the cell's noise streams
    └── models_dir                            where the task's pre-trained networks lie

The sweep (benchmark.sweep) builds it, `to_json` serialises it once into the job's command line,
`from_json` parses it once in the job. It is validated in two layers, each once per process:
structure by a JSON schema generated from these dataclasses (benchmark.schema: `json_schema`; a
method's `params` by the schema of that method's dataclass, `method_schema`), meaning by the dataclasses
themselves (`__post_init__`: the bounds the fields declare, choices, names against the registries,
impossible combinations). The fields are the one declaration of the run settings: the human CLI
(`python -m benchmark run --task ... --steps ...`, `cli_fields`), the config's experiment keys (their
schema, defaults and descriptions, benchmark.schema.run_settings) and the cell id's variant hash
(`CellSpec.variant`) are derived from them, with the help text, bounds and choices below.

The results keep the method's hyper-parameters (`params_json`) apart from the run settings
(`settings_json`: everything else of the spec), so no setting can shadow a hyper-parameter of the
same name (MPGD's step rule `schedule` against the noise schedule).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ALGORITHMS = ("alg1", "alg2")
LINEARISATIONS = ("per_sample", "batch_mean")
SCHEDULES = ("cosine", "linear")


def _doc(help: str, flag: str | None = None, **meta) -> dict:
    """A field's metadata, its one declaration: `help` (the CLI's help, the config's description), `flag`.
    For a run setting, from which the config's experiment schema is generated (benchmark.schema): the
    JSON-schema bounds `minimum`, `maximum`, `exclusiveMinimum` (checked by `_check_fields` too), `axis` (a
    config list is a sweep axis), `config=False` (no experiment key). For the cell's variant
    (`CellSpec.variant`): `variant=False` (the cell id names it, or it says where files lie), `when=(field,
    value)` (it matters only then), `neutral` (the value that reproduces the behaviour from before the
    field existed: left out of the variant, so adding a setting keeps every id)."""
    return {"help": help, **({"flag": flag} if flag else {}), **meta}


BOUNDS = {"minimum": (float.__ge__, ">="), "maximum": (float.__le__, "<="), "exclusiveMinimum": (float.__gt__, ">")}


def _check_fields(obj) -> None:
    """In place: a float field given an int becomes that float (one canonical JSON form); every field within
    its declared bounds, else ValueError naming it (`eta must be in [0, 1], got 1.5`)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = typing.get_type_hints(type(obj))[f.name]
        if (hint is float or hint == float | None) and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, f.name, value := float(value))
        bounds = {k: f.metadata[k] for k in BOUNDS if k in f.metadata}
        if value is None or not bounds or all(BOUNDS[k][0](float(value), float(b)) for k, b in bounds.items()):
            continue
        if set(bounds) == {"minimum", "maximum"}:
            raise ValueError(f"{f.name} must be in [{bounds['minimum']}, {bounds['maximum']}], got {value}")
        raise ValueError(f"{f.name} must be " + " and ".join(f"{BOUNDS[k][1]} {b}" for k, b in bounds.items())
                         + f", got {value}")


def _frozen_mapping(value) -> dict:
    """A dict parameter as given (JSON-able values), sorted by key for one canonical form."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of NAME: VALUE, got {value!r}")
    return {str(k): value[k] for k in sorted(value)}


@dataclass(frozen=True)
class Denoiser:
    """The eps-model a cell samples with: `name` labels it in cell paths and results (oracle, trained,
    or a name from the config's `denoisers`); `loader` builds it (benchmark.denoisers.DENOISERS:
    oracle, checkpoint, diffusers, or a plug-in) from `source` (a checkpoint file, a diffusers model
    id or folder)."""

    name: str = field(default="oracle", metadata=_doc("label of the denoiser in cell paths and results "
                                                      "(oracle | trained | a configured name)", "--denoiser",
                                                      variant=False))
    loader: str = field(default="", metadata=_doc("how to build it (oracle | checkpoint | diffusers | a plug-in); "
                                                  "default: oracle for the oracle, else checkpoint", "--loader"))
    source: str | None = field(default=None, metadata=_doc("checkpoint file, or diffusers model id / folder",
                                                           "--checkpoint"))

    def __post_init__(self):
        if not self.loader:
            object.__setattr__(self, "loader", "oracle" if self.name == "oracle" else "checkpoint")
        from benchmark.denoisers import DENOISERS

        loader = DENOISERS[self.loader]  # ValueError naming the allowed loaders
        if loader.needs_source and not self.source:
            hint = (" (made by `python -m benchmark pretrain`)" if self.loader == "checkpoint" else "")
            raise ValueError(f"denoiser {self.name!r} (loader {self.loader!r}) needs a source: --checkpoint FILE"
                             f"{hint}")
        if not loader.needs_source and self.source:
            raise ValueError(f"denoiser loader {self.loader!r} takes no source; got {self.source!r}")


@dataclass(frozen=True)
class Sampling:
    """The sampler: DDIM(eta) over `steps` steps of the denoiser's schedule (schedule and T are the
    oracle's; a network brings its own)."""

    schedule: Literal["cosine", "linear"] = field(default="cosine", metadata=_doc(
        "noise schedule of the oracle (a network brings its own)", config=False))
    T: int = field(default=200, metadata=_doc("diffusion length of the oracle", config=False, minimum=1))
    steps: int | None = field(default=None, metadata=_doc(
        "sampling steps (null, the default: every step of the schedule)", minimum=1, axis=True, variant=False))
    eta: float = field(default=1.0, metadata=_doc("DDIM eta: 0 deterministic DDIM, 1 DDPM-like ancestral sampling",
                                                  minimum=0, maximum=1))
    clip_x0: bool = field(default=False, metadata=_doc(
        "clip the Tweedie estimate x0h to the task's data range in every DDIM update, for every method alike, e "
        "recomputed from the clipped x0h (TFG's and guided-diffusion's code, diffusers' clip_sample with "
        "use_clipped_model_output; on by default in TFG's code for images); only tasks that declare a data range "
        "(digits, images: [-1, 1])", neutral=False))
    cfg: float | None = field(default=None, metadata=_doc(
        "classifier-free guidance scale w of a text-conditional denoiser (loader diffusers_latent): eps_u + w "
        "(eps_c - eps_u) (SD3: on the velocity), one counted denoiser forward = 2 network evaluations (1 at w = 1: "
        "the conditional model alone); null, the default: the pipeline's own default, 7.5 for Stable Diffusion "
        "1.x/2.x (benchmark.denoisers.latent.DEFAULT_CFG), 7.0 for SD3 (latent_flow.DEFAULT_CFG) (null and that "
        "value compute the same but are different cells); for a guidance-distilled Flux model the embedded guidance "
        "scale (1 network evaluation; null: 3.5), null for one without; one value per experiment (compare scales "
        "with one "
        "experiment each: the report tags them sampling.cfg=w); refused for other denoisers", minimum=0, neutral=None))

    def __post_init__(self):
        cfg = self.cfg
        if cfg is not None and (isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg)):
            raise ValueError(f"cfg must be a finite number >= 0 or null, got {cfg!r}")
        if not isinstance(self.clip_x0, bool):
            raise ValueError(f"clip_x0 must be true or false, got {self.clip_x0!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: {list(SCHEDULES)}")
        _check_fields(self)


@dataclass(frozen=True)
class Rounds:
    """Guo et al.'s outer loop: Algorithm 1 (`rounds` guided rounds after the unguided round 0, each
    of `samples` chains) or Algorithm 2 (the same, and before round k+1 the score network takes
    `finetune_steps` Adam steps at `finetune_lr` on round k's batch, for k = `finetune_start`, ...,
    `rounds` - 1; default 0: from the unguided batch on, the paper's Algorithm 2 and their code's default;
    their README's runs use 40 or 60). Algorithm 2 needs `finetune_start` < `rounds`: else no sample
    would see the fine-tuning."""

    rounds: int = field(default=50, metadata=_doc(
        "guided rounds after the unguided round 0 (Algorithm 1 / 2 of Guo et al.); training-free methods draw "
        "their rounds afresh: run them with 1", minimum=0))
    samples: int = field(default=32, metadata=_doc("chains (output samples) per cell and round", minimum=1))
    algorithm: Literal["alg1", "alg2"] = field(default="alg1", metadata=_doc(
        "alg1 (guided rounds) | alg2 (rounds + adaptive fine-tuning of the score network; needs a trainable "
        "denoiser)", axis=True, variant=False))
    linearise: Literal["per_sample", "batch_mean"] = field(default="per_sample", metadata=_doc(
        "Guo et al.'s linear model of the objective: one per chain (their code) or one at the batch mean (the "
        "paper's Algorithm 1)"))
    finetune_start: int = field(default=0, metadata=_doc(
        "Algorithm 2: the first round whose batch the denoiser is fine-tuned on, for the next round (0: the "
        "unguided batch, before round 1: Guo et al.'s Algorithm 2 and their code's default; their README's runs: "
        "40 for naive, 60 for gloss); must be below rounds", minimum=0, when=("algorithm", "alg2")))
    finetune_lr: float = field(default=1e-6, metadata=_doc(
        "Algorithm 2: Adam learning rate of the fine-tuning", exclusiveMinimum=0, when=("algorithm", "alg2")))
    finetune_steps: int = field(default=1, metadata=_doc(
        "Algorithm 2: Adam steps per round", minimum=1, when=("algorithm", "alg2")))

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; allowed: {list(ALGORITHMS)}")
        if self.linearise not in LINEARISATIONS:
            raise ValueError(f"unknown linearise {self.linearise!r}; allowed: {list(LINEARISATIONS)}")
        _check_fields(self)
        if self.algorithm == "alg2" and self.finetune_start >= self.rounds:
            start, rounds = self.finetune_start, self.rounds
            raise ValueError(f"algorithm 'alg2' with finetune_start = {start} and rounds = {rounds}: no round is "
                             "sampled after the fine-tuning, which would be charged and never used; allowed: "
                             + (f"finetune_start in 0..{rounds - 1} (0: from the unguided batch, Guo et al.'s "
                                "default), or " if rounds else "") + f"rounds > {start}")


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's values (see the module docstring)."""

    task: str = field(metadata=_doc("task (see `python -m benchmark list`)", variant=False))
    objective: str = field(metadata=_doc("the task's objective (see `python -m benchmark list`)", variant=False))
    method: str = field(metadata=_doc("guidance method (see `python -m benchmark list`)", variant=False))
    strength: float = field(default=0.0, metadata=_doc("the method's strength (delta for naive/gloss)",
                                                       variant=False))
    seed: int = field(default=0, metadata=_doc("the cell's noise streams", variant=False))
    task_seed: int = field(default=0, metadata=_doc("the task's problem instance (data split, targets)"))
    task_params: dict = field(default_factory=dict, metadata=_doc(
        "a task parameter, e.g. --task-param folder=images/ (repeatable)", "--task-param", item="NAME=VALUE"))
    objective_params: dict = field(default_factory=dict, metadata=_doc(
        "an objective parameter, e.g. --objective-param target=3 (repeatable)", "--objective-param",
        item="NAME=VALUE"))
    params: dict = field(default_factory=dict, metadata=_doc(
        "a method hyper-parameter, e.g. --param sigma=0.1 (repeatable)", "--param", item="NAME=VALUE"))
    denoiser: Denoiser = field(default_factory=Denoiser, metadata={"config": False})  # the config names it
    sampling: Sampling = field(default_factory=Sampling)
    rounds: Rounds = field(default_factory=Rounds)
    models_dir: str | None = field(default=None, metadata=_doc(
        "folder of the task's pre-trained networks (digits: its classifiers)", variant=False))

    def __post_init__(self):
        for name in ("task_params", "objective_params", "params"):
            object.__setattr__(self, name, _frozen_mapping(getattr(self, name)))
        from benchmark.methods import make_method
        from benchmark.tasks import TASKS, check_task_params

        task = TASKS[self.task]  # ValueError naming the allowed tasks
        check_task_params(self.task, self.task_params)
        make_method(self.method, self.strength, **self.params)  # names, types, ranges, choices
        task.check_objective(self.objective, self.objective_params, self.task_seed)
        if self.sampling.clip_x0 and getattr(task, "data_range", None) is None:
            with_range = sorted(n for n in TASKS if getattr(TASKS[n], "data_range", None) is not None)
            raise ValueError(f"sampling.clip_x0: task {self.task!r} declares no data range to clip x0h to "
                             f"(Task.data_range); allowed: false, or true for a task with one: {with_range}")
        if self.denoiser.loader == "oracle" and not task.has_oracle:
            raise ValueError(f"task {self.task!r} has no exact (oracle) denoiser; use denoiser 'trained' or a "
                             "pre-trained model")
        if self.sampling.cfg is not None:
            from benchmark.denoisers import DENOISERS

            if not DENOISERS[self.denoiser.loader].takes_cfg:
                takes = sorted(n for n in DENOISERS if DENOISERS[n].takes_cfg)
                raise ValueError(f"sampling.cfg: denoiser {self.denoiser.name!r} (loader {self.denoiser.loader!r}) "
                                 f"has no classifier-free guidance; allowed: null, or a scale for loaders {takes}")
        if self.rounds.algorithm == "alg2":
            from benchmark.denoisers import DENOISERS

            if not DENOISERS[self.denoiser.loader].trainable:
                raise ValueError(f"algorithm 'alg2' fine-tunes the score network; denoiser {self.denoiser.name!r} "
                                 f"(loader {self.denoiser.loader!r}) cannot be fine-tuned: use denoiser 'trained'")

    # --- serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The one serialised form (sorted keys, no spaces): what the job receives."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> CellSpec:
        """Parse and validate: the structure against `json_schema` (and the method's parameters against
        its `method_schema`), then the meaning (the dataclasses' checks)."""
        from benchmark.schema import check_structure

        check_structure(data)
        return cls._build(data)

    @classmethod
    def _build(cls, data: dict) -> CellSpec:
        """The spec of a (structurally valid) dict: its parts built as their dataclasses."""
        parts = {"denoiser": Denoiser, "sampling": Sampling, "rounds": Rounds}
        return cls(**{k: parts[k](**v) if k in parts else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> CellSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"cell spec: not JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def of(cls, **flat) -> CellSpec:
        """A spec from flat names, the CLI's (`flat_names`): `CellSpec.of(task=..., steps=10, rounds=1,
        denoiser="trained", checkpoint=FILE)`; unknown names raise TypeError naming the allowed ones."""
        return cls.from_dict(_put_flat({}, flat, "CellSpec.of"))

    def replace(self, **flat) -> CellSpec:
        """A copy with fields changed, by flat name (`flat_names`), e.g. `spec.replace(seed=1, rounds=0)`."""
        return self._build(_put_flat(self.to_dict(), flat, "CellSpec.replace"))

    # --- what the results record ------------------------------------------------------------------

    def settings(self) -> dict:
        """The run settings: the spec less the method and its hyper-parameters, less where files lie."""
        d = self.to_dict()
        for k in ("method", "strength", "params", "models_dir"):
            d.pop(k)
        d["denoiser"] = {k: v for k, v in d["denoiser"].items() if k != "source"}
        return d

    def identity(self) -> dict:
        """What identifies the cell: the spec less where its files lie (the content of the networks it
        loads is hashed beside it, see benchmark.cell.Cell.run_id)."""
        d = self.to_dict()
        d.pop("models_dir")
        d["denoiser"] = {k: v for k, v in d["denoiser"].items() if k != "source" or self.denoiser.loader == "diffusers"}
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()

    def variant(self, tuned: tuple[str, ...] = ()) -> dict:
        """What makes the cell's variant (the cell id's `v<hash>`, benchmark.sweep): the spec less the fields
        its path names (`variant=False`: task, objective, method, strength, seed, denoiser name, steps, algorithm,
        and models_dir, where files lie), less the `tuned` hyper-parameters, less the settings that do not
        apply (`when`: fine-tuning for Algorithm 1) or keep their `neutral` value; a denoiser's source stays
        (another file is another cell)."""

        def walk(obj) -> dict:
            out = {}
            for f in dataclasses.fields(obj):
                value, meta = getattr(obj, f.name), f.metadata
                when = meta.get("when")
                if (meta.get("variant") is False or ("neutral" in meta and value == meta["neutral"])
                        or (when and getattr(obj, when[0]) != when[1])):
                    continue
                out[f.name] = walk(value) if dataclasses.is_dataclass(value) else value
            return out

        out = walk(self)
        out["params"] = {k: v for k, v in self.params.items() if k not in tuned}
        return out


# --- a job's cells on its command line: one JSON per run of cells that differ only in strength and seed ---

def specs_to_json(specs: list[CellSpec]) -> list[str]:
    """The compact form of a job's cells, in order: each run of consecutive cells equal but for strength and
    seed is one JSON object, the spec with `"cells": [[strength, seed], ...]` in place of the two (about 15
    bytes a cell, not 300: a job of several hundred cells fits the OS's 128 KiB limit on one argument)."""
    out: list[tuple[dict, list]] = []
    for spec in specs:
        d = spec.to_dict()
        pair = [d.pop("strength"), d.pop("seed")]
        if out and out[-1][0] == d:
            out[-1][1].append(pair)
        else:
            out.append((d, [pair]))
    return [json.dumps(d | {"cells": pairs}, sort_keys=True, separators=(",", ":")) for d, pairs in out]


def specs_from_json(text: str) -> list[CellSpec]:
    """The cells of one JSON: a whole spec (one cell), or `specs_to_json`'s group form (one cell per
    [strength, seed] pair of `cells`, validated once)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"cell spec: not JSON ({exc})") from None
    if not isinstance(data, dict) or "cells" not in data:
        return [CellSpec.from_dict(data)]
    pairs = data.pop("cells")
    if (not isinstance(pairs, list) or not pairs or "strength" in data or "seed" in data
            or not all(isinstance(p, list) and len(p) == 2 for p in pairs)):
        raise ValueError("cell spec: `cells` must be a non-empty list of [strength, seed] pairs, given instead "
                         f"of `strength` and `seed`; got {json.dumps(pairs)[:200]}")
    first = CellSpec.from_dict(data | {"strength": pairs[0][0], "seed": pairs[0][1]})
    return [first] + [CellSpec.from_dict(data | {"strength": s, "seed": k}) if _needs_check(s, k) else
                      first.replace(strength=s, seed=k) for s, k in pairs[1:]]


def _needs_check(strength, seed) -> bool:
    """Values the schema must look at (anything but a plain number for a strength, an int for a seed)."""
    return (isinstance(strength, bool) or not isinstance(strength, (int, float))
            or isinstance(seed, bool) or not isinstance(seed, int))


# --- the human CLI, derived from the same fields -----------------------------------------------------

def cli_fields() -> list[tuple[str, tuple[str, ...], dataclasses.Field, object]]:
    """(flag, path in the spec, field, type hint) of every field, nested parts flattened."""
    out = []

    def walk(cls, path):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], path + (f.name,))
                continue
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            out.append((flag, path + (f.name,), f, hints[f.name]))

    walk(CellSpec, ())
    return out


def flat_names() -> dict[str, tuple[str, ...]]:
    """{flat name: path in the spec}: a field's CLI flag without dashes (`checkpoint`, `denoiser`,
    `finetune_lr`), and the dict fields by their own names (`params`, `objective_params`, `task_params`)."""
    out = {}
    for flag, path, f, hint in cli_fields():
        out[f.name if hint is dict else flag.lstrip("-").replace("-", "_")] = path
    return out


def _put(data: dict, path: tuple[str, ...], value) -> None:
    """data[path[0]][path[1]]... = value, the parts' dicts made as needed."""
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _put_flat(data: dict, flat: dict, where: str) -> dict:
    """`data` with the fields given by flat name (`flat_names`) set; TypeError naming unknown ones."""
    names = flat_names()
    unknown = sorted(set(flat) - set(names))
    if unknown:
        raise TypeError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    for key, value in flat.items():
        _put(data, names[key], value)
    return data


def _parse_value(value: str):
    """'0.1' -> 0.1, '3' -> 3, 'true' -> True, otherwise the string (the layers above check types)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _parse_bool(text: str) -> bool:
    """'true' / 'false' (also 1 / 0, yes / no) -> bool, for a boolean field's CLI flag."""
    import argparse

    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expects true or false, got {text!r}")
    return value


def _pair(text: str) -> tuple[str, object]:
    import argparse

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expects NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), _parse_value(value.strip())


def add_spec_arguments(parser) -> None:
    """One argparse option per spec field (seed takes several: one cell each)."""
    from benchmark.denoisers import DENOISERS
    from benchmark.methods import METHODS
    from benchmark.tasks import TASKS

    names = {("task",): TASKS, ("method",): METHODS, ("denoiser", "loader"): DENOISERS}
    for flag, path, f, hint in cli_fields():
        kw: dict = {"dest": "spec__" + "__".join(path), "help": f.metadata.get("help", "")}
        if path in names:  # the registry's names (a plug-in's or an import path is allowed too)
            kw["help"] = kw["help"].split(" (see")[0] + f"; one of: {', '.join(names[path])}"
        optional = typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None))
        kind = [h for h in typing.get_args(hint) if h is not type(None)][0] if optional else hint
        if path == ("seed",):
            kw |= {"type": int, "nargs": "+", "default": None, "metavar": "SEED", "help": "one or more seeds: each is its own cell, "
                   "written to the matching --out (default: the --spec's own seed, else 0)"}
        elif kind is dict:
            kw |= {"type": _pair, "action": "append", "default": [], "metavar": f.metadata.get("item", "NAME=VALUE")}
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if typing.get_origin(kind) is Literal:
                kw["choices"] = list(typing.get_args(kind))
                kind = type(kw["choices"][0])
            kw |= {"type": _parse_bool if kind is bool else kind, "default": default}
            if "choices" not in kw:
                kw["metavar"] = path[-1].upper()
            if required:
                kw["help"] += " (required unless --spec)"
            else:
                kw["help"] += f" (default: {default})" if default not in (None, "") else ""
        parser.add_argument(flag, **kw)


def spec_from_args(args, seed: int) -> CellSpec:
    """The spec of parsed `add_spec_arguments` options, for one of its seeds."""
    data: dict = {}
    for _, path, _, _ in cli_fields():
        value = getattr(args, "spec__" + "__".join(path))
        if path == ("seed",):
            value = seed
        elif isinstance(value, list):
            value = dict(value)
        _put(data, path, value)
    return CellSpec.from_dict(data)
