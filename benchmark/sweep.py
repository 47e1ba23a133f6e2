"""The sweep: a validated config -> the table of cells (one Snakemake job each).

The structure of the config is checked by the JSON schema in workflow/schemas/ (Snakemake's
`validate`, which also fills defaults); `check_config` adds what a schema cannot know: names
against the registries (methods, their hyper-parameters, tasks, objectives, denoisers) and
impossible combinations. `cells_from_config` is the one function that makes the target list.

A cell is identified by everything that determines its values, never by the experiment that asked
for it: two experiments that ask for the same cell get one cell (computed once, counted once). Its
id is a relative path
`<task>/<denoiser>/<objective>/<method>/<algorithm>/v<hash>/s<strength>[_<param>=<value>..]_n<steps>_seed<seed>`
whose every component matches SAFE_NAME, so no value can escape the results folder. `v<hash>`
hashes the settings that are fixed for the cell's selection group (rounds, samples, eta, clip_x0, the
method's fixed parameters, the objective's parameters, the pre-training settings of its
checkpoint...), so a different checkpoint configuration is a different cell. Task and denoiser lead
the path so the workflow's rules can name the checkpoint a cell needs by pattern.

The comparison protocol (DESIGN 3b) runs in two stages. Tuning: every setting of a method's grid
(its strengths, times the values of the parameters its `grid` declares tunable) on the tuning seeds;
every method variant gets the same number of settings, `protocol.budget`. Selection
(benchmark.report.verdict) picks one setting per selection group (`SweepCell.group`: a method variant
in one panel). Evaluation: the chosen settings on the evaluation seeds, disjoint from the tuning
seeds; the report's headline comes from these only. `cells_from_config` makes the tuning cells,
`evaluation_cells` the evaluation cells of the chosen jobs.

A job runs a group of cells (`stage_jobs`, benchmark.batch): in the tuning stage the cells that differ
only in strength and seed, in the evaluation stage one chosen setting's seeds; `group_size` cells at
most. One process (start-up paid once), sampling passes batched, each cell still its own file. A
setting (`job_key`) is a cell id without its `_seed<seed>` suffix.

A task declares the networks it pre-trains (`Task.networks`, benchmark.tasks.networks), each made
by one job into the models folder as `<task>_<network>.safetensors` (`pretrain_targets`,
`pretrain_cli`); a cell's inputs are the ones it loads (`cell_networks`: the `trained` denoiser, and
for tasks that load networks (`Task.uses_models`, digits) those of its objective, from the cell's
`models_dir`). An experiment's `objective_params` and `task_params` reach every one of its cells'
specs. A method runs on
every objective of its experiment, or on the subset its `objectives` names (classifier guidance
only where there is a noise-conditional classifier).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, replace

from benchmark.spec import CellSpec, Denoiser, Rounds, Sampling

SAFE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*"
# A relative path of SAFE_NAMEs, written flat (lookaheads, no repeated group) because Snakemake
# matches it against every input file of the aggregate: no component starts with '.' or '-'
# (so no '..'), no empty component, no leading '/'. "//" is written "/[/]": Snakemake warns about
# any "//" in a file pattern, its constraints included.
CELL_ID_PATTERN = r"(?![./-])(?!.*/[.-])(?!.*/[/])[A-Za-z0-9_.+=/-]+"
_SAFE = re.compile(rf"^{SAFE_NAME}$")
class ConfigError(ValueError):
    """A config that cannot run; the message names the key, the bad value and what is allowed."""


@dataclass(frozen=True)
class SweepCell:
    """A cell of the sweep: its spec (benchmark.spec, what the job runs) and where it sits in the
    protocol: the experiment that asked for it first, its selection group (the cell id less strength,
    tuned values and seed) and the parameters (besides the strength) tuned over a grid."""

    experiment: str
    spec: CellSpec
    group: str = ""
    tuned: tuple[str, ...] = ()


def _cli_value(value) -> str:
    """A config value as a path component or CLI argument (JSON, else the raw string): true, not True."""
    return value if isinstance(value, str) else json.dumps(value)


def _safe(where: str, value) -> str:
    text = str(value)
    if not _SAFE.match(text):
        raise ConfigError(f"{where}: {text!r} cannot be part of a file name; allowed: letters, digits and "
                          "'_.+=-', not starting with '.' or '-' (no '/' or '..')")
    return text


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


#: Default of the config key `max_cells`: a sweep asking for more cells stops before any is made.
MAX_CELLS = 100_000
# A number as YAML 1.2 writes it; PyYAML (YAML 1.1, what Snakemake reads config files with) reads
# `1e6`, `1.0e6` and `1e-3` as strings: an exponent needs a dot and a signed power there (`1.0e+6`).
_YAML12_NUMBER = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def count_cells(config: dict) -> tuple[int, int]:
    """(tuning cells, at most this many evaluation cells) the config asks for, counted from the grid
    sizes without making any cell: per method, objectives x variants x strengths x tuned values x
    algorithms x steps x tuning seeds, and one chosen setting per group (objective x variant x
    algorithm x steps) x evaluation seeds (every setting with `protocol.evaluate: all`). A seed list
    counts as tuning seeds only. Cells asked for
    by two experiments count twice (an upper bound). Keep in step with `cells_from_config`: a test
    checks the count against the cells made for every preset."""
    seeds = config.get("seeds") or []
    if isinstance(seeds, dict):
        tuning, evaluation = seeds.get("tuning") or [], seeds.get("evaluation") or []
    else:
        tuning, evaluation = seeds, []
    protocol = config.get("protocol") or {}
    every = protocol.get("evaluate") == "all" and not protocol.get("reuse")
    n_tune = n_eval = 0
    for exp in (config.get("experiments") or {}).values():
        axes = len(_as_list(exp.get("algorithm", "alg1"))) * len(_as_list(exp.get("steps")))
        if exp.get("denoiser") == "trained" and exp.get("task") in (config.get("pretrain") or {}):
            try:  # one denoiser per member of the task's checkpoint family
                axes *= len(checkpoint_family(config, exp["task"]))
            except ValueError:  # an unknown task: named by check_config
                pass
        for mcfg in (exp.get("methods") or {}).values():
            objectives = len(mcfg.get("objectives") or exp.get("objectives") or [])
            groups = objectives * axes
            for values in (mcfg.get("variants") or {}).values():
                groups *= len(_as_list(values))
            settings = len(mcfg.get("strengths") or [])
            for values in (mcfg.get("grid") or {}).values():
                settings *= len(_as_list(values))
            n_tune += groups * settings * len(tuning)
            n_eval += groups * (settings if every else 1) * len(evaluation)
    return n_tune, n_eval


def _check_size(config: dict) -> None:
    n_tune, n_eval = count_cells(config)
    limit = config.get("max_cells", MAX_CELLS)
    if n_tune + n_eval > limit:
        n = n_tune + n_eval
        raise ConfigError(f"max_cells: the sweep asks for {n:,} cells ({n_tune:,} tuning + up to {n_eval:,} "
                          f"evaluation), more than max_cells = {limit:,}; shrink the grids, or raise the limit with "
                          f"`max_cells: {n}` in the config file or `--config max_cells={n}` on the snakemake "
                          "command line")


def _check_finite(node, where: str = "") -> None:
    """Every number in the config is finite: `.nan` and `.inf` pass the schema's bounds (NaN compares
    false with everything), and a job would refuse them or compute garbage from them."""
    import math

    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{where or 'config'}: {node!r} is not a finite number; NaN and infinities are refused "
                          "wherever a number is used")
    if isinstance(node, dict):
        for key, value in node.items():
            _check_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _check_finite(value, f"{where}[{i}]")


def schema_file():
    """The config's JSON schema (what Snakemake's `validate` checks in workflow/rules/common.smk)."""
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def coerce_numbers(config: dict, schema: dict | str | None = None) -> None:
    """In place: a string that YAML 1.2 reads as a number (`1e6`, `1.0e6`, `2.5e-3`) becomes that number
    where the schema expects a number (an integer where it expects an integer and the value is whole),
    and in a method's `params` / `grid` where the method types the parameter float or int. PyYAML, which
    Snakemake reads config files with, follows YAML 1.1 and leaves such numbers strings."""
    import yaml

    if not isinstance(schema, dict):
        with open(schema or schema_file(), encoding="utf-8") as f:
            schema = yaml.safe_load(f)
    _coerce(config, schema, schema)
    from benchmark.tasks import TASKS

    for task, block in (config.get("pretrain") or {}).items():  # keys from the task's declaration
        if task in TASKS and isinstance(block, dict):
            generated = pretrain_schema(task)
            _coerce(block, generated, generated)
    from benchmark.methods import METHODS, method_params

    for exp in (config.get("experiments") or {}).values():
        for mname, mcfg in ((exp or {}).get("methods") or {}).items():
            if mname not in METHODS or not isinstance(mcfg, dict):
                continue
            types = method_params(mname)
            for key in ("params", "grid"):
                for k, v in (mcfg.get(key) or {}).items():
                    if types.get(k) in (float, int):
                        kinds = {"number"} if types[k] is float else {"integer"}
                        mcfg[key][k] = [_number(x, kinds) for x in v] if key == "grid" and isinstance(v, list) \
                            else _number(v, kinds)


def _number(value, kinds: set[str]):
    if not isinstance(value, str) or not kinds & {"number", "integer"} or not _YAML12_NUMBER.match(value.strip()):
        return value
    number = float(value)
    return int(number) if "number" not in kinds and number.is_integer() else number


def _schema_types(schema: dict, root: dict) -> set[str]:
    schema = _resolve(schema, root)
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        types |= _schema_types(branch, root)
    return types


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref and ref.startswith("#/"):
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema if isinstance(schema, dict) else {}


def _coerce(node, schema: dict, root: dict):
    schema = _resolve(schema, root)
    branches = [_resolve(b, root) for b in schema.get("oneOf", []) + schema.get("anyOf", [])]
    if isinstance(node, dict):
        for sch in [schema] + [b for b in branches if "object" in _schema_types(b, root)]:
            props, extra = sch.get("properties", {}), sch.get("additionalProperties")
            for key in list(node):
                sub = props.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    node[key] = _coerce(node[key], sub, root)
        return node
    if isinstance(node, list):
        for sch in [schema] + [b for b in branches if "array" in _schema_types(b, root)]:
            if isinstance(sch.get("items"), dict):
                node[:] = [_coerce(x, sch["items"], root) for x in node]
        return node
    return _number(node, _schema_types(schema, root))


def check_config_file(path: str) -> int:
    """`python -m benchmark check-config`: a config file as the workflow would take it (YAML syntax and
    duplicate keys named by file:line:column, numbers as YAML 1.2 writes them, the schema, `check_config`,
    the size guard); returns its number of cells. What Snakemake cannot say: its own config loader
    reports a YAML error without the file or the line. A schema error (validate_config) is given at
    file:line of the key."""
    import yaml

    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        config = yaml.load(text, Loader=_unique_key_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys (results_dir, seeds, experiments ...)")
    coerce_numbers(config)
    try:
        validate_config(config)
    except ConfigError as exc:
        line = _key_line(text, getattr(exc, "keys", []))
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {exc}") from None
    try:
        return len(cells_from_config(config))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def validate_config(config: dict) -> None:
    """The config against workflow/schemas/config.schema.yaml, as the workflow checks it (common.smk and
    check-config): Snakemake's `validate` with set_default=True, so the schema's defaults are filled in,
    in place, exactly as Snakemake does. Its error (jsonschema's message followed by the whole schema) becomes
    one ConfigError line naming the key, where it is and, for an unknown key, the closest allowed names
    (difflib); the error's `keys` attribute is the path to the key, for a file:line."""
    from jsonschema import ValidationError
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema_file()), set_default=True)
    except WorkflowError as exc:
        error = exc.__context__  # validate raises WorkflowError("Error validating config file.", e) within `except`
        if not isinstance(error, ValidationError):
            raise ConfigError(f"invalid config: {str(exc).strip().splitlines()[0]}") from None
        message, keys = _schema_error(error)
        err = ConfigError(message)
        err.keys = keys
        raise err from None


