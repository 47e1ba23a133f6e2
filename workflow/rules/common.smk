# The config's plan (benchmark.plan.workflow_plan, one tested function): the config checked (numbers as
# YAML 1.2 writes them, the schema with its defaults, the registries), the cells, the networks to pre-train
# and the jobs of each stage. A YAML syntax error stops Snakemake before this file runs, without file or
# line: `python -m benchmark check-config FILE` names them.
from benchmark.config import ConfigError
from benchmark.plan import workflow_plan

# In place: numbers coerced, the schema's defaults filled in.
try:
    PLAN = workflow_plan(config)
except ConfigError as exc:
    raise ValueError(f"invalid config: {exc}") from None

RESULTS = config["results_dir"]
MODELS = config["models_dir"]
REPORT = config["report"]
RES = config["resources"]
GPU = 1 if config["gpu"] else 0


# A cluster run must not be throttled to one GPU job: the gpu resource is per node, not global.
resource_scopes:
    gpu="local",


# No value can escape the models folder (pretrain's wildcards): the tasks are the sweep's.
wildcard_constraints:
    task=PLAN.tasks(),


# --- input and params functions of the other rule files, here so that no rule file mixes rules and
# functions (snakemake --lint); each hands its wildcards to the plan


def evaluation_files(wildcards):
    """The evaluation cells of the chosen settings (known once the `select` checkpoint of report.smk has run)."""
    return PLAN.evaluation_files(checkpoints.select.get().output[0])


def evaluation_galleries(wildcards):
    """The sample galleries (next to their Parquet files) of the evaluation cells of image tasks."""
    return PLAN.evaluation_galleries(checkpoints.select.get().output[0])


def pretrain_needs(wc):
    return PLAN.pretrain_needs(wc.task, wc.network)


def pretrain_args(wc, input):
    return PLAN.pretrain_args(wc.task, wc.network, input.needs)
