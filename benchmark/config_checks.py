"""What a schema cannot know about a config: the semantic checks before any cell is made.

`check_config`: every number finite, the size of the sweep (`count_cells`, counted from the grid sizes
before any cell is made, `max_cells`), names against the registries (methods and their parameters, tasks,
objectives, denoiser loaders), impossible combinations, and the methods' and objectives' own parameter
checks. `check_protocol`: the comparison protocol (DESIGN 3b): disjoint tuning and evaluation seeds, one
budget of settings for every tuned method. Each raises a ConfigError naming the key and what is allowed.
"""

from __future__ import annotations

from benchmark.config import ConfigError, as_list, method_grid, safe_name
from benchmark.paths import SAFE
from benchmark.pretraining import check_pretrain, checkpoint_family
from benchmark.schema import setting


#: Default of the config key `max_cells`: a sweep asking for more cells stops before any is made.
MAX_CELLS = 100_000


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
        axes = len(as_list(setting(exp, "algorithm"))) * len(as_list(exp.get("steps")))
        if exp.get("denoiser") == "trained" and exp.get("task") in (config.get("pretrain") or {}):
            try:  # one denoiser per member of the task's checkpoint family
                axes *= len(checkpoint_family(config, exp["task"]))
            except ValueError:  # an unknown task: named by check_config
                pass
        for mcfg in (exp.get("methods") or {}).values():
            objectives = len(mcfg.get("objectives") or exp.get("objectives") or [])
            groups = objectives * axes
            for values in (mcfg.get("variants") or {}).values():
                groups *= len(as_list(values))
            settings = len(mcfg.get("strengths") or [])
            for values in (mcfg.get("grid") or {}).values():
                settings *= len(as_list(values))
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


def check_config(config: dict) -> None:
    """Semantic checks with the registries; raises ConfigError naming the key. Everything a job would
    refuse is refused here, before any job: every number finite, the size of the sweep (counted
    before any cell is made, `max_cells`), names, combinations, the methods' and objectives' own
    parameter checks (without loading a network), methods that need an objective capability."""
    from benchmark.denoisers import DENOISERS
    from benchmark.methods import METHODS, make_method
    from benchmark.spec import ALGORITHMS, LINEARISATIONS, Sampling
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
        safe_name(where, name)
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
            safe_name(f"denoisers.{dname}", dname)
            if dcfg.get("loader", "checkpoint") not in DENOISERS:
                raise ConfigError(f"denoisers.{dname}.loader: unknown loader {dcfg.get('loader')!r}; "
                                  f"allowed: {sorted(DENOISERS)}")
        t = TASKS[task]
        if exp["denoiser"] == "oracle" and not t.has_oracle:
            raise ConfigError(f"{where}.denoiser: task {task!r} has no oracle denoiser; allowed: ['trained']")
        if exp["denoiser"] == "trained" and task not in config.get("pretrain", {}):
            raise ConfigError(f"{where}.denoiser: 'trained' needs a pretrain.{task} section")
        clip_x0 = setting(exp, "clip_x0")
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
        for alg in as_list(setting(exp, "algorithm")):
            if alg not in ALGORITHMS:
                raise ConfigError(f"{where}.algorithm: unknown {alg!r}; allowed: {list(ALGORITHMS)}")
            if alg == "alg2" and exp["denoiser"] == "oracle":
                raise ConfigError(f"{where}.algorithm: 'alg2' fine-tunes the network; needs denoiser 'trained'")
            start, rounds = setting(exp, "finetune_start"), exp.get("rounds")   # rounds: the schema fills its default
            if alg == "alg2" and rounds is not None and start >= rounds:   # Rounds refuses it too; here the keys
                raise ConfigError(
                    f"{where}.finetune_start: {start} with {where}.rounds: {rounds} and algorithm 'alg2': no round is "
                    "sampled after the fine-tuning, which would be charged and never used; allowed: "
                    + (f"finetune_start in 0..{rounds - 1} (0: from the unguided batch, Guo et al.'s default), or "
                       if rounds else "") + f"rounds > {start}")
        if setting(exp, "linearise") not in LINEARISATIONS:
            raise ConfigError(f"{where}.linearise: unknown {exp['linearise']!r}; allowed: {list(LINEARISATIONS)}")
        if not exp.get("methods"):
            raise ConfigError(f"{where}.methods: empty; allowed: {sorted(METHODS)}")
        for mname, mcfg in exp["methods"].items():
            mwhere = f"{where}.methods.{mname}"
            if mname not in METHODS:
                raise ConfigError(f"{mwhere}: unknown method {mname!r}; allowed: {sorted(METHODS)}")
            if not SAFE.match(mname):  # the name is a component of every cell id (a file path)
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
            method_or_error(mwhere, mname, strengths[0], mcfg)  # the names and types of its params, keyed
            for strength in strengths:  # the method's own checks (ranges, choices), before any job
                try:
                    method = make_method(mname, strength, **(mcfg.get("params") or {}))
                except ValueError as exc:
                    raise ConfigError(f"{mwhere}: {exc}") from None
                skips = {o: skip_reason(method, t, o)   # what the method says it cannot guide, of the task's objectives
                         for o in dict.fromkeys([*t.objectives, *exp["objectives"]])}
                lacking = [o for o in mcfg.get("objectives") or exp["objectives"] if skips[o]]
                if lacking:
                    capable = [o for o in t.objectives if not skips[o]]
                    raise ConfigError(f"{mwhere}: {skips[lacking[0]]}; {lacking} of task {task!r} have none; "
                                      f"allowed: {capable or 'none'}"
                                      + (f" (restrict it with `objectives: {capable}`)" if capable else ""))
        for steps in as_list(exp.get("steps")) if exp["denoiser"] in ("oracle", "trained") else ():
            T = min(as_list(config["pretrain"][task]["T"])) if exp["denoiser"] == "trained" else Sampling().T  # oracle
            if steps is not None and not 1 <= steps <= T:
                raise ConfigError(f"{where}.steps: {steps} out of range; allowed: 1..{T} (T of the denoiser)")


