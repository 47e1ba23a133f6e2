"""benchmark/tasks/base.py: what every task offers by default: a generator seeded from the task's identity, the
objective lists read off the objectives registry for the class they are read on, the parameter-name check of tasks
that build their own objectives, Gaussian-jitter augmentation, and no oracle."""

import pytest
import torch

from benchmark.diffusion.noise import derive_seed
from benchmark.objectives import builtin_objectives
from benchmark.tasks import TASKS
from benchmark.tasks.base import Task


class Plain(Task):
    """A task with no built-in objectives, that lists and builds its own (the older plug-in protocol)."""

    name = "md_plain"
    objectives = ("own",)
    objective_params = {"own": {"k": 1}, "bare": {}}
    dim = 3


def test_the_generator_is_seeded_by_the_tasks_name_seed_and_parts():
    draw = lambda task, *parts: torch.rand(4, generator=task.generator(*parts))        # noqa: E731
    a = draw(Plain(), "A", 2)
    assert torch.equal(a, draw(Plain(), "A", 2))                                   # every cell: the same problem
    assert torch.equal(a, torch.rand(4, generator=torch.Generator().manual_seed(derive_seed("md_plain", 0, "A", 2))))
    assert not torch.equal(a, draw(Plain(), "A", 3)) and not torch.equal(a, draw(Plain(task_seed=1), "A", 2))
    assert not torch.equal(a, draw(TASKS["subspace"](), "A", 2))                  # another task's name


def test_objective_lists_are_read_off_the_registry_for_each_task():
    """objectives, objective_params and noisy_log_prob_objectives: the built-ins whose `tasks` name the class they
    are read on (not the base class's), those with parameters, and those with a noise-conditional log-probability."""
    for name in ("subspace", "digits", "mixture"):
        own = builtin_objectives(name)
        cls = TASKS[name]
        assert cls.objectives == tuple(own) and cls().objectives == tuple(own)
        assert cls.objective_params == {n: c.param_defaults() for n, c in own.items() if c.param_defaults()}
    assert TASKS["digits"].noisy_log_prob_objectives == ("label",)
    assert TASKS["subspace"].noisy_log_prob_objectives == () and TASKS["subspace"].objective_params == {
        "gaussian_inverse": {"m": 8, "sigma_y": 0.25}}
    assert Task.objectives == () and Plain.objectives == ("own",)                  # a task may list its own


def test_a_parameter_a_tasks_own_objective_does_not_take_is_named_with_the_allowed():
    Plain._check_param_names("own", {"k": 2})
    with pytest.raises(ValueError, match=r"objective 'own' of task 'md_plain' has no parameter\(s\) \['j', 'kk'\]; "
                                         r"allowed: \['k'\]"):
        Plain._check_param_names("own", {"kk": 2, "j": 0, "k": 1})
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['k'\]; allowed: none"):
        Plain._check_param_names("bare", {"k": 1})


def test_defaults_jitter_no_oracle_no_networks_to_load(tmp_path):
    t = Plain()
    x, z = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(t.augment(x, z), x + 0.05 * z) and t.shape == (3,)
    with pytest.raises(ValueError, match="task 'md_plain' has no exact \\(oracle\\) denoiser; use denoiser 'trained'"):
        t.oracle(None)
    assert t.network_files("own", tmp_path) == {} and t.sample_metrics(x) == {} and t.data_range is None
    Plain.check_objective_params("own", {"anything": 1})            # not a built-in: the task's own check (none here)