def _dotted(keys) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _schema_error(error) -> tuple[str, list]:
    """One line for a jsonschema ValidationError, and the path to the key it is about."""
    import difflib

    keys = list(error.absolute_path)
    where = f"in {_dotted(keys)}" if keys else "at the top level"
    instance, schema = error.instance, error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        unknown = [k for k in instance if k not in allowed]
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        also = f" (also unknown there: {', '.join(repr(k) for k in unknown[1:])})" if unknown[1:] else ""
        return (f"unknown key {unknown[0]!r} {where}: {hint}allowed there: {', '.join(allowed)}{also}",
                keys + [unknown[0]])
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return f"missing key {', '.join(repr(k) for k in missing)} {where}", keys
    if error.validator == "enum" and isinstance(instance, str):
        allowed = [str(v) for v in error.validator_value]
        close = difflib.get_close_matches(instance, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{_dotted(keys)}: {instance!r} is not allowed{hint} allowed: {', '.join(allowed)}", keys
    message = error.message if len(error.message) <= 200 else error.message[:200] + " ..."
    if error.validator in ("oneOf", "anyOf") and schema.get("description"):
        message = f"{message} ({schema['description']})"
    return f"{_dotted(keys) or 'config'}: {message}", keys


def _key_line(text: str, keys: list) -> int | None:
    """The line (1-based) of the deepest of `keys` found in a YAML text, or None."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)),
                        None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """PyYAML keeps the last of two equal keys silently; a config with one is refused, at its line."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:  # the mapping's own keys; merged ones (<<: *x) may be overridden
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}): PyYAML would keep "
                        "only the last", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def check_config(config: dict) -> None:
    """Semantic checks with the registries; raises ConfigError naming the key. Everything a job would
    refuse is refused here, before any job: every number finite, the size of the sweep (counted
    before any cell is made, `max_cells`), names, combinations, the methods' and objectives' own
    parameter checks (without loading a network), methods that need an objective capability."""
    from benchmark.denoisers import DENOISERS
    from benchmark.methods import METHODS, make_method, method_params
    from benchmark.spec import ALGORITHMS, LINEARISATIONS
    from benchmark.tasks import TASKS

    if not config.get("experiments"):
        raise ConfigError("experiments: empty; declare at least one experiment")
    if not config.get("seeds"):
        raise ConfigError("seeds: empty grid; give at least one seed")
    _check_finite(config)
    _check_size(config)
    check_pretrain(config)
    for name, exp in config["experiments"].items():
        where = f"experiments.{name}"
        _safe(where, name)
        task = exp["task"]
        if task not in TASKS:
            raise ConfigError(f"{where}.task: unknown task {task!r}; allowed: {sorted(TASKS)}")
        declared = config.get("denoisers") or {}
        if exp["denoiser"] not in ("oracle", "trained", *declared):
            raise ConfigError(f"{where}.denoiser: unknown denoiser {exp['denoiser']!r}; allowed: "
                              f"{['oracle', 'trained', *sorted(declared)]} (declare a model under `denoisers`)")
        for dname, dcfg in declared.items():
            if dname in ("oracle", "trained"):
                raise ConfigError(f"denoisers.{dname}: a built-in name; give the model another name")
            _safe(f"denoisers.{dname}", dname)
            if dcfg.get("loader", "checkpoint") not in DENOISERS:
                raise ConfigError(f"denoisers.{dname}.loader: unknown loader {dcfg.get('loader')!r}; "
                                  f"allowed: {sorted(DENOISERS)}")
        t = TASKS[task]
        if exp["denoiser"] == "oracle" and not t.has_oracle:
            raise ConfigError(f"{where}.denoiser: task {task!r} has no oracle denoiser; allowed: ['trained']")
        if exp["denoiser"] == "trained" and task not in config.get("pretrain", {}):
            raise ConfigError(f"{where}.denoiser: 'trained' needs a pretrain.{task} section")
        clip_x0 = exp.get("clip_x0", False)
        if not isinstance(clip_x0, bool):
            raise ConfigError(f"{where}.clip_x0: {clip_x0!r} is not a boolean; allowed: true, false")
        if clip_x0 and getattr(t, "data_range", None) is None:
            with_range = sorted(n for n in TASKS if getattr(TASKS[n], "data_range", None) is not None)
            raise ConfigError(f"{where}.clip_x0: task {task!r} declares no data range to clip x0h to; allowed: "
                              f"false, or true for a task with one: {with_range}")
        if not exp.get("objectives"):
            raise ConfigError(f"{where}.objectives: empty; allowed: {list(t.objectives)}")
        for obj in exp["objectives"]:
            if obj not in t.objectives:  # a plug-in objective that applies to the task, or an error
                try:
                    t.check_objective(obj, dict(exp.get("objective_params") or {}), config.get("task_seed", 0))
                except ValueError as exc:
                    raise ConfigError(f"{where}.objectives: {exc}") from None
                continue
            allowed = t.objective_params.get(obj, {})
            for k in exp.get("objective_params") or {}:
                if k not in allowed:  # every cell of the experiment gets every parameter
                    raise ConfigError(f"{where}.objective_params: objective {obj!r} of task {task!r} has no "
                                      f"parameter {k!r}; allowed: {sorted(allowed) or 'none'}"
                                      + ("" if len(exp["objectives"]) == 1 else
                                         " (the parameters reach every objective of the experiment: give "
                                         "objectives with other parameters their own experiment)"))
            try:  # the objective's own checks of the values, without building it
                t.check_objective_params(obj, dict(exp.get("objective_params") or {}), config.get("task_seed", 0))
            except ValueError as exc:
                raise ConfigError(f"{where}.objective_params: {exc}") from None
        for alg in _as_list(exp.get("algorithm", "alg1")):
            if alg not in ALGORITHMS:
                raise ConfigError(f"{where}.algorithm: unknown {alg!r}; allowed: {list(ALGORITHMS)}")
            if alg == "alg2" and exp["denoiser"] == "oracle":
                raise ConfigError(f"{where}.algorithm: 'alg2' fine-tunes the network; needs denoiser 'trained'")
            start, rounds = exp.get("finetune_start", 0), exp.get("rounds")   # rounds: the schema fills its default
            if alg == "alg2" and rounds is not None and start >= rounds:   # Rounds refuses it too; here the keys
                raise ConfigError(
                    f"{where}.finetune_start: {start} with {where}.rounds: {rounds} and algorithm 'alg2': no round is "
                    "sampled after the fine-tuning, which would be charged and never used; allowed: "
                    + (f"finetune_start in 0..{rounds - 1} (0: from the unguided batch, Guo et al.'s default), or "
                       if rounds else "") + f"rounds > {start}")
        if exp.get("linearise", "per_sample") not in LINEARISATIONS:
            raise ConfigError(f"{where}.linearise: unknown {exp['linearise']!r}; allowed: {list(LINEARISATIONS)}")
        if not exp.get("methods"):
            raise ConfigError(f"{where}.methods: empty; allowed: {sorted(METHODS)}")
        for mname, mcfg in exp["methods"].items():
            mwhere = f"{where}.methods.{mname}"
            if mname not in METHODS:
                raise ConfigError(f"{mwhere}: unknown method {mname!r}; allowed: {sorted(METHODS)}")
            if not _SAFE.match(mname):  # the name is a component of every cell id (a file path)
                raise ConfigError(f"{mwhere}: method name {mname!r} cannot be part of a file name (allowed: letters, "
                                  "digits and '_.+=-'); give an import path 'package.module:Class' a safe name "
                                  "through an entry point in group 'guidebench.methods' of its distribution")
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
                    method = make_method(mname, strength, **(mcfg.get("params") or {}))
                except ValueError as exc:
                    raise ConfigError(f"{mwhere}: {exc}") from None
                if method.uses_noisy_log_prob:  # classifier guidance, itself or as a proposal (bon, smc)
                    capable = list(t.noisy_log_prob_objectives)
                    lacking = [o for o in mcfg.get("objectives") or exp["objectives"] if o not in capable]
                    if lacking:
                        raise ConfigError(f"{mwhere}: {mname!r} needs an objective with a noise-conditional "
                                          f"classifier; {lacking} of task {task!r} have none; allowed: "
                                          f"{capable or 'none'}"
                                          + (f" (restrict it with `objectives: {capable}`)" if capable else ""))
        for steps in _as_list(exp.get("steps")) if exp["denoiser"] in ("oracle", "trained") else ():
            T = min(_as_list(config["pretrain"][task]["T"])) if exp["denoiser"] == "trained" else 200  # the oracle's
            if steps is not None and not 1 <= steps <= T:
                raise ConfigError(f"{where}.steps: {steps} out of range; allowed: 1..{T} (T of the denoiser)")


