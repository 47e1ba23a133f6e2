"""What every task offers: data, its objectives, an optional exact denoiser and fidelity metrics."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.diffusion.noise import derive_seed
from benchmark.objectives import builtin_objectives, check_objective, make_objective
from benchmark.tasks.networks import SCORE_MLP, Network


class _FromObjectives:
    """A class attribute of a task read off the objectives registry for the class it is read on
    (benchmark.objectives.builtin_objectives); a task that lists its own objectives sets it instead."""

    def __init__(self, compute):
        self.compute, self.__doc__ = compute, compute.__doc__

    def __get__(self, instance, owner):
        return self.compute(builtin_objectives(owner.name))


def _names(own: dict) -> tuple[str, ...]:
    """The built-in objectives whose `tasks` name the task, in registry order."""
    return tuple(own)


def _params(own: dict) -> dict[str, dict]:
    """Objective name -> {parameter: default} of the objectives that take parameters (their constructors')."""
    return {name: defaults for name, cls in own.items() if (defaults := cls.param_defaults())}


def _noisy(own: dict) -> tuple[str, ...]:
    """The objectives with a noise-conditional log-probability `noisy_log_prob(x_t, t)`."""
    return tuple(name for name, cls in own.items() if callable(getattr(cls, "noisy_log_prob", None)))


class Task:
    name: str = ""
    #: The names of the task's objectives: the built-ins whose `tasks` name it (benchmark.objectives). A task
    #: may instead list its own here and build them in `_make_objective(name, **params)`, with their
    #: parameters' defaults in `objective_params` (the protocol of plug-in tasks written before objectives
    #: were components).
    objectives: tuple[str, ...] = _FromObjectives(_names)
    has_oracle: bool = False
    #: Scale of the Gaussian jitter that is the default augmentation family (vector tasks).
    jitter: float = 0.05
    #: Objective name -> {parameter: default} of the objectives that take parameters (read off their constructors).
    objective_params: dict[str, dict] = _FromObjectives(_params)
    #: Image tasks get a sample gallery (PNG) next to each cell's results.
    is_image: bool = False
    #: The range (low, high) every coordinate of the data lies in, or None (unbounded): what the sampling
    #: option `clip_x0` clips the Tweedie estimate x0h to (benchmark.diffusion.sampler); tasks without one refuse it.
    data_range: tuple[float, float] | None = None
    #: Tasks that load pre-trained networks (classifiers, evaluators) from a cell's models folder.
    uses_models: bool = False
    #: Objectives with a noise-conditional log-probability `noisy_log_prob(x_t, t)` (a classifier
    #: trained on noisy inputs), the only ones methods with `uses_noisy_log_prob` (cg) can guide.
    noisy_log_prob_objectives: tuple[str, ...] = _FromObjectives(_noisy)
    #: The networks the task pre-trains (benchmark.tasks.networks): name -> Network. A vector task
    #: has one, its denoiser (used by experiments with `denoiser: trained`).
    networks: dict[str, Network] = {"denoiser": SCORE_MLP}
    #: Which way each of the task's metrics (sample_metrics, and the objectives' own) is better:
    #: "higher", "lower", or a target value the metric should be near (e.g. a variance ratio: 1.0).
    #: The report reads these instead of keeping its own lists.
    metric_directions: dict[str, str | float] = {}

    def __init__(self, task_seed: int = 0):
        self.task_seed = task_seed

    def generator(self, *parts) -> torch.Generator:
        """A generator seeded from the task's identity, so every cell sees the same problem."""
        return torch.Generator().manual_seed(derive_seed(self.name, self.task_seed, *parts))

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def objective(self, name: str, params: dict | None = None):
        """The objective `name` with its parameters `params`, built as `cls(task, **params)`
        (benchmark.objectives.make_objective): one of the task's built-ins, or a plug-in objective
        (benchmark.objectives.OBJECTIVES: entry points of `guidebench.objectives`, or an import path
        `package.module:Class`) whose `tasks` name this task; ValueError naming the allowed objectives otherwise."""
        return make_objective(self, name, params)

    def _make_objective(self, name: str, **params):
        """A task that lists its own `objectives` builds them here (fixed randomness from `self.generator`)."""
        raise NotImplementedError

    @classmethod
    def check_objective(cls, name: str, params: dict, task_seed: int = 0) -> None:
        """Raise ValueError for an objective the task does not offer, a parameter it does not take or a value
        it would refuse, without building it (what a cell spec checks): benchmark.objectives.check_objective."""
        check_objective(cls, name, params, task_seed)

    @classmethod
    def _check_param_names(cls, name: str, params: dict) -> None:
        """ValueError for a parameter the task's own objective `name` (built by `_make_objective`) does not take."""
        allowed = cls.objective_params.get(name, {})
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"objective {name!r} of task {cls.name!r} has no parameter(s) {unknown}; "
                             f"allowed: {sorted(allowed) or 'none'}")

    @classmethod
    def check_objective_params(cls, name: str, params: dict, task_seed: int = 0) -> None:
        """Raise ValueError for parameter values the objective `name` would refuse, without building
        it (no data, no networks): what the sweep asks before any job runs. A built-in's own
        `check_params`, its defaults filled in; a task that builds its own objectives overrides this."""
        objective = builtin_objectives(cls.name).get(name)
        if objective is not None:
            objective.check_params(objective.param_defaults() | dict(params), cls, task_seed)

    @classmethod
    def network_files(cls, objective: str, models_dir: str | Path | None) -> dict[str, Path]:
        """{network kind: file} of every pre-trained network a cell of `objective` loads from
        `models_dir` besides its denoiser checkpoint (none for tasks that load none)."""
        return {}

    def augment(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One random augmentation T(x) per sample for Shen et al.'s random augmentation:
        x, z: [B, *shape], z ~ N(0, I) per sample. Vector tasks: Gaussian jitter x + jitter * z.
        Image tasks override this with image augmentations (differentiable in x)."""
        return x + self.jitter * z

    def oracle(self, schedule):
        raise ValueError(f"task {self.name!r} has no exact (oracle) denoiser; use denoiser 'trained'")

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, float]:
        """Fidelity metrics of a batch of samples (`objective`: the cell's, for metrics that depend on it,
        e.g. a target class or a ground truth): each a float averaged over samples, or a [B] tensor of
        per-sample values (the results record its mean as the value and the values per chain)."""
        return {}
