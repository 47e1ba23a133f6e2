rule cell:
    """One (task, objective, method, strength, seed, ...) cell -> one Parquet file."""
    input:
        lambda wc: [checkpoint_path(CELLS[wc.cell].task)] if CELLS[wc.cell].denoiser == "trained" else [],
    output:
        f"{RESULTS}/cells/{{cell}}.parquet",
    log:
        "logs/cells/{cell}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,  # more memory on each retry
        runtime=RES["cell_runtime"],
        gpu=GPU,
    params:
        args=lambda wc, input: quote(CELLS[wc.cell].cli() + (["--checkpoint", input[0]] if input else [])),
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} python -m benchmark run {params.args} --device {params.device} "
        "--out {output} > {log} 2>&1"
