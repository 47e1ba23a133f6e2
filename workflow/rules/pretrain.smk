# Pre-training: every network is made once into the models folder, with its JSON report beside it,
# and reused by every cell. A vector task has one network (its denoiser); an image task has four
# (benchmark.sweep.NETWORKS), each its own job: the three classifiers are independent, and the
# denoiser waits for the evaluator, which scores its unguided samples in the denoiser's report.
# On two cores `resources: {pretrain_threads: 1}` lets two networks train at once (config.yaml).


rule pretrain:
    """Pre-train a vector task's denoiser (a ScoreMLP)."""
    output:
        checkpoint=f"{MODELS}/{{task}}_denoiser.safetensors",
        report=f"{MODELS}/{{task}}_denoiser.json",
    log:
        "logs/pretrain/{task}.log",
    wildcard_constraints:
        task=one_of(DENOISER_TASKS),
    threads: RES["pretrain_threads"]
    priority: 1  # the trained cells wait for these jobs: run them before the oracle's cells
    resources:
        mem_mb=lambda wc, attempt: RES["pretrain_mem_mb"] * attempt,  # more memory on each retry
        runtime=RES["pretrain_runtime"],
        gpu=GPU,
    params:
        args=lambda wc: quote(pretrain_cli(config, wc.task)),
        device=config["device"],
    conda:
        "../envs/guidebench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m benchmark pretrain --task {wildcards.task} {params.args} "
        "--device {params.device} --out {output.checkpoint} --report {output.report} > {log} 2>&1"


use rule pretrain as pretrain_classifier with:
    # The guiding classifier, the noise-conditional classifier (classifier guidance) or the
    # independent evaluator of an image task.
    output:
        checkpoint=f"{MODELS}/{{task}}_{{network}}.safetensors",
        report=f"{MODELS}/{{task}}_{{network}}.json",
    log:
        "logs/pretrain/{task}_{network}.log",
    wildcard_constraints:
        task=one_of(NETWORK_TASKS),
        network=one_of(n for n in NETWORKS if n != "denoiser"),
    params:
        args=lambda wc: quote(pretrain_cli(config, wc.task, wc.network)),
        device=config["device"],


use rule pretrain as pretrain_image_denoiser with:
    # An image task's U-Net denoiser; the evaluator scores its unguided samples (FD, confidence).
    input:
        evaluator=f"{MODELS}/{{task}}_evaluator.safetensors",
    log:
        "logs/pretrain/{task}_denoiser.log",
    wildcard_constraints:
        task=one_of(NETWORK_TASKS),
    params:
        args=lambda wc, input: quote(pretrain_cli(config, wc.task, "denoiser") + ["--evaluator", input.evaluator]),
        device=config["device"],
