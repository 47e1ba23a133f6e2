"""benchmark/jobs.py: cells into jobs. A setting's seeds are one job key; a stage's jobs partition its cells,
each within the size, one task and (evaluation stage) one setting; the critical path starts first; a command line
over the system's limit is refused naming group_size."""

import pytest

from benchmark.config import ConfigError
from benchmark.jobs import MAX_JOB_COMMAND, check_job_commands, job_priorities, jobs_from_cells, stage_jobs
from benchmark.paths import job_key
from benchmark.sweep import cells_from_config
from tests.test_sweep import load


def test_jobs_group_the_seeds_of_a_cell():
    config = load()
    config["seeds"]["tuning"] = [0, 5]
    cells = cells_from_config(config)
    jobs = jobs_from_cells(cells)
    assert len(jobs) * 2 == len(cells)
    for key, members in jobs.items():
        assert [cells[m].spec.seed for m in members] == [0, 5]
        assert all(cells[m].spec.replace(seed=0) == cells[members[0]].spec for m in members)
        assert all(job_key(m) == key for m in members)
    with pytest.raises(ValueError, match="not a cell id"):
        job_key("subspace/oracle/x")


def test_a_stages_jobs_partition_its_cells_within_the_size():
    """Tuning: each job one task, at most `size` cells, every cell in exactly one job, its id its first cell's
    (`+<n>` for more); evaluation (by setting): each job one setting's seeds."""
    config = load("smoke.yaml")
    config["seeds"]["tuning"] = [0, 5]
    cells = cells_from_config(config)
    for size, by_setting in ((3, False), (100, False), (1, True)):
        jobs = stage_jobs(cells, size, by_setting=by_setting)
        members = [c for ids in jobs.values() for c in ids]
        assert sorted(members) == sorted(cells) and len(members) == len(set(members)), (size, by_setting)
        for job, ids in jobs.items():
            assert 1 <= len(ids) <= size
            assert len({cells[c].spec.task for c in ids}) == 1
            assert job == (ids[0] if len(ids) == 1 else f"{ids[0]}+{len(ids)}")
            if by_setting:
                assert len({job_key(c) for c in ids}) == 1


def test_jobs_on_the_critical_path_start_first():
    """A job that loads one of the `first` networks outranks every other job (2 + up to 0.5 against up to 0.5)."""
    config = load("smoke.yaml")
    cells = cells_from_config(config)
    jobs = jobs_from_cells(cells)
    models = config["models_dir"]
    first = {f"{models}/digits_denoiser.safetensors"}
    priority = job_priorities(jobs, cells, first, models)
    late = {j for j, ids in jobs.items() if cells[ids[0]].spec.task == "digits"}
    assert late and late != set(jobs)
    assert all(2.0 < priority[j] <= 2.5 for j in late)
    assert all(0.0 < priority[j] <= 0.5 for j in set(jobs) - late)


def test_a_command_line_over_the_limit_is_refused_naming_group_size():
    check_job_commands({"a": "x" * MAX_JOB_COMMAND})                      # at the limit: fine
    with pytest.raises(ConfigError, match=rf"^group_size: 2 cell job\(s\) have a command line over {MAX_JOB_COMMAND} "
                                          rf"bytes .*, the longest {MAX_JOB_COMMAND + 9} bytes \(b\); lower group_size$"):
        check_job_commands({"a": "x" * (MAX_JOB_COMMAND + 1), "b": "x" * (MAX_JOB_COMMAND + 9), "c": "ok"})
