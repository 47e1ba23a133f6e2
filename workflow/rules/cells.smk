# One job runs one cell, or with `batch_seeds` all seeds of one stage of a cell configuration in one
# process (the start-up, mostly `import torch`, is then paid once); either way every seed is its own
# cell and Parquet file. Task and denoiser lead the cell path, so the checkpoint is named by pattern.
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


def job_log(kind, stage):
    seed = "" if BATCH_SEEDS else "_seed{seed}"
    return f"logs/{kind}/{{task}}/{{denoiser}}/{{cell}}_{stage}{seed}.{'log' if kind == 'cells' else 'tsv'}"


def stage_seeds(stage):
    """The seed wildcard's constraint of a stage's rules (used without batch_seeds)."""
    return "|".join(str(s) for s in STAGE_SEEDS[stage])


rule cell_oracle:
    """Tuning cells sampled with the exact (oracle) denoiser: no upstream job."""
    output:
        parquet=cell_files("parquet", "tune"),
    log:
        job_log("cells", "tune"),
    benchmark:  # the job's wall time, start-up included: its share of overhead is measurable
        job_log("benchmarks", "tune")
    wildcard_constraints:
        denoiser="oracle",
        seed=stage_seeds("tune"),
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,  # more memory on each retry
        runtime=RES["cell_runtime"] * (len(STAGE_SEEDS["tune"]) if BATCH_SEEDS else 1),
        gpu=GPU,
    params:
        args=cell_args("tune"),
        device=config["device"],
    conda:
        "../envs/guidebench.yaml"
    shell:
        "python -m benchmark run {params.args} --device {params.device} --threads {threads} > {log} 2>&1"


use rule cell_oracle as cell_trained with:
    # Tuning cells of a vector task sampled with its pre-trained denoiser.
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
    wildcard_constraints:
        task=one_of(DENOISER_TASKS),
        denoiser="trained",
        seed=stage_seeds("tune"),


use rule cell_oracle as cell_image with:
    # Tuning cells of an image task: its denoiser and classifiers (--models-dir), and a gallery per seed.
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
        networks=[f"{MODELS}/{{task}}_{n}.safetensors" for n in NETWORKS if n != "denoiser"],
    output:
        parquet=cell_files("parquet", "tune"),
        gallery=cell_files("png", "tune"),
    wildcard_constraints:
        task=one_of(NETWORK_TASKS),
        denoiser="trained",
        seed=stage_seeds("tune"),


use rule cell_oracle as cell_oracle_eval with:
    # Evaluation cells (the chosen settings on the evaluation seeds), oracle denoiser.
    output:
        parquet=cell_files("parquet", "eval"),
    log:
        job_log("cells", "eval"),
    benchmark:
        job_log("benchmarks", "eval")
    wildcard_constraints:
        denoiser="oracle",
        seed=stage_seeds("eval"),
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,
        runtime=RES["cell_runtime"] * (len(STAGE_SEEDS["eval"]) if BATCH_SEEDS else 1),
        gpu=GPU,
    params:
        args=cell_args("eval"),
        device=config["device"],


use rule cell_oracle_eval as cell_trained_eval with:
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
    wildcard_constraints:
        task=one_of(DENOISER_TASKS),
        denoiser="trained",
        seed=stage_seeds("eval"),


use rule cell_oracle_eval as cell_image_eval with:
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
        networks=[f"{MODELS}/{{task}}_{n}.safetensors" for n in NETWORKS if n != "denoiser"],
    output:
        parquet=cell_files("parquet", "eval"),
        gallery=cell_files("png", "eval"),
    wildcard_constraints:
        task=one_of(NETWORK_TASKS),
        denoiser="trained",
        seed=stage_seeds("eval"),


use rule cell_oracle as cell_model with:
    # Tuning cells of a vector task sampled with a model declared under `denoisers`: no upstream job.
    wildcard_constraints:
        task=one_of(MODEL_TASKS),
        denoiser=one_of(DECLARED),
        seed=stage_seeds("tune"),


use rule cell_oracle as cell_model_image with:
    # Tuning cells of an image task sampled with a declared model (e.g. a diffusers UNet2DModel), a
    # gallery per seed; the model comes from its folder or the user's local model cache.
    output:
        parquet=cell_files("parquet", "tune"),
        gallery=cell_files("png", "tune"),
    wildcard_constraints:
        task=one_of(MODEL_IMAGE_TASKS),
        denoiser=one_of(DECLARED),
        seed=stage_seeds("tune"),


use rule cell_oracle_eval as cell_model_eval with:
    wildcard_constraints:
        task=one_of(MODEL_TASKS),
        denoiser=one_of(DECLARED),
        seed=stage_seeds("eval"),


use rule cell_oracle_eval as cell_model_image_eval with:
    output:
        parquet=cell_files("parquet", "eval"),
        gallery=cell_files("png", "eval"),
    wildcard_constraints:
        task=one_of(MODEL_IMAGE_TASKS),
        denoiser=one_of(DECLARED),
        seed=stage_seeds("eval"),
