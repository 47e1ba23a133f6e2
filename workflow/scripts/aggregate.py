"""The `aggregate` rule of workflow/rules/report.smk: all cell files of both stages -> one Parquet file with
each row's cell id (benchmark.results.aggregate_or_retract). Every cell file is checked (readable, complete,
checksum) and all bad ones are named at once; on failure the stale report is removed (params.stale)."""

from benchmark.results import aggregate_or_retract

sm = snakemake  # noqa: F821 (set by Snakemake's `script:` directive)

notes = []
table = aggregate_or_retract(sm.input, sm.output[0], stale=sm.params.stale,
                             root=f"{sm.config['results_dir']}/cells", log=notes.append)
with open(sm.log[0], "w") as f:
    print(*notes, f"{sm.output[0]}: {table.num_rows} rows from {len(sm.input)} cells", sep="\n", file=f)
