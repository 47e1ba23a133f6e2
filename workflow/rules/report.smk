rule aggregate:
    """All cell files -> one Parquet file; an unreadable cell file stops it, named."""
    input:
        [f"{RESULTS}/cells/{c}.parquet" for c in CELLS],  # cell ids are paths: task/denoiser/...
    output:
        f"{RESULTS}/all.parquet",
    log:
        "logs/aggregate.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    # A `run:` block, not the CLI: thousands of paths overflow one `bash -c` argument (128 KiB).
    run:
        from benchmark.results import aggregate

        table = aggregate(input, output[0])
        with open(log[0], "w") as f:
            print(f"{output[0]}: {table.num_rows} rows from {len(input)} cells", file=f)


rule report:
    """The self-contained HTML comparison report (figures embedded)."""
    input:
        results=f"{RESULTS}/all.parquet",
        models=[f"{MODELS}/{t}_denoiser.json" for t in DENOISER_TASKS]
        + [f"{MODELS}/{t}_{n}.json" for t in NETWORK_TASKS for n in NETWORKS],
        # Read by the report from next to each cell's Parquet file (RESULTS/cells), not passed on.
        galleries=[f"{RESULTS}/cells/{c}.png" for c, cell in CELLS.items() if cell.task in NETWORK_TASKS],
    output:
        html=REPORT,
        figures=report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=f"--models {MODELS}" if TRAINED_TASKS else "",
    shell:
        "python -m benchmark report --results {input.results} --out {output.html} {params.models} "
        "--figures {output.figures} > {log} 2>&1"
