rule pretrain:
    """Pre-train the task's denoiser once; every cell of the task reuses the checkpoint."""
    output:
        checkpoint=f"{MODELS}/{{task}}_denoiser.safetensors",
        report=f"{MODELS}/{{task}}_denoiser.json",
    log:
        "logs/pretrain/{task}.log",
    threads: RES["pretrain_threads"]
    resources:
        mem_mb=lambda wc, attempt: RES["pretrain_mem_mb"] * attempt,  # more memory on each retry
        runtime=RES["pretrain_runtime"],
        gpu=GPU,
    params:
        args=lambda wc: quote(pretrain_cli(config, wc.task)),
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} python -m benchmark pretrain --task {wildcards.task} {params.args} "
        "--device {params.device} --out {output.checkpoint} --report {output.report} > {log} 2>&1"
