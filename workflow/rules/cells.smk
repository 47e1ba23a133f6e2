# The cell jobs: one rule per job (benchmark.plan: PLAN.jobs), each a group of cells run by one process. In the
# tuning stage a group is the cells that differ only in strength and seed; the `select` checkpoint
# (report.smk) chooses one setting per method variant; in the evaluation stage a group is a chosen
# setting's evaluation seeds (every setting has its rule; only the chosen ones are asked for).
# `group_size` caps the cells of a job. Cells that can share a sampling pass run as one batch, each
# chain on its own cell's noise stream and strength (benchmark/batch.py), and every cell writes its own
# Parquet file as soon as it is done; a killed job resumes each cell from its round checkpoint
# (`checkpoint_every` rounds, beside its file).
#
# A job's inputs are the pre-trained networks its cells load (benchmark.pretraining.cell_networks): none for
# the oracle or a model declared under `denoisers`, the task's checkpoint for `trained`, and the
# networks its objective loads (digits' classifiers).
#
# Galleries: a cell of an image task also writes its samples as a PNG grid next to its Parquet file
# (same path, suffix .png). They are declared outputs, not side files, so Snakemake treats them like the
# results: a missing gallery reruns its job, a failed job's are removed with its Parquet files, a killed
# job's are redone by `--rerun-incomplete`, and `--delete-all-output` knows them. The report finds them
# next to the Parquet files (benchmark.report.galleries), keyed by the run id inside each.


for STAGE, STAGE_JOBS in PLAN.jobs.items():
    for NUMBER, JOB in enumerate(STAGE_JOBS):

        rule:
            name:
                PLAN.job_rule(STAGE, JOB, NUMBER)
            input:
                networks=PLAN.job_inputs(STAGE, JOB),
            output:
                parquet=PLAN.job_outputs(STAGE, JOB, "parquet"),
                gallery=PLAN.job_outputs(STAGE, JOB, "png"),
            log:
                PLAN.job_log(STAGE, JOB, "cells"),
            benchmark:  # the job's wall time, start-up included: its share of overhead is measurable
                PLAN.job_log(STAGE, JOB, "benchmarks")
            priority: PLAN.priorities[STAGE][JOB]  # the critical path first, then heavier jobs
            group:
                "cells"  # bundled into few SLURM submissions (the profile's group-components); ignored locally
            conda:
                "../envs/guidebench.yaml"
            threads: 1
            resources:
                mem_mb=lambda wc, attempt: RES["cell_mem_mb"] * attempt,  # more memory on each retry
                # cell_runtime per sampling pass (a pass of n cells as long as one cell: the GPU's case; on a
                # CPU a pass takes longer, and a retry after a time-out gets more time), more on each retry
                runtime=lambda wc, attempt, n=PLAN.job_passes(STAGE, JOB): RES[
                    "cell_runtime"
                ]
                * n
                * attempt,
                gpu=GPU,
                cpus_per_task=1,  # the SLURM plugin's CPUs per task: the job's one thread
            params:
                args=PLAN.job_args(STAGE, JOB),
                device=config["device"],
            shell:
                "python -m benchmark run {params.args} --device {params.device} --threads {threads} > {log} 2>&1"
