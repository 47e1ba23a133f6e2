"""Cells into jobs: a job runs a group of cells in one process (start-up paid once), its sampling passes
batched (benchmark.batch), each cell still its own file.

In the tuning stage a job holds cells that differ only in strength and seed, in the evaluation stage one
chosen setting's seeds (a setting, `job_key`, is a cell id without its `_seed<seed>` suffix); `group_size`
cells at most (`stage_jobs`). Which jobs start first: `job_priorities`. A job's command line must fit the
system's limit on one argument (`check_job_commands`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.config import ConfigError
from benchmark.paths import job_key
from benchmark.pretraining import cell_networks

if TYPE_CHECKING:
    from benchmark.spec import CellSpec
    from benchmark.sweep import SweepCell


def jobs_from_cells(cells: dict[str, SweepCell]) -> dict[str, list[str]]:
    """Group cell ids by setting (job key); every setting holds the same seeds, in config order."""
    jobs: dict[str, list[str]] = {}
    for cell_id in cells:
        jobs.setdefault(job_key(cell_id), []).append(cell_id)
    return jobs


def _job_domain(spec: CellSpec, first: set[str] | None, models_dir: str) -> tuple[str, bool]:
    """What a tuning job holds cells of: one task, and either the cells that wait for the longest pre-training
    chain (they load one of the files `first`; `first=None`: every cell) or the others."""
    return spec.task, first is None or bool(first & set(cell_networks(spec, models_dir)))


def job_priorities(jobs: dict[str, list[str]], cells: dict[str, SweepCell], first: set[str],
                   models_dir: str) -> dict[str, float]:
    """Snakemake priorities of cell jobs, the critical path first: 2 for a job that loads one of the networks
    `first` (the pre-training chain, digits' evaluator then denoiser: the longest path of the run), else 0
    (the pre-training of the others has 1, so it runs before the cells that do not wait for it); plus up to
    0.5 for the heavier of one task's jobs (sampling work, benchmark.batch.work), so the longest jobs start
    first."""
    from benchmark.batch import work

    loads = {j: sum(work(cells[c].spec) for c in ids) for j, ids in jobs.items()}
    domains: dict[tuple, list[str]] = {}       # a job's cells share their domain (stage_jobs; one setting)
    for j, ids in jobs.items():
        domains.setdefault(_job_domain(cells[ids[0]].spec, first, models_dir), []).append(j)
    out = {}
    for (_, late), members in domains.items():
        for r, j in enumerate(sorted(members, key=lambda k: loads[k]), 1):
            out[j] = (2.0 if late else 0.0) + 0.5 * r / (len(members) + 1)
    return out


def stage_jobs(cells: dict[str, SweepCell], size: int, by_setting: bool = False, spread: int = 1,
               first: set[str] | None = None, models_dir: str = "models") -> dict[str, list[str]]:
    """The jobs of a stage: {job id: cell ids}, at most `size` cells each, run by one process.

    Tuning stage: the groups of cells that differ only in strength and seed (benchmark.batch.groups, each
    batched into shared sampling passes; a group bigger than `size` is split first), packed whole into the
    fewest jobs of one task that hold them: each job pays one process's start-up. The cells that wait for
    the longest pre-training chain (they load one of the files `first`: digits' U-Net and classifiers) start
    last, when little else is left to run beside them, so theirs are spread over at least `spread` jobs
    (config `job_spread`, the cores; at most one job per group); `first=None` spreads every task's. The jobs
    of one task are of even sampling work (benchmark.batch.pack, work: denoiser evaluations by the methods'
    declared costs), heaviest first. Evaluation stage (`by_setting`: one setting per variant is chosen,
    known only after the selection): one setting's seeds per job. A job id is its first cell id, with
    `+<n>` for n > 1 cells."""
    from benchmark.batch import chunk_id, groups, pack, work

    if by_setting:
        out: dict[str, list[str]] = {}
        for ids in jobs_from_cells(cells).values():
            out |= groups({c: cells[c].spec for c in ids}, size)
        return out
    domains: dict[tuple, list[list[str]]] = {}
    for chunk in groups({c: cell.spec for c, cell in cells.items()}, size).values():
        domains.setdefault(_job_domain(cells[chunk[0]].spec, first, models_dir), []).append(chunk)
    weights = {c: work(cell.spec) for c, cell in cells.items()}
    packed = [job for (_, late), chunks in domains.items()
              for job in pack(chunks, weights, size, spread if late else 1)]
    return {chunk_id(job): job for job in packed}


#: The longest shell command a cell job may have: Linux refuses a single argument over 128 KiB
#: (MAX_ARG_STRLEN), and Snakemake hands the whole command to `bash -c` as one (its log redirection too).
MAX_JOB_COMMAND = 120_000


def check_job_commands(commands: dict[str, str]) -> None:
    """ConfigError naming the jobs whose command line (`python -m benchmark run` arguments) is too long."""
    long = {job: len(cmd) for job, cmd in commands.items() if len(cmd) > MAX_JOB_COMMAND}
    if long:
        job, n = max(long.items(), key=lambda kv: kv[1])
        raise ConfigError(f"group_size: {len(long)} cell job(s) have a command line over {MAX_JOB_COMMAND} bytes "
                          f"(the system's limit is 131072), the longest {n} bytes ({job}); lower group_size")