def tuning_seeds(config: dict) -> list[int]:
    return list(config["seeds"]["tuning"])


def evaluation_seeds(config: dict) -> list[int]:
    return list(config["seeds"]["evaluation"])


def method_grid(mcfg: dict) -> list[tuple[float, tuple[tuple[str, object], ...]]]:
    """A method's settings: [(strength, ((tuned parameter, value), ...))], strengths times the grid."""
    grid = mcfg.get("grid") or {}
    names = sorted(grid)
    return [(float(s), tuple(zip(names, values)))
            for s in mcfg["strengths"] for values in itertools.product(*(grid[n] for n in names))]


def check_protocol(config: dict) -> None:
    """The comparison protocol: disjoint tuning / evaluation seeds, one budget for every method,
    gates on known tasks; raises ConfigError naming the key."""
    from benchmark.methods import make_method, method_params
    from benchmark.tasks import TASKS

    seeds = config.get("seeds")
    if not isinstance(seeds, dict):
        raise ConfigError("seeds: give the two disjoint sets of the protocol, e.g. {tuning: [0], evaluation: [1, 2, 3]} "
                          f"(settings are chosen on the tuning seeds, reported on the evaluation seeds); got {seeds!r}")
    for stage in ("tuning", "evaluation"):
        if not seeds.get(stage):
            raise ConfigError(f"seeds.{stage}: empty; give at least one seed")
    shared = sorted(set(seeds["tuning"]) & set(seeds["evaluation"]))
    if shared:
        raise ConfigError(f"seeds: {shared} are both tuning and evaluation seeds; the two sets must be disjoint "
                          "(a setting chosen on a seed must not be scored on it)")
    protocol = config.get("protocol") or {}
    budget = protocol.get("budget")
    if protocol.get("reuse") is not None:
        from pathlib import Path

        if not (Path(protocol["reuse"]) / "protocol.yaml").is_file():
            raise ConfigError(f"protocol.reuse: {protocol['reuse']!r} is not a selection folder (no protocol.yaml); "
                              "give the results/selected folder of an earlier run")
    for task, gates in (protocol.get("gate") or {}).items():
        if task not in TASKS:
            raise ConfigError(f"protocol.gate.{task}: unknown task; allowed: {sorted(TASKS)}")
    for name, exp in config["experiments"].items():
        for mname, mcfg in exp["methods"].items():
            mwhere = f"experiments.{name}.methods.{mname}"
            grid = mcfg.get("grid") or {}
            for k, values in (mcfg.get("variants") or {}).items():
                if k not in {p for p in method_params(mname) if p != "strength"} or k in grid or \
                        k in (mcfg.get("params") or {}):
                    raise ConfigError(f"{mwhere}.variants: {k!r} must be a parameter of {mname!r} that is neither "
                                      "fixed in params nor tuned in grid")
                for v in values:
                    try:
                        make_method(mname, mcfg["strengths"][0], **(mcfg.get("params") or {}), **{k: v})
                    except ValueError as exc:
                        raise ConfigError(f"{mwhere}.variants.{k}: {exc}") from None
            allowed = {k for k in method_params(mname) if k != "strength"}
            for k, values in grid.items():
                if k not in allowed:
                    raise ConfigError(f"{mwhere}.grid: {mname!r} has no parameter {k!r}; allowed: {sorted(allowed)}")
                if k in (mcfg.get("params") or {}):
                    raise ConfigError(f"{mwhere}.grid.{k}: also fixed in params; a parameter is either fixed or tuned")
                if not values:
                    raise ConfigError(f"{mwhere}.grid.{k}: empty; give at least one value")
            settings = method_grid(mcfg)
            for strength, values in settings if grid else ():  # the tuned values pass the method's own checks
                try:
                    make_method(mname, strength, **(mcfg.get("params") or {}), **dict(values))
                except ValueError as exc:
                    raise ConfigError(f"{mwhere}.grid: {exc}") from None
            n = len(settings)
            if budget is not None and n > 1 and n != budget:
                raise ConfigError(f"{mwhere}: {n} settings (strengths x grid) but protocol.budget is {budget}: every "
                                  "tuned method gets the same number of settings (a method with one setting is "
                                  "not tuned)")


