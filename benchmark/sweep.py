"""The sweep: a validated config -> the table of cells (one file each), `cells_from_config`, the one function
that makes the target list.

The config is read and checked first (benchmark.config: the schema, numbers, defaults;
benchmark.config_checks: names against the registries, impossible combinations, the size guard, the
protocol). A cell is identified by everything that determines its values, never by the experiment that
asked for it: two experiments that ask for the same cell get one cell (computed once, counted once). Its id
(benchmark.paths: a safe relative path, task and denoiser first) names its variant by a hash `v<hash>` of
the spec's identity less what the path names (`CellSpec.variant`: rounds, samples, eta, the method's fixed
parameters, the objective's parameters, ..., every field of the spec the path does not name), and of the
pre-training settings of its checkpoint, which the spec cannot carry: a different checkpoint configuration is
a different cell. The config sets the spec's fields by name (`cell_spec`): an experiment key that names a
spec field (benchmark.spec.flat_names; the run settings' schema is generated from the same fields,
benchmark.schema) reaches every cell of the experiment with no line here.

The comparison protocol (DESIGN 3b) runs in two stages. Tuning: every setting of a method's grid
(its strengths, times the values of the parameters its `grid` declares tunable) on the tuning seeds;
every method variant gets the same number of settings, `protocol.budget`. Selection
(benchmark.report.verdict) picks one setting per selection group (`SweepCell.group`: a method variant
in one panel). Evaluation: the chosen settings on the evaluation seeds, disjoint from the tuning
seeds; the report's headline comes from these only. `cells_from_config` makes the tuning cells,
`evaluation_cells` the evaluation cells of the chosen jobs; benchmark.jobs groups them into jobs.

An experiment's `objective_params` and `task_params` reach every one of its cells' specs. A method runs on
every objective of its experiment, or on the subset its `objectives` names (classifier guidance
only where there is a noise-conditional classifier). A `trained` denoiser is one cell per member of the
task's checkpoint family (benchmark.pretraining).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, replace

from benchmark.config import (ConfigError, as_list, load_config_file, method_grid, method_variants, safe_name,
                              tuning_seeds)
from benchmark.config_checks import check_config, check_protocol
from benchmark.paths import cell_id as make_cell_id
from benchmark.paths import group_id, job_key, setting_name, tuned_name, variant_path, with_seed
from benchmark.pretraining import checkpoint_family, denoiser_file, is_trained, join_member, member_block, split_member
from benchmark.schema import setting
from benchmark.spec import CellSpec, Denoiser, flat_names


@dataclass(frozen=True)
class SweepCell:
    """A cell of the sweep: its spec (benchmark.spec, what the job runs) and where it sits in the
    protocol: the experiment that asked for it first, its selection group (the cell id less strength,
    tuned values and seed) and the parameters (besides the strength) tuned over a grid."""

    experiment: str
    spec: CellSpec
    group: str = ""
    tuned: tuple[str, ...] = ()


def _variant_hash(config: dict, spec: CellSpec, tuned: tuple[str, ...]) -> str:
    """A short hash of everything fixed within a selection group besides the path's own parts: the spec's
    variant (`CellSpec.variant`) and, for the workflow's own checkpoint, its pre-training settings."""
    fixed = spec.variant(tuned)
    if is_trained(spec.denoiser.name):  # another checkpoint configuration is another cell
        fixed["pretrain"] = member_block(config, spec.task, split_member(spec.denoiser.name)[1])
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
                members, exp["objectives"], exp["methods"].items(), as_list(setting(exp, "algorithm")),
                as_list(exp.get("steps"))):
            if obj not in (mcfg.get("objectives") or exp["objectives"]):
                continue
            member_exp = exp | {"denoiser": join_member("trained", member)} if member else exp
            for params in method_variants(mcfg):
                _add_cells(cells, own, config, name, member_exp, obj, mname, mcfg | {"params": params}, alg, steps)
    return cells


