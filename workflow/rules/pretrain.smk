# Pre-training: every network a task declares (benchmark.tasks.networks; `Task.networks`) that the
# cells need is made once into the models folder, with its JSON report beside it, by one job of the
# one rule below, and reused by every cell. A vector task has one network (its denoiser); digits has
# four: the three classifiers are independent, and the denoiser waits for the evaluator, which scores
# its unguided samples in the denoiser's report (`needs`).
# On two cores `resources: {pretrain_threads: 1}` lets two networks train at once (config.yaml).


rule pretrain:
    """Pre-train one network of a task (its denoiser, or one of an image task's classifiers)."""
    input:
        needs=pretrain_needs,
    output:
        **PLAN.pretrain_outputs(),
    log:
        "logs/pretrain/{task}_{network}.log",
    wildcard_constraints:
        **PLAN.pretrain_wildcards(),
    priority: 1  # the trained cells wait for these jobs: run them before the oracle's cells
    conda:
        "../envs/guidebench.yaml"
    threads: RES["pretrain_threads"]
    resources:
        mem_mb=lambda wc, attempt: RES["pretrain_mem_mb"] * attempt,  # more memory on each retry
        runtime=lambda wc, attempt: RES["pretrain_runtime"] * attempt,
        gpu=GPU,
    params:
        args=pretrain_args,
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} python -m benchmark pretrain --task {wildcards.task} {params.args} "
        "--device {params.device} --out {output.checkpoint} --report {output.report} > {log} 2>&1"


use rule pretrain as pretrain_first with:
    # The networks on the longest path (a network others need, and one that needs others: digits' evaluator,
    # then its denoiser, then every digits cell) start before the rest.
    wildcard_constraints:
        **PLAN.pretrain_wildcards(chain=True),
    priority: 3


ruleorder: pretrain_first > pretrain
