# GuideBench: `snakemake --cores all` -> reports/index.html
# Stages: pretrain (shared checkpoints) -> cell jobs (groups of cells, batched passes) -> select -> aggregate -> report.

from snakemake.utils import min_version

min_version("8.20")


# The default sweep, unless a preset is given (`--configfile config/smoke.yaml`): Snakemake merges
# config files recursively, so loading both would mix the presets' experiments with the default's.
if "experiments" not in config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT,
