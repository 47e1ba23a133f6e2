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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    # A `run:` block: thousands of paths overflow one `bash -c` argument, and it needs the cell table.
    run:
        from benchmark.report.verdict import select_to_folder
        from benchmark.results import retract

        from benchmark.report.verdict import reuse_selection

        with retract([REPORT, f"{RESULTS}/figures"]):  # a failed selection leaves no report of older results
            if REUSE:
                chosen = reuse_selection(REUSE, config["seeds"], output[0])
            else:
                chosen = select_to_folder(input, f"{RESULTS}/cells", {job_key(c): a.group for c, a in CELLS.items()},
                                          config, output[0])
        with open(log[0], "w") as f:
            print(f"{len(chosen)} settings chosen from {len(input)} tuning cells", file=f)


def evaluation_files(wildcards):
    """The evaluation cells of the chosen settings (known once `select` has run)."""
    from benchmark.report.verdict import chosen_jobs

    folder = checkpoints.select.get().output[0]
    return [f"{RESULTS}/cells/{c}.parquet" for c in evaluation_cells(CELLS, chosen_jobs(folder), STAGE_SEEDS["eval"])]


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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    # A `run:` block, not the CLI: thousands of paths overflow one `bash -c` argument (128 KiB).
    # Every cell file is checked (readable, complete, checksum) and all bad ones are listed at once,
    # with the command that removes them for a rerun; on failure the report of the previous results
    # is removed too, so no report outlives the results it was built from.
    run:
        from benchmark.results import aggregate_or_retract

        notes = []
        table = aggregate_or_retract(input, output[0], stale=[REPORT, f"{RESULTS}/figures"],
                                     root=f"{RESULTS}/cells", log=notes.append)
        with open(log[0], "w") as f:
            print(*notes, f"{output[0]}: {table.num_rows} rows from {len(input)} cells", sep="\n", file=f)


rule report:
    """The self-contained HTML comparison report (figures embedded)."""
    input:
        results=f"{RESULTS}/all.parquet",
        selected=f"{RESULTS}/selected",
        models=[f"{MODELS}/{t}_denoiser.json" for t in DENOISER_TASKS]
        + [f"{MODELS}/{t}_{n}.json" for t in NETWORK_TASKS for n in NETWORKS],
        # Read by the report from next to each cell's Parquet file (RESULTS/cells), not passed on.
        galleries=[f"{RESULTS}/cells/{c}.png" for c, cell in CELLS.items() if cell.task in NETWORK_TASKS and not REUSE],
        evaluation_galleries=lambda wc: [f.removesuffix(".parquet") + ".png" for f in evaluation_files(wc)
                                         if f.split("/cells/")[1].split("/")[0] in NETWORK_TASKS],
    output:
        html=report(REPORT, caption="../report/index.rst", category="Report",
                    labels={"page": "comparison report (self-contained HTML)"}),
        figures=report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
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
        "python -m benchmark report --results {input.results} --selected {input.selected} --out {output.html} "
        "{params.models} "
        "--figures {output.figures} > {log} 2>&1"
