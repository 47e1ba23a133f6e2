"""The `select` checkpoint of workflow/rules/report.smk: per method variant, the admissible setting of highest
reward on the tuning seeds (benchmark.report.verdict), one human-readable YAML file per panel; with
`protocol.reuse`, an earlier run's selection folder evaluated on this config's evaluation seeds."""

from benchmark.report.verdict import reuse_selection, select_to_folder
from benchmark.results import retract

sm = snakemake  # noqa: F821 (set by Snakemake's `script:` directive)
config = sm.config
reuse = (config.get("protocol") or {}).get("reuse")

with retract(sm.params.stale):  # a failed selection leaves no report of older results
    if reuse:
        chosen = reuse_selection(reuse, config["seeds"], sm.output[0])
    else:
        chosen = select_to_folder(sm.input, f"{config['results_dir']}/cells", sm.params.groups, config, sm.output[0])
with open(sm.log[0], "w") as f:
    print(f"{len(chosen)} settings chosen from {len(sm.input)} tuning cells", file=f)