def _add_cells(cells: dict, own: set, config: dict, name: str, exp: dict, obj: str, mname: str, mcfg: dict,
               alg: str, steps: int | None) -> None:
    """Add the tuning cells of one method variant's grid (see cells_from_config); `own`: the
    experiment's cell ids so far (a setting listed twice is an error, one shared with another
    experiment is the same cell)."""
    where = f"experiments.{name}.methods.{mname}"
    tuned = tuple(sorted(mcfg.get("grid") or {}))
    safe_name(f"experiments.{name}.objectives", obj)
    prefix = group = None
    for strength, values in method_grid(mcfg):
        setting = setting_name(strength, values, steps)
        try:  # the spec's own checks (structure and meaning), once per setting
            spec = cell_spec(config, exp, objective=obj, method=mname, strength=strength,
                             params=dict(mcfg.get("params") or {}) | dict(values), algorithm=alg, steps=steps)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if prefix is None:  # every setting of the variant: one hash
            prefix = variant_path(exp["task"], exp["denoiser"], obj, mname, alg, _variant_hash(config, spec, tuned))
            group = group_id(prefix, steps)
        for seed in tuning_seeds(config):
            safe_name(f"{where}.strengths", with_seed(setting, seed))  # the id's last component: a file name
            cell_id = make_cell_id(prefix, setting, seed)
            if cell_id in own:
                raise ConfigError(f"{where}.strengths: setting {tuned_name(strength, values)!r} appears twice")
            own.add(cell_id)
            cell = SweepCell(experiment=name, spec=replace(spec, seed=int(seed)), group=group, tuned=tuned)
            if cell_id in cells:  # asked for by an earlier experiment too: the same cell, computed once
                if cells[cell_id].spec != cell.spec or cells[cell_id].group != group:
                    raise ConfigError(f"{where}: cell {cell_id} differs from the one experiment "
                                      f"{cells[cell_id].experiment!r} asks for under the same id")
                continue
            cells[cell_id] = cell


def cell_spec(config: dict, exp: dict, **cell) -> CellSpec:
    """The spec of one cell of experiment `exp`: every experiment key that names a spec field (`flat_names`:
    task, task_params, objective_params and the run settings, rounds, eta, ...) sets that field, then the
    cell's own values (its objective, method, strength, parameters and axes: steps, algorithm), the task seed,
    the denoiser (`denoiser_spec`) and, for tasks that load networks, the models folder."""
    names = flat_names()
    denoiser = denoiser_spec(config, exp)
    flat = {k: v for k, v in exp.items() if k in names} | cell | {
        "task_seed": config.get("task_seed", 0), "denoiser": denoiser.name, "loader": denoiser.loader,
        "checkpoint": denoiser.source,
        "models_dir": config.get("models_dir", "models") if _uses_models(exp["task"]) else None}
    return CellSpec.of(**flat)


def denoiser_spec(config: dict, exp: dict) -> Denoiser:
    """An experiment's denoiser: the oracle; `trained`, the workflow's own checkpoint of the task
    (`<models_dir>/<task>_denoiser.safetensors`, benchmark.pretraining.denoiser_file, made by the pretrain
    rules); or a model the config declares under `denoisers` (name -> loader, source: e.g. a diffusers
    UNet2DModel)."""
    name = exp["denoiser"]
    if name == "oracle":
        return Denoiser("oracle")
    if is_trained(name):
        return Denoiser(name, "checkpoint", denoiser_file(config, exp["task"], name))
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
    return {with_seed(job, s): replace(by_job[job], spec=replace(by_job[job].spec, seed=int(s)))
            for job in jobs for s in seeds}


def _uses_models(task: str) -> bool:
    from benchmark.tasks import task_class

    return task_class(task).uses_models


def is_image_task(task: str) -> bool:
    """Its cells write a sample gallery beside their Parquet file."""
    from benchmark.tasks import task_class

    return task_class(task).is_image


def check_config_file(path: str) -> int:
    """`python -m benchmark check-config`: a config file as the workflow would take it (YAML syntax and
    duplicate keys named by file:line:column, numbers as YAML 1.2 writes them, the schema, `check_config`,
    the size guard); returns its number of cells. What Snakemake cannot say: its own config loader
    reports a YAML error without the file or the line. A schema error (validate_config) is given at
    file:line of the key."""
    config = load_config_file(path)
    try:
        return len(cells_from_config(config))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
