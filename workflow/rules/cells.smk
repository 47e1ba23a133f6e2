# One job runs one cell, or with `batch_seeds` all seeds of a cell configuration in one process
# (the start-up, mostly `import torch`, is then paid once); either way every seed is its own cell
# and Parquet file. Task and denoiser lead the cell path, so the checkpoint is named by pattern.
#
# Galleries: a cell of an image task also writes its samples as a PNG grid next to its Parquet
# file (same path, suffix .png). They are declared outputs of `cell_image`, not side files, so
# Snakemake treats them like the results: a missing gallery reruns its cell, a failed job's are
# removed with its Parquet files, a killed job's are redone by `--rerun-incomplete`, and
# `--delete-all-output` knows them. The report finds them next to the Parquet files
# (benchmark.report.galleries), keyed by the run id inside each.


rule cell_oracle:
    """Cells sampled with the exact (oracle) denoiser: no upstream job."""
    output:
        parquet=cell_files("parquet"),
    log:
        f"logs/cells/{{task}}/{{denoiser}}/{{cell}}_seed{'all' if BATCH_SEEDS else '{seed}'}.log",
    benchmark:  # the job's wall time, start-up included: its share of overhead is measurable
        f"logs/benchmarks/{{task}}/{{denoiser}}/{{cell}}_seed{'all' if BATCH_SEEDS else '{seed}'}.tsv"
    wildcard_constraints:
        denoiser="oracle",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,  # more memory on each retry
        runtime=RES["cell_runtime"] * (len(SEED_SLOTS) if BATCH_SEEDS else 1),
        gpu=GPU,
    params:
        args=cell_args,
        device=config["device"],
    shell:
        "python -m benchmark run {params.args} --device {params.device} --threads {threads} > {log} 2>&1"


use rule cell_oracle as cell_trained with:
    # Cells of a vector task sampled with its pre-trained denoiser.
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
    wildcard_constraints:
        task=one_of(DENOISER_TASKS),
        denoiser="trained",


use rule cell_oracle as cell_image with:
    # Cells of an image task: its denoiser and classifiers (--models-dir), and a gallery per seed.
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
        networks=[f"{MODELS}/{{task}}_{n}.safetensors" for n in NETWORKS if n != "denoiser"],
    output:
        parquet=cell_files("parquet"),
        gallery=cell_files("png"),
    wildcard_constraints:
        task=one_of(NETWORK_TASKS),
        denoiser="trained",
