checkpoint select:
    """The protocol's selection: per method variant, the admissible setting of highest reward on the
    tuning seeds (benchmark.report.verdict); one YAML file per panel, human-readable."""
    input:
        PLAN.tuning_files(),  # none with `protocol.reuse: DIR` (a selection folder of an earlier run)
    output:
        directory(f"{RESULTS}/selected"),
    log:
        "logs/select.log",
    conda:
        "../envs/guidebench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # Removed before selecting: a failed selection leaves no report of older results.
        stale=[REPORT, f"{RESULTS}/figures"],
        groups=PLAN.select_groups(),  # the cell table: job -> method variant
    # A script, not the CLI: thousands of paths overflow one `bash -c` argument, and it needs the cell table.
    script:
        "../scripts/select_settings.py"


rule aggregate:
    """All cell files of both stages -> one Parquet file with each row's cell id, each cell once; bad cell
    files stop it, all named."""
    input:
        tune=PLAN.tuning_files(),  # cell ids are paths: task/denoiser/...
        evaluation=evaluation_files,
    output:
        f"{RESULTS}/all.parquet",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/guidebench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # On failure the report of the previous results is removed too, so no report outlives the
        # results it was built from.
        stale=[REPORT, f"{RESULTS}/figures"],
    # A script, not the CLI: thousands of paths overflow one `bash -c` argument (128 KiB).
    # Every cell file is checked (readable, complete, checksum) and all bad ones are listed at once,
    # with the command that removes them for a rerun.
    script:
        "../scripts/aggregate.py"


rule report:
    """The self-contained HTML comparison report (figures embedded)."""
    input:
        results=f"{RESULTS}/all.parquet",
        selected=f"{RESULTS}/selected",
        models=PLAN.pretrain_reports(),
        # Read by the report from next to each cell's Parquet file (RESULTS/cells), not passed on.
        galleries=PLAN.tuning_galleries(),
        evaluation_galleries=evaluation_galleries,
    output:
        html=report(
            REPORT,
            caption="../report/index.rst",
            category="Report",
            labels={"page": "comparison report (self-contained HTML)"},
        ),
        figures=report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/guidebench.yaml"
    threads: 2  # the drill-down panels' figures drawn beside the verdict's (the last job: two cores are free)
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=f"--models {MODELS}" if PLAN.pretrain else "",
    shell:
        "python -m benchmark report --results {input.results} --selected {input.selected} --out {output.html} "
        "{params.models} --workers {threads} "
        "--figures {output.figures} > {log} 2>&1"
