rule aggregate:
    """All cell files -> one Parquet file; an unreadable cell file stops it, named."""
    input:
        [f"{RESULTS}/cells/{c}.parquet" for c in CELLS],  # cell ids are paths: task/denoiser/...
    output:
        f"{RESULTS}/all.parquet",
    log:
        "logs/aggregate.log",
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        from benchmark.results import aggregate

        aggregate(input, output[0])


rule report:
    """The self-contained HTML comparison report (figures embedded)."""
    input:
        results=f"{RESULTS}/all.parquet",
        models=[f"{MODELS}/{t}_denoiser.json" for t in TRAINED_TASKS],
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
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        from benchmark.report import build_report

        build_report(input.results, output.html, models_dir=MODELS if input.models else None,
                     figures_dir=output.figures)
