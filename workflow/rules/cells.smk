# One job runs one cell, or with `batch_seeds` all seeds of one stage of a cell configuration in one
# process (the start-up, mostly `import torch`, is then paid once); either way every seed is its own
# cell and Parquet file. A cell's inputs are the pre-trained networks it loads (benchmark.sweep.cell_networks):
# none for the oracle or a model declared under `denoisers`, the task's checkpoint for `trained`, and
# the networks its objective loads (digits' classifiers).
#
# Two stages (the comparison protocol, benchmark.sweep): `tune` runs every setting on the tuning
# seeds; the `select` checkpoint (report.smk) chooses one setting per method variant; `eval` runs the
# chosen settings on the evaluation seeds. A stage's rules differ only in their seeds.
#
# Galleries: a cell of an image task also writes its samples as a PNG grid next to its Parquet
# file (same path, suffix .png). They are declared outputs of `cell_image`, not side files, so
# Snakemake treats them like the results: a missing gallery reruns its cell, a failed job's are
# removed with its Parquet files, a killed job's are redone by `--rerun-incomplete`, and
# `--delete-all-output` knows them. The report finds them next to the Parquet files
# (benchmark.report.galleries), keyed by the run id inside each.


rule cell:
    """Tuning cells of a vector task."""
    input:
        networks=cell_inputs,
    output:
        parquet=cell_files("parquet", "tune"),
    log:
        job_log("cells", "tune"),
    benchmark:  # the job's wall time, start-up included: its share of overhead is measurable
        job_log("benchmarks", "tune")
    wildcard_constraints:
        task=one_of(VECTOR_TASKS),
        seed=stage_seeds("tune"),
    conda:
        "../envs/guidebench.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,  # more memory on each retry
        # a retry after a time-out gets more time too, as it gets more memory
        runtime=lambda wc, attempt: RES["cell_runtime"]
        * (len(STAGE_SEEDS["tune"]) if BATCH_SEEDS else 1)
        * attempt,
        gpu=GPU,
    params:
        args=cell_args("tune"),
        device=config["device"],
    shell:
        "python -m benchmark run {params.args} --device {params.device} --threads {threads} > {log} 2>&1"


use rule cell as cell_image with:
    # Tuning cells of an image task: a gallery per seed.
    output:
        parquet=cell_files("parquet", "tune"),
        gallery=cell_files("png", "tune"),
    wildcard_constraints:
        task=one_of(IMAGE_TASKS),
        seed=stage_seeds("tune"),


use rule cell as cell_eval with:
    # Evaluation cells (the chosen settings on the evaluation seeds) of a vector task.
    output:
        parquet=cell_files("parquet", "eval"),
    log:
        job_log("cells", "eval"),
    benchmark:
        job_log("benchmarks", "eval")
    wildcard_constraints:
        task=one_of(VECTOR_TASKS),
        seed=stage_seeds("eval"),
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,
        runtime=lambda wc, attempt: RES["cell_runtime"]
        * (len(STAGE_SEEDS["eval"]) if BATCH_SEEDS else 1)
        * attempt,
        gpu=GPU,
    params:
        args=cell_args("eval"),
        device=config["device"],


use rule cell_eval as cell_image_eval with:
    # Evaluation cells of an image task, a gallery per seed.
    output:
        parquet=cell_files("parquet", "eval"),
        gallery=cell_files("png", "eval"),
    wildcard_constraints:
        task=one_of(IMAGE_TASKS),
        seed=stage_seeds("eval"),
