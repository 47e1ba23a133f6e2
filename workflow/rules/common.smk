# Config validation and the target list: one tested function (benchmark.sweep.cells_from_config).
import shlex

from snakemake.utils import validate

from benchmark.sweep import CELL_ID_PATTERN, ConfigError, cells_from_config, pretrain_cli

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

# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


wildcard_constraints:
    cell=CELL_ID_PATTERN,
    task="|".join(TRAINED_TASKS) or "none",


def checkpoint_path(task):
    return f"{MODELS}/{task}_denoiser.safetensors"


def quote(args):
    return " ".join(shlex.quote(a) for a in args)