def skip_reason(method, task: type, objective: str) -> str:
    """Why `method` cannot guide the task's `objective` (GuidanceMethod.skip on its class), or "". A task that
    builds its own objectives (no classes) is asked for its `noisy_log_prob_objectives` only."""
    from benchmark.objectives import builtin_objectives

    cls = builtin_objectives(task.name).get(objective)
    if cls is not None:
        return method.skip(cls)[1]
    if method.uses_noisy_log_prob and objective not in task.noisy_log_prob_objectives:
        return f"{method.name!r} needs an objective with a noise-conditional classifier"
    return ""


def method_or_error(mwhere: str, mname: str, strength: float, mcfg: dict, section: str = "", **extra):
    """The method of `mcfg`'s params (and `extra` values, from its `section`: grid, variants.<name>) at
    `strength`; its error (benchmark.methods.make_method, the one check of parameter names and types) as a
    ConfigError naming the config key: `<mwhere>.params` (or the section) for an unknown name,
    `<mwhere>.params.<name>` (`.grid.<name>`) for a bad type, else `<mwhere>[.<section>]` (a range)."""
    from benchmark.methods import make_method, method_params

    params = mcfg.get("params") or {}
    try:
        return make_method(mname, strength, **params, **extra)
    except ValueError as exc:
        param = getattr(exc, "param", None)
        if param is None:
            raise ConfigError(f"{mwhere}{'.' + section if section else ''}: {exc}") from None
        key = f"{mwhere}.{'params' if param in params else section.split('.')[0]}"
        raise ConfigError(f"{key}{'.' + param if param in method_params(mname) else ''}: {exc}") from None


def check_protocol(config: dict) -> None:
    """The comparison protocol: disjoint tuning / evaluation seeds, one budget for every method,
    gates on known tasks; raises ConfigError naming the key."""
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
                if k in grid or k in (mcfg.get("params") or {}):
                    raise ConfigError(f"{mwhere}.variants: {k!r} must be a parameter of {mname!r} that is neither "
                                      "fixed in params nor tuned in grid")
                for v in values:
                    method_or_error(mwhere, mname, mcfg["strengths"][0], mcfg, f"variants.{k}", **{k: v})
            for k, values in grid.items():
                if k in (mcfg.get("params") or {}):
                    raise ConfigError(f"{mwhere}.grid.{k}: also fixed in params; a parameter is either fixed or tuned")
                if not values:
                    raise ConfigError(f"{mwhere}.grid.{k}: empty; give at least one value")
            settings = method_grid(mcfg)
            for strength, values in settings if grid else ():  # the tuned values pass the method's own checks
                method_or_error(mwhere, mname, strength, mcfg, "grid", **dict(values))
            n = len(settings)
            if budget is not None and n > 1 and n != budget:
                raise ConfigError(f"{mwhere}: {n} settings (strengths x grid) but protocol.budget is {budget}: every "
                                  "tuned method gets the same number of settings (a method with one setting is "
                                  "not tuned)")
