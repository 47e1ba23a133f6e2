# Config validation and the target list: one tested function (benchmark.sweep.cells_from_config).
import functools
import re
import shlex

from benchmark.sweep import (
    ConfigError,
    cell_networks,
    cells_from_config,
    check_job_commands,
    evaluation_cells,
    evaluation_seeds,
    is_image_task,
    job_key,
    job_priorities,
    jobs_from_cells,
    pretrain_cli,
    stage_jobs,
    pretrain_targets,
    split_member,
    task_networks,
    tuning_seeds,
)

# Numbers written as YAML 1.2 writes them (1e6, 1.0e6) are numbers where the schema expects one:
# Snakemake reads config files with PyYAML (YAML 1.1), which leaves them strings. A YAML syntax error
# stops Snakemake before this file runs, without file or line: `python -m benchmark check-config FILE`.
from benchmark.spec import specs_to_json
from benchmark.sweep import coerce_numbers, validate_config

coerce_numbers(
    config
)  # against workflow/schemas/config.schema.yaml, as validate_config below
try:
    # The schema (Snakemake's validate, filling in its defaults), its error in one line naming the key.
    validate_config(config)
    CELLS = cells_from_config(config)
except ConfigError as exc:
    raise ValueError(f"invalid config: {exc}") from None

RESULTS = config["results_dir"]
MODELS = config["models_dir"]
REPORT = config["report"]
RES = config["resources"]
GPU = 1 if config["gpu"] else 0
# The (task, network) pairs to pre-train, from the tasks' declarations (benchmark.tasks.networks).
PRETRAIN = pretrain_targets(CELLS)
# Those that others need or that need others (pretrain.smk runs them first): the longest path of the run.
PRETRAIN_CHAIN = [
    (t, n)
    for t, n in PRETRAIN
    if task_networks(t)[split_member(n)[0]].needs
    or any(
        split_member(n)[0] in task_networks(t)[split_member(m)[0]].needs
        for u, m in PRETRAIN
        if u == t
    )
]
# Cells of image tasks write a gallery beside their Parquet file (a declared output of their job, cells.smk).
IMAGE_TASKS = sorted(
    {c.spec.task for c in CELLS.values() if is_image_task(c.spec.task)}
)
VECTOR_TASKS = sorted({c.spec.task for c in CELLS.values()} - set(IMAGE_TASKS))
# The two stages of the protocol: every setting on the tuning seeds, the chosen ones on the evaluation seeds.
STAGE_SEEDS = {"tune": tuning_seeds(config), "eval": evaluation_seeds(config)}
# Every evaluation cell the selection could ask for (each tuned setting on each evaluation seed).
EVAL_CELLS = evaluation_cells(CELLS, list(jobs_from_cells(CELLS)), STAGE_SEEDS["eval"])
# The jobs of each stage, {job id: cell ids}: a group of cells that differ only in strength and seed
# (tuning) or only in seed (evaluation: one chosen setting), `group_size` at most, run by one process in
# batched sampling passes (benchmark.batch); each cell still its own file. cells.smk makes one rule each.
# `protocol.evaluate: all` runs every setting on the evaluation seeds too, in the tuning jobs (their
# batched passes); the selection still reads only the tuning files (report.smk) and the report only the
# chosen settings' evaluation files. With `protocol.reuse` there is no tuning stage: `chosen` then.
EVALUATE_ALL = config["protocol"]["evaluate"] == "all" and not config["protocol"].get(
    "reuse"
)
# The networks of the longest path: the cells that load one start last (spread over job_spread jobs, first).
CHAIN_FILES = {f"{MODELS}/{t}_{n}.safetensors" for t, n in PRETRAIN_CHAIN}
STAGE_CELLS = (
    {"tune": CELLS | EVAL_CELLS}
    if EVALUATE_ALL
    else {"tune": CELLS, "eval": EVAL_CELLS}
)
JOBS = {
    "tune": stage_jobs(
        STAGE_CELLS["tune"],
        config["group_size"],
        spread=config["job_spread"],
        first=CHAIN_FILES,
        models_dir=MODELS,
    )
}
if not EVALUATE_ALL:
    JOBS["eval"] = stage_jobs(EVAL_CELLS, config["group_size"], by_setting=True)


# Which cell jobs start first: those on the longest path (after digits' evaluator and denoiser), heavier first.
PRIORITIES = {
    stage: job_priorities(JOBS[stage], STAGE_CELLS[stage], CHAIN_FILES, MODELS)
    for stage in JOBS
}


# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


# No value can escape the models folder (pretrain's wildcards): the tasks are the sweep's.
wildcard_constraints:
    task="|".join(sorted({c.spec.task for c in CELLS.values()})),


def quote(args):
    return " ".join(shlex.quote(a) for a in args)


def one_of(names):
    """A wildcard constraint matching exactly `names` (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


# --- functions of the other rule files, here so that no rule file mixes rules and functions (snakemake --lint)


def job_rule(stage, job, number):
    """A cell job's name (that of its generated rule), by stage, task and number (`tune_subspace_12`)."""
    return f"{stage}_{STAGE_CELLS[stage][JOBS[stage][job][0]].spec.task}_{number}"


def job_outputs(stage, job, suffix):
    """A job's files of one kind (`parquet`; `png`: the galleries of an image task's cells, else none)."""
    cells = JOBS[stage][job]
    if suffix == "png" and STAGE_CELLS[stage][cells[0]].spec.task not in IMAGE_TASKS:
        return []
    return [f"{RESULTS}/cells/{c}.{suffix}" for c in cells]


def job_inputs(stage, job):
    """The pre-trained networks a job's cells load (benchmark.sweep.cell_networks)."""
    return sorted(
        {
            f
            for c in JOBS[stage][job]
            for f in cell_networks(STAGE_CELLS[stage][c].spec, MODELS)
        }
    )


@functools.lru_cache(maxsize=None)
def job_args(stage, job):
    """`python -m benchmark run` arguments of a job: its cells' specs (one JSON per run of cells that differ
    only in strength and seed, benchmark.spec.specs_to_json), one Parquet file per cell, and the round
    checkpoints' interval."""
    return quote(
        [
            "--spec",
            *specs_to_json([STAGE_CELLS[stage][c].spec for c in JOBS[stage][job]]),
        ]
        + ["--out", *job_outputs(stage, job, "parquet")]
        + ["--checkpoint-every", str(config["checkpoint_every"])]
    )


def job_passes(stage, job):
    """The sampling passes a job runs one after another (benchmark.batch.passes per group of its cells)."""
    from benchmark.batch import passes

    return len(passes([STAGE_CELLS[stage][c].spec for c in JOBS[stage][job]]))


def job_log(stage, job, kind):
    """A job's log (kind `cells`) or benchmark file (kind `benchmarks`)."""
    return f"logs/{kind}/{job}_{stage}.{'log' if kind == 'cells' else 'tsv'}"


def evaluation_files(wildcards):
    """The evaluation cells of the chosen settings (known once the `select` checkpoint of report.smk has run)."""
    from benchmark.report.verdict import chosen_jobs

    folder = checkpoints.select.get().output[0]
    return [
        f"{RESULTS}/cells/{c}.parquet"
        for c in evaluation_cells(CELLS, chosen_jobs(folder), STAGE_SEEDS["eval"])
    ]


def evaluation_galleries(wildcards):
    """The sample galleries (next to their Parquet files) of the evaluation cells of image tasks."""
    from pathlib import Path

    return [
        f.removesuffix(".parquet") + ".png"
        for f in evaluation_files(wildcards)
        if Path(f).relative_to(RESULTS).parts[1] in IMAGE_TASKS
    ]  # RESULTS/cells/TASK/...


def pretrain_needs(wc):
    """The checkpoints of the networks this one waits for (its declaration's `needs`); a member of a
    checkpoint family (`denoiser.epochs=50`) waits for what its network does."""
    return [
        f"{MODELS}/{wc.task}_{n}.safetensors"
        for n in task_networks(wc.task)[split_member(wc.network)[0]].needs
    ]


def pretrain_args(wc, input):
    needs = task_networks(wc.task)[split_member(wc.network)[0]].needs
    return quote(
        pretrain_cli(config, wc.task, wc.network)
        + [a for n, f in zip(needs, input.needs) for a in ("--need", f"{n}={f}")]
    )


# Every job's command fits the OS's limit on one argument (`bash -c` gets it whole), else group_size names it.
try:
    check_job_commands(
        {
            f"{stage} {job}": job_args(stage, job)
            for stage in JOBS
            for job in JOBS[stage]
        }
    )
except ConfigError as exc:
    raise ValueError(f"invalid config: {exc}") from None
