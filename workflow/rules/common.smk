# Config validation and the target list: one tested function (benchmark.sweep.cells_from_config).
import re
import shlex

from snakemake.utils import validate

from benchmark.sweep import (CELL_ID_PATTERN, NETWORKS, ConfigError, cells_from_config, evaluation_cells,
                             evaluation_seeds, job_key,
                             jobs_from_cells, pretrain_cli, pretrain_tasks, tuning_seeds)

# Numbers written as YAML 1.2 writes them (1e6, 1.0e6) are numbers where the schema expects one:
# Snakemake reads config files with PyYAML (YAML 1.1), which leaves them strings. A YAML syntax error
# stops Snakemake before this file runs, without file or line: `python -m benchmark check-config FILE`.
from benchmark.sweep import coerce_numbers

coerce_numbers(config)  # against workflow/schemas/config.schema.yaml, as validate below
validate(config, "../schemas/config.schema.yaml")
try:
    CELLS = cells_from_config(config)
except ConfigError as exc:
    raise ValueError(f"invalid config: {exc}") from None

RESULTS = config["results_dir"]
MODELS = config["models_dir"]
REPORT = config["report"]
RES = config["resources"]
GPU = 1 if config["gpu"] else 0
# Trained tasks with one network (a denoiser), and image tasks with four (NETWORKS: denoiser + classifiers).
DENOISER_TASKS, NETWORK_TASKS = pretrain_tasks(CELLS)
TRAINED_TASKS = DENOISER_TASKS + NETWORK_TASKS
BATCH_SEEDS = config["batch_seeds"]
# The two stages of the protocol: every setting on the tuning seeds, the chosen ones on the evaluation seeds.
STAGE_SEEDS = {"tune": tuning_seeds(config), "eval": evaluation_seeds(config)}
# The `python -m benchmark run` arguments of every job (its cells differ only in their seed).
JOB_ARGS = {key: CELLS[members[0]].cli() for key, members in jobs_from_cells(CELLS).items()}

# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


# No value can escape the results folder: every path component is a SAFE_NAME (no '/', no '..').
wildcard_constraints:
    cell=CELL_ID_PATTERN,
    task="|".join(sorted({c.task for c in CELLS.values()})),


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
    return [f"{RESULTS}/cells/{{task}}/{{denoiser}}/{{cell}}_seed{s}.{suffix}" for s in seed_slots(stage)]


def cell_args(stage):
    """The rule's `python -m benchmark run` arguments of a cell job (its Parquet files are the --out)."""

    def args(wc, output, input=None):
        key = f"{wc.task}/{wc.denoiser}/{wc.cell}"
        seeds = [str(s) for s in STAGE_SEEDS[stage]] if BATCH_SEEDS else [wc.seed]
        model = ["--checkpoint", input.model] if input and "model" in input.keys() else []
        return quote(JOB_ARGS[key] + model + ["--seed", *seeds, "--out", *output.parquet])

    return args
