# One job runs one cell, or with `batch_seeds` all seeds of a cell configuration in one process
# (the start-up, mostly `import torch`, is then paid once); either way every seed is its own cell
# and Parquet file. Task and denoiser lead the cell path, so the checkpoint is named by pattern.


def cell_args(wc, output, input=None):
    key = f"{wc.task}/{wc.denoiser}/{wc.cell}"
    seeds = [str(s) for s in SEED_SLOTS] if BATCH_SEEDS else [wc.seed]
    model = ["--checkpoint", input.model] if input and "model" in input.keys() else []
    return quote(JOB_ARGS[key] + model + ["--seed", *seeds, "--out", *output])


rule cell_oracle:
    """Cells sampled with the exact (oracle) denoiser: no upstream job."""
    output:
        [f"{RESULTS}/cells/{{task}}/{{denoiser}}/{{cell}}_seed{s}.parquet" for s in SEED_SLOTS],
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
    input:
        model=f"{MODELS}/{{task}}_denoiser.safetensors",
    wildcard_constraints:
        denoiser="trained",
