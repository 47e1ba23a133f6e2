# `protocol.reuse: DIR` (a selection folder checked in from an earlier run) skips the tuning stage.
REUSE = (config.get("protocol") or {}).get("reuse")
TUNING_FILES = [] if REUSE else [f"{RESULTS}/cells/{c}.parquet" for c in CELLS]


checkpoint select:
    """The protocol's selection: per method variant, the admissible setting of highest reward on the
    tuning seeds (benchmark.report.verdict); one YAML file per panel, human-readable."""
    input:
        TUNING_FILES,
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
        groups={job_key(c): a.group for c, a in CELLS.items()},  # the cell table: job -> method variant
    # A script, not the CLI: thousands of paths overflow one `bash -c` argument, and it needs the cell table.
    script:
        "../scripts/select_settings.py"


rule aggregate:
    """All cell files of both stages -> one Parquet file with each row's cell id, each cell once; bad cell
    files stop it, all named."""
    input:
        tune=TUNING_FILES,  # cell ids are paths: task/denoiser/...
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
        models=[f"{MODELS}/{t}_{n}.json" for t, n in PRETRAIN],
        # Read by the report from next to each cell's Parquet file (RESULTS/cells), not passed on.
        galleries=[
            f"{RESULTS}/cells/{c}.png"
            for c, cell in CELLS.items()
            if cell.spec.task in IMAGE_TASKS and not REUSE
        ],
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
        models=f"--models {MODELS}" if PRETRAIN else "",
    shell:
        "python -m benchmark report --results {input.results} --selected {input.selected} --out {output.html} "
        "{params.models} --workers {threads} "
        "--figures {output.figures} > {log} 2>&1"
