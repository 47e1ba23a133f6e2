# Config validation and the target list: one tested function (benchmark.sweep.cells_from_config).
import shlex

from snakemake.utils import validate

from benchmark.sweep import CELL_ID_PATTERN, ConfigError, cells_from_config, jobs_from_cells, pretrain_cli

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
TRAINED_TASKS = sorted({c.task for c in CELLS.values() if c.denoiser == "trained"})
BATCH_SEEDS = config["batch_seeds"]
SEED_SLOTS = config["seeds"] if BATCH_SEEDS else ["{seed}"]
# The `python -m benchmark run` arguments of every job (its cells differ only in their seed).
JOB_ARGS = {key: CELLS[members[0]].cli() for key, members in jobs_from_cells(CELLS).items()}

# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


# No value can escape the results folder: every path component is a SAFE_NAME (no '/', no '..').
wildcard_constraints:
    cell=CELL_ID_PATTERN,
    task="|".join(sorted({c.task for c in CELLS.values()})),
    seed=r"\d+",


def quote(args):
    return " ".join(shlex.quote(a) for a in args)