def _variant_hash(config: dict, exp: dict, mcfg: dict, alg: str, tuned: set[str]) -> str:
    """A short hash of everything fixed within a selection group besides the path's own parts."""
    fixed = {
        "rounds": exp["rounds"], "samples": exp["samples"], "eta": float(exp.get("eta", 1.0)),
        "linearise": exp.get("linearise", "per_sample"), "task_seed": config.get("task_seed", 0),
        "params": {k: v for k, v in (mcfg.get("params") or {}).items() if k not in tuned},
        "objective_params": exp.get("objective_params") or {},
    }
    if exp.get("clip_x0", False):  # only when on: the ids of the cells sampled without clipping stay as they were
        fixed["clip_x0"] = True
    if alg == "alg2":
        fixed |= {"finetune_start": exp.get("finetune_start", 0), "finetune_lr": float(exp.get("finetune_lr", 1e-6)),
                  "finetune_steps": exp.get("finetune_steps", 1)}
    if is_trained(exp["denoiser"]):  # another checkpoint configuration is another cell
        fixed["pretrain"] = member_block(config, exp["task"], exp["denoiser"].partition(".")[2])
        fixed["models_dir"] = config.get("models_dir", "models")
    elif exp["denoiser"] != "oracle":  # a declared model: another source is another cell
        fixed["denoiser"] = (config.get("denoisers") or {}).get(exp["denoiser"])
    if exp.get("task_params"):
        fixed["task_params"] = exp["task_params"]
    blob = json.dumps(fixed, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def cells_from_config(config: dict) -> dict[str, SweepCell]:
    """Every tuning cell of the sweep (each setting of each grid on the tuning seeds), keyed by its id
    (a safe relative path). A cell asked for by several experiments appears once."""
    check_config(config)
    check_protocol(config)
    cells: dict[str, SweepCell] = {}
    for name, exp in config["experiments"].items():
        own: set[str] = set()
        members = [m for m, _ in checkpoint_family(config, exp["task"])] if exp["denoiser"] == "trained" else [""]
        for member, obj, (mname, mcfg), alg, steps in itertools.product(
                members, exp["objectives"], exp["methods"].items(), _as_list(exp.get("algorithm", "alg1")),
                _as_list(exp.get("steps"))):
            if obj not in (mcfg.get("objectives") or exp["objectives"]):
                continue
            member_exp = exp | {"denoiser": f"trained.{member}"} if member else exp
            for params in method_variants(mcfg):
                _add_cells(cells, own, config, name, member_exp, obj, mname, mcfg | {"params": params}, alg, steps)
    return cells


def is_trained(denoiser: str) -> bool:
    """The workflow's own checkpoint of the task: `trained`, or a member `trained.<k=v>` of its family."""
    return denoiser == "trained" or denoiser.startswith("trained.")


def checkpoint_family(config: dict, task: str) -> list[tuple[str, dict]]:
    """The task's denoiser checkpoints: [(member, its pre-training settings)]. A setting of the denoiser
    given as a list (`pretrain.subspace.epochs: [10, 50, 100]`; digits: under `pretrain.digits.denoiser`)
    makes one checkpoint per value (per combination for several lists), each named by its values
    (`epochs=50`, `epochs=50+lr=0.002`): a sweep axis of score quality. No list: one member, "" (the
    names stay `trained` and `<task>_denoiser`)."""
    block = (config.get("pretrain") or {}).get(task) or {}
    single = len(task_networks(task)) == 1
    own = block if single else (block.get("denoiser") or {})
    lists = {k: v for k, v in own.items() if isinstance(v, list)}
    if not lists:
        return [("", block)]
    names = sorted(lists)
    out = []
    for values in itertools.product(*(lists[k] for k in names)):
        member = "+".join(f"{k}={_cli_value(v)}" for k, v in zip(names, values))
        chosen = dict(own) | dict(zip(names, values))
        out.append((member, chosen if single else block | {"denoiser": chosen}))
    return out


def split_member(name: str) -> tuple[str, str]:
    """`denoiser.epochs=50` -> ("denoiser", "epochs=50"); a plain name -> (name, "")."""
    base, _, member = name.partition(".")
    return base, member


def member_block(config: dict, task: str, member: str) -> dict:
    """The pre-training settings of one member of the task's denoiser family ("" for the only one)."""
    for m, block in checkpoint_family(config, task):
        if m == member:
            return block
    raise ConfigError(f"pretrain.{task}: no checkpoint {member!r} in the denoiser family; allowed: "
                      f"{[m for m, _ in checkpoint_family(config, task)]}")


def method_variants(mcfg: dict) -> list[dict]:
    """A method's fixed parameters, once per combination of its `variants` (each its own selection
    group: e.g. best-of-N at several N, a compute axis that is not tuned)."""
    variants = mcfg.get("variants") or {}
    names = sorted(variants)
    return [dict(mcfg.get("params") or {}) | dict(zip(names, values))
            for values in itertools.product(*(variants[n] for n in names))]


def _add_cells(cells: dict, own: set, config: dict, name: str, exp: dict, obj: str, mname: str, mcfg: dict,
               alg: str, steps: int | None) -> None:
    """Add the tuning cells of one method variant's grid (see cells_from_config); `own`: the
    experiment's cell ids so far (a setting listed twice is an error, one shared with another
    experiment is the same cell)."""
    where = f"experiments.{name}.methods.{mname}"
    tuned = tuple(sorted(mcfg.get("grid") or {}))
    fixed = dict(mcfg.get("params") or {})
    objective_params = tuple(sorted((exp.get("objective_params") or {}).items()))
    models_dir = config.get("models_dir", "models") if _uses_models(exp["task"]) else None
    prefix = "/".join([exp["task"], exp["denoiser"], _safe(f"experiments.{name}.objectives", obj), mname, alg,
                       "v" + _variant_hash(config, exp, mcfg, alg, set(tuned))])
    group = f"{prefix}/n{steps or 'all'}"
    for strength, values in method_grid(mcfg):
        setting = "_".join([f"s{strength!r}", *(f"{k}={_cli_value(v)}" for k, v in values), f"n{steps or 'all'}"])
        try:  # the spec's own checks (structure and meaning), once per setting
            spec = CellSpec(
                task=exp["task"], objective=obj, method=mname, strength=strength,
                task_seed=config.get("task_seed", 0), task_params=dict(exp.get("task_params") or {}),
                objective_params=dict(objective_params), params=fixed | dict(values),
                denoiser=denoiser_spec(config, exp), models_dir=models_dir,
                sampling=Sampling(steps=steps, eta=float(exp.get("eta", 1.0)), clip_x0=exp.get("clip_x0", False)),
                rounds=Rounds(rounds=exp["rounds"], samples=exp["samples"], algorithm=alg,
                              linearise=exp.get("linearise", "per_sample"),
                              finetune_start=exp.get("finetune_start", 0),
                              finetune_lr=float(exp.get("finetune_lr", 1e-6)),
                              finetune_steps=exp.get("finetune_steps", 1)))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for seed in tuning_seeds(config):
            cell_id = f"{prefix}/{_safe(f'{where}.strengths', f'{setting}_seed{seed}')}"
            if cell_id in own:
                raise ConfigError(f"{where}.strengths: setting {setting.rpartition('_n')[0]!r} appears twice")
            own.add(cell_id)
            cell = SweepCell(experiment=name, spec=replace(spec, seed=int(seed)), group=group, tuned=tuned)
            if cell_id in cells:  # asked for by an earlier experiment too: the same cell, computed once
                if cells[cell_id].spec != cell.spec or cells[cell_id].group != group:
                    raise ConfigError(f"{where}: cell {cell_id} differs from the one experiment "
                                      f"{cells[cell_id].experiment!r} asks for under the same id")
                continue
            cells[cell_id] = cell


def denoiser_spec(config: dict, exp: dict) -> Denoiser:
    """An experiment's denoiser: the oracle; `trained`, the workflow's own checkpoint of the task
    (`<models_dir>/<task>_denoiser.safetensors`, made by the pretrain rules); or a model the config
    declares under `denoisers` (name -> loader, source: e.g. a diffusers UNet2DModel)."""
    name = exp["denoiser"]
    if name == "oracle":
        return Denoiser("oracle")
    if is_trained(name):
        member = name.partition(".")[2]
        network = f"denoiser.{member}" if member else "denoiser"
        return Denoiser(name, "checkpoint", f"{config.get('models_dir', 'models')}/{exp['task']}_{network}.safetensors")
    declared = (config.get("denoisers") or {}).get(name)
    if declared is None:
        raise ConfigError(f"denoiser {name!r} is neither 'oracle', 'trained' nor declared under `denoisers`; "
                          f"declared: {sorted(config.get('denoisers') or {})}")
    return Denoiser(name, declared.get("loader", "checkpoint"), declared.get("source"))


def evaluation_cells(cells: dict[str, SweepCell], jobs: list[str], seeds: list[int]) -> dict[str, SweepCell]:
    """The evaluation cells: each chosen job (a tuning cell id less its seed) on each evaluation seed."""
    by_job = {job_key(c): a for c, a in cells.items()}
    unknown = sorted(set(jobs) - set(by_job))
    if unknown:
        raise ValueError(f"chosen settings that are not tuning jobs of this config: {unknown[:3]}"
                         f"{' ...' if len(unknown) > 3 else ''}; rerun the selection (delete the selected folder)")
    return {f"{job}_seed{s}": replace(by_job[job], spec=replace(by_job[job].spec, seed=int(s)))
            for job in jobs for s in seeds}


def _uses_models(task: str) -> bool:
    from benchmark.tasks import task_class

    return task_class(task).uses_models


def is_image_task(task: str) -> bool:
    """Its cells write a sample gallery beside their Parquet file."""
    from benchmark.tasks import task_class

    return task_class(task).is_image


def task_networks(task: str) -> dict:
    """The networks task `task` declares (benchmark.tasks.networks): name -> Network."""
    from benchmark.tasks import task_class

    return dict(task_class(task).networks)


def pretrain_targets(cells: dict[str, SweepCell]) -> list[tuple[str, str]]:
    """The (task, network) pairs the cells need pre-trained, sorted: the denoiser of every task with a
    `trained` cell, the networks each cell's objective loads (`Task.network_files`), and whatever those
    need first (`Network.needs`)."""
    from benchmark.tasks import task_class

    wanted: set[tuple[str, str]] = set()
    for c in cells.values():
        s = c.spec
        if is_trained(s.denoiser.name):
            member = s.denoiser.name.partition(".")[2]
            wanted.add((s.task, f"denoiser.{member}" if member else "denoiser"))
        wanted |= {(s.task, kind) for kind in task_class(s.task).network_files(s.objective, ".")}
    todo = list(wanted)
    while todo:
        task, name = todo.pop()
        for need in task_networks(task)[split_member(name)[0]].needs:
            if (task, need) not in wanted:
                wanted.add((task, need))
                todo.append((task, need))
    return sorted(wanted)


def cell_networks(spec: CellSpec, models_dir: str) -> list[str]:
    """The files of the pre-trained networks a cell loads (its rule's inputs): its denoiser when it is the
    workflow's own (`trained`), and the networks its task loads for its objective."""
    from benchmark.tasks import task_class

    files = [spec.denoiser.source] if is_trained(spec.denoiser.name) else []
    files += [str(p) for p in task_class(spec.task).network_files(spec.objective, models_dir).values()]
    return files


def pretrain_cli(config: dict, task: str, network: str = "denoiser") -> list[str]:
    """`python -m benchmark pretrain` arguments of one network of `task` from its declaration (all but
    --task/--out/--report/--device and the files of the networks it needs, which the rule passes as
    --need NAME=FILE): the task-level settings it shares, then its own; a task with one network takes
    them flat under pretrain.<task>, one with several per network (pretrain.<task>.<network>)."""
    from benchmark.tasks.networks import flag

    networks = task_networks(task)
    network, member = split_member(network)
    if network not in networks:
        if len(networks) <= 1:
            raise ConfigError(f"pretrain.{task}: task {task!r} has one network; allowed: {list(networks)}")
        raise ConfigError(f"pretrain.{task}: no network {network!r}; allowed: {list(networks)}")
    net = networks[network]
    p = json.loads(json.dumps(member_block(config, task, member) if network == "denoiser" else
                              checkpoint_family(config, task)[0][1]))
    _fill_defaults(p, pretrain_schema(task))  # the declaration's defaults, whether or not check_pretrain ran
    own = p if len(networks) == 1 else (p.get(network) or {})
    args = ["--network", network] if len(networks) > 1 else []
    for key, source in [(k, p) for k in net.shared] + [(k, own) for k in net.settings]:
        if source.get(key) is not None:
            args += [flag(key), _cli_value(source[key])] if key in PRETRAIN_FLAGS else \
                ["--set", f"{key}={_cli_value(source[key])}"]
    return args + ["--task-seed", str(config.get("task_seed", 0))]


def pretrain_schema(task: str) -> dict:
    """The JSON schema of `pretrain.<task>`, generated from the task's network declaration: a task with one
    network takes its settings flat; one with several takes the shared settings (schedule, T, seed) at the
    top and each network's own under its name. Defaults are the declarations'."""
    from benchmark.tasks.networks import SETTINGS

    networks = task_networks(task)

    def props(keys, defaults, family=False):
        out = {}
        for k in keys:
            base = dict(SETTINGS.get(k, {}))
            if family:  # a list of values: one checkpoint each (checkpoint_family)
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


def check_pretrain(config: dict) -> None:
    """Each `pretrain.<task>` against the schema its task's declaration generates (`pretrain_schema`),
    defaults filled in place; ConfigError naming the key and what is allowed."""
    import jsonschema

    from benchmark.tasks import TASKS

    for task, block in (config.get("pretrain") or {}).items():
        if task not in TASKS:
            raise ConfigError(f"pretrain.{task}: unknown task; allowed: {sorted(TASKS)}")
        schema = pretrain_schema(task)
        _coerce(block, schema, schema)  # 1e-3 is a number here too (see coerce_numbers)
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(block))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            allowed = ""
            if error.validator == "additionalProperties":
                node = schema
                for part in error.absolute_path:
                    node = node["properties"][part]
                allowed = f"; allowed: {sorted(node['properties'])}"
            raise ConfigError(f"pretrain.{task}{'.' + path if path else ''}: {error.message}{allowed}")
        _fill_defaults(block, schema)


