# Config validation and the target list: one tested function (benchmark.sweep.cells_from_config).
import re
import shlex

from benchmark.sweep import (
    CELL_ID_PATTERN,
    ConfigError,
    cell_networks,
    cells_from_config,
    evaluation_cells,
    evaluation_seeds,
    is_image_task,
    job_key,
    jobs_from_cells,
    pretrain_cli,
    pretrain_targets,
    split_member,
    task_networks,
    tuning_seeds,
)

# Numbers written as YAML 1.2 writes them (1e6, 1.0e6) are numbers where the schema expects one:
# Snakemake reads config files with PyYAML (YAML 1.1), which leaves them strings. A YAML syntax error
# stops Snakemake before this file runs, without file or line: `python -m benchmark check-config FILE`.
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
# Cells of image tasks write a gallery beside their Parquet file (rule cell_image).
IMAGE_TASKS = sorted(
    {c.spec.task for c in CELLS.values() if is_image_task(c.spec.task)}
)
VECTOR_TASKS = sorted({c.spec.task for c in CELLS.values()} - set(IMAGE_TASKS))
BATCH_SEEDS = config["batch_seeds"]
# The two stages of the protocol: every setting on the tuning seeds, the chosen ones on the evaluation seeds.
STAGE_SEEDS = {"tune": tuning_seeds(config), "eval": evaluation_seeds(config)}
# The cell spec of every job, serialised once (benchmark.spec; its cells differ only in their seed).
JOB_CELLS = {key: CELLS[members[0]] for key, members in jobs_from_cells(CELLS).items()}
JOB_SPECS = {key: cell.spec.to_json() for key, cell in JOB_CELLS.items()}


# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


# No value can escape the results folder: every path component is a SAFE_NAME (no slash, no '..').
wildcard_constraints:
    cell=CELL_ID_PATTERN,
    task="|".join(sorted({c.spec.task for c in CELLS.values()})),
    denoiser="|".join(
        re.escape(d) for d in sorted({c.spec.denoiser.name for c in CELLS.values()})
    ),


def quote(args):
    return " ".join(shlex.quote(a) for a in args)


def one_of(names):
    """A wildcard constraint matching exactly `names` (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def seed_slots(stage):
    """A stage's seeds in a job's file names: all of them with batch_seeds, else the {seed} wildcard."""
    return STAGE_SEEDS[stage] if BATCH_SEEDS else ["{seed}"]


def cell_files(suffix, stage):
    """A job's files of one stage: one per seed slot."""
    return [
        f"{RESULTS}/cells/{{task}}/{{denoiser}}/{{cell}}_seed{s}.{suffix}"
        for s in seed_slots(stage)
    ]


def cell_inputs(wc):
    """The pre-trained networks a cell job loads (benchmark.sweep.cell_networks)."""
    return cell_networks(JOB_CELLS[f"{wc.task}/{wc.denoiser}/{wc.cell}"].spec, MODELS)


def cell_args(stage):
    """The rule's `python -m benchmark run` arguments of a cell job: its spec (the checkpoint it names is
    the rule's input), its seeds and its Parquet files."""

    def args(wc, output, input=None):
        key = f"{wc.task}/{wc.denoiser}/{wc.cell}"
        seeds = [str(s) for s in STAGE_SEEDS[stage]] if BATCH_SEEDS else [wc.seed]
        return quote(
            ["--spec", JOB_SPECS[key], "--seed", *seeds, "--out", *output.parquet]
        )

    return args


# --- functions of the other rule files, here so that no rule file mixes rules and functions (snakemake --lint)


def job_log(kind, stage):
    """A cell job's log (kind `cells`) or benchmark file (kind `benchmarks`) of one stage (cells.smk)."""
    seed = "" if BATCH_SEEDS else "_seed{seed}"
    return f"logs/{kind}/{{task}}/{{denoiser}}/{{cell}}_{stage}{seed}.{'log' if kind == 'cells' else 'tsv'}"


def stage_seeds(stage):
    """The seed wildcard's constraint of a stage's rules (used without batch_seeds)."""
    return "|".join(str(s) for s in STAGE_SEEDS[stage])


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