def _fill_defaults(node: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = json.loads(json.dumps(sub["default"]))
        if isinstance(node.get(key), dict):
            _fill_defaults(node[key], sub)


#: The settings `python -m benchmark pretrain` has a flag for; others go as --set KEY=VALUE.
PRETRAIN_FLAGS = ("schedule", "T", "seed", "hidden", "depth", "width", "epochs", "batch_size", "lr", "n_train",
                  "quality_samples", "quality_steps")


def job_key(cell_id: str) -> str:
    """The cell id without its seed: the cells of one job differ only in their seed."""
    key, sep, seed = cell_id.rpartition("_seed")
    if not sep or not seed.isdigit():
        raise ValueError(f"not a cell id: {cell_id!r}")
    return key


def jobs_from_cells(cells: dict[str, SweepCell]) -> dict[str, list[str]]:
    """Group cell ids by setting (job key); every setting holds the same seeds, in config order."""
    jobs: dict[str, list[str]] = {}
    for cell_id in cells:
        jobs.setdefault(job_key(cell_id), []).append(cell_id)
    return jobs


def _job_domain(spec: CellSpec, first: set[str] | None, models_dir: str) -> tuple[str, bool]:
    """What a tuning job holds cells of: one task, and either the cells that wait for the longest pre-training
    chain (they load one of the files `first`; `first=None`: every cell) or the others."""
    return spec.task, first is None or bool(first & set(cell_networks(spec, models_dir)))


def job_priorities(jobs: dict[str, list[str]], cells: dict[str, SweepCell], first: set[str],
                   models_dir: str) -> dict[str, float]:
    """Snakemake priorities of cell jobs, the critical path first: 2 for a job that loads one of the networks
    `first` (the pre-training chain, digits' evaluator then denoiser: the longest path of the run), else 0
    (the pre-training of the others has 1, so it runs before the cells that do not wait for it); plus up to
    0.5 for the heavier of one task's jobs (sampling work, benchmark.batch.work), so the longest jobs start
    first."""
    from benchmark.batch import work

    loads = {j: sum(work(cells[c].spec) for c in ids) for j, ids in jobs.items()}
    domains: dict[tuple, list[str]] = {}       # a job's cells share their domain (stage_jobs; one setting)
    for j, ids in jobs.items():
        domains.setdefault(_job_domain(cells[ids[0]].spec, first, models_dir), []).append(j)
    out = {}
    for (_, late), members in domains.items():
        for r, j in enumerate(sorted(members, key=lambda k: loads[k]), 1):
            out[j] = (2.0 if late else 0.0) + 0.5 * r / (len(members) + 1)
    return out


def stage_jobs(cells: dict[str, SweepCell], size: int, by_setting: bool = False, spread: int = 1,
               first: set[str] | None = None, models_dir: str = "models") -> dict[str, list[str]]:
    """The jobs of a stage: {job id: cell ids}, at most `size` cells each, run by one process.

    Tuning stage: the groups of cells that differ only in strength and seed (benchmark.batch.groups, each
    batched into shared sampling passes; a group bigger than `size` is split first), packed whole into the
    fewest jobs of one task that hold them: each job pays one process's start-up. The cells that wait for
    the longest pre-training chain (they load one of the files `first`: digits' U-Net and classifiers) start
    last, when little else is left to run beside them, so theirs are spread over at least `spread` jobs
    (config `job_spread`, the cores; at most one job per group); `first=None` spreads every task's. The jobs
    of one task are of even sampling work (benchmark.batch.pack, work: denoiser evaluations by the methods'
    declared costs), heaviest first. Evaluation stage (`by_setting`: one setting per variant is chosen,
    known only after the selection): one setting's seeds per job. A job id is its first cell id, with
    `+<n>` for n > 1 cells."""
    from benchmark.batch import chunk_id, groups, pack, work

    if by_setting:
        out: dict[str, list[str]] = {}
        for ids in jobs_from_cells(cells).values():
            out |= groups({c: cells[c].spec for c in ids}, size)
        return out
    domains: dict[tuple, list[list[str]]] = {}
    for chunk in groups({c: cell.spec for c, cell in cells.items()}, size).values():
        domains.setdefault(_job_domain(cells[chunk[0]].spec, first, models_dir), []).append(chunk)
    weights = {c: work(cell.spec) for c, cell in cells.items()}
    packed = [job for (_, late), chunks in domains.items()
              for job in pack(chunks, weights, size, spread if late else 1)]
    return {chunk_id(job): job for job in packed}


#: The longest shell command a cell job may have: Linux refuses a single argument over 128 KiB
#: (MAX_ARG_STRLEN), and Snakemake hands the whole command to `bash -c` as one (its log redirection too).
MAX_JOB_COMMAND = 120_000


def check_job_commands(commands: dict[str, str]) -> None:
    """ConfigError naming the jobs whose command line (`python -m benchmark run` arguments) is too long."""
    long = {job: len(cmd) for job, cmd in commands.items() if len(cmd) > MAX_JOB_COMMAND}
    if long:
        job, n = max(long.items(), key=lambda kv: kv[1])
        raise ConfigError(f"group_size: {len(long)} cell job(s) have a command line over {MAX_JOB_COMMAND} bytes "
                          f"(the system's limit is 131072), the longest {n} bytes ({job}); lower group_size")
