"""benchmark/registry.py: registries of named components (built-ins, entry points, import paths) and the
objectives' registry built on it.

Objectives are components with one constructor protocol, built-in and plug-in alike (issue 23): a class with
`name` and `tasks`, built as `cls(task, **params)`, its parameters its constructor's keywords. A task's
objectives, their parameters' defaults and which of them cg can guide are read off the registry
(benchmark.objectives.BUILTIN_OBJECTIVES), so a new built-in objective is one class and one registry line."""

import inspect
import subprocess
import sys

import pytest
import torch

import benchmark.objectives as objectives
from benchmark.objectives import BUILTIN_OBJECTIVES, Objective, builtin_classes
from benchmark.registry import Registry, import_path
from benchmark.tasks import TASKS, make_task
from tests.images_fixture import write_digit_folder
from tests.reward_fixture import FIXTURES

#: Parameters that have no usable default (the images and latent tasks' rewards need a user's function or model).
NEEDED = {(task, "reward"): {"fn": "images_fixture:brightness"} for task in ("images", "latent")} | {
    (task, "reward_model"): {"model": "aesthetic", "weights": str(FIXTURES / "aesthetic_head.safetensors"),
                             "encoder": str(FIXTURES / "tiny_clip.safetensors")} for task in ("images", "latent")}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry_images")
    write_digit_folder(folder, 3, channels=1, size=16)
    return folder


@pytest.fixture(scope="module")
def latent_pipeline(tmp_path_factory):
    """The tiny random Stable-Diffusion-style pipeline folder of tests/denoisers/test_latent.py (no download)."""
    pytest.importorskip("diffusers")
    from tests.latent_fixture import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("registry_sd"))


def _task(name, digits_models, image_folder, request=None):
    if name == "digits":
        return make_task("digits", models_dir=digits_models)
    if name == "images":
        return make_task("images", folder=image_folder)
    if name == "latent":
        from tests.denoisers.test_latent import EMBEDS, PROMPTS

        return make_task("latent", pipeline=str(request.getfixturevalue("latent_pipeline")), prompts=str(PROMPTS),
                         embeds=str(EMBEDS))
    return make_task(name)


@pytest.mark.parametrize("path", BUILTIN_OBJECTIVES)
def test_every_builtin_follows_the_protocol(path, digits_models, image_folder, request):
    """An Objective subclass with `name` and `tasks` (registered tasks), built as cls(task, **params) with every
    parameter a keyword with a default; built at its defaults it records them (`params()`) and scores a batch [B]."""
    cls = import_path(path)
    assert isinstance(cls, type) and issubclass(cls, Objective) and cls.name and cls.tasks
    assert set(cls.tasks) <= set(TASKS.builtins())
    first, *rest = inspect.signature(cls).parameters.values()
    assert first.name == "task" and all(p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in rest)
    defaults = cls.param_defaults()
    assert defaults == {p.name: p.default for p in rest}
    for task_name in cls.tasks:
        task = _task(task_name, digits_models, image_folder, request)
        assert cls.name in task.objectives
        assert TASKS[task_name].objective_params.get(cls.name, {}) == defaults
        obj = task.objective(cls.name, NEEDED.get((task_name, cls.name)))
        assert type(obj) is cls and obj.name == cls.name
        recorded = obj.params()
        assert set(recorded) == set(defaults)
        assert all(recorded[k] == v for k, v in (defaults | NEEDED.get((task_name, cls.name), {})).items()
                   if v is not None)                                    # None: resolved when built (kernel_size)
        x = torch.randn(3, *task.shape, generator=torch.Generator().manual_seed(0))
        r = obj(x)
        assert r.shape == (3,) and torch.isfinite(r).all()


def test_a_tasks_objectives_are_the_builtins_that_name_it():
    # every built-in task takes its objectives from the registry (none lists its own)
    by_task = {t: [c.name for c in builtin_classes() if t in c.tasks] for t in TASKS.builtins()}
    assert {t: list(TASKS[t].objectives) for t in by_task} == by_task
    assert TASKS["latent"].objectives == ("reward_model", "reward")
    assert TASKS["subspace"].objectives == ("quadratic_on", "quadratic_off", "negnorm_ones", "negnorm_random",
                                            "gaussian_inverse")
    # which objectives cg can guide: those with a noise-conditional log-probability, from the classes
    assert {t: TASKS[t].noisy_log_prob_objectives for t in by_task} == {
        "subspace": (), "sphere": (), "digits": ("label",), "images": (), "mixture": (), "latent": ()}
    from benchmark.tasks.base import Task

    own = [t for t in TASKS.builtins() if {"objectives", "_make_objective", "objective_params"} & set(vars(TASKS[t]))]
    assert not own and Task._make_objective is TASKS["latent"]._make_objective, own


def test_a_digits_cell_declares_the_networks_its_objective_loads(digits_models):
    """Task.network_files (the workflow's rule inputs) = the objective's `needs_networks` and the evaluator = what
    building it loads."""
    declared = {o: set(TASKS["digits"].network_files(o, digits_models)) for o in TASKS["digits"].objectives}
    assert declared == {"label": {"classifier", "noisy_classifier", "evaluator"}, "inpaint": {"evaluator"},
                        "superres": {"evaluator"}, "reward": {"classifier", "evaluator"}}
    for name, kinds in declared.items():
        task = make_task("digits", models_dir=digits_models)
        task.objective(name)
        assert set(task._networks) == kinds, name


class Offset(Objective):
    """r(x) = -||x - c 1||^2: a new built-in objective of the subspace task, in a file of its own."""

    name = "offset"
    tasks = ("subspace",)
    optimum = 0.0

    def __init__(self, task, c: float = 1.0):
        super().__init__()
        self.c = float(c)
        self.register_buffer("ones", torch.ones(task.dim))

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        if not params["c"] >= 0:
            raise ValueError(f"objective 'offset': c must be >= 0, got {params['c']!r}")

    def params(self) -> dict:
        return {"c": self.c}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x - self.c * self.ones) ** 2).sum(-1)


def test_a_new_builtin_is_one_class_and_one_registry_line(monkeypatch):
    """Registering the class is all it takes (no edit under benchmark/tasks/): the task lists it with its
    parameters, builds it, and the cell spec and the sweep's checks refuse its bad names and values."""
    from benchmark.spec import CellSpec

    monkeypatch.setattr(objectives, "BUILTIN_OBJECTIVES", (*BUILTIN_OBJECTIVES, f"{__name__}:Offset"))
    sub = TASKS["subspace"]
    assert sub.objectives[-1] == "offset" and sub.objective_params["offset"] == {"c": 1.0}
    r = make_task("subspace").objective("offset", {"c": 2.0})
    assert r.params() == {"c": 2.0} and r(torch.full((2, 64), 2.0)).tolist() == [0.0, 0.0]
    assert float(r(torch.zeros(1, 64))) == -4.0 * 64
    with pytest.raises(ValueError, match=r"objective 'offset' of task 'subspace' has no parameter\(s\) \['d'\]; "
                                         r"allowed: \['c'\]"):
        sub.check_objective("offset", {"d": 1.0})
    with pytest.raises(ValueError, match="c must be >= 0, got -1"):
        sub.check_objective_params("offset", {"c": -1})                 # what the sweep asks
    with pytest.raises(ValueError, match="c must be >= 0, got -1"):
        CellSpec(task="subspace", objective="offset", method="none", objective_params={"c": -1})
    CellSpec(task="subspace", objective="offset", method="none", objective_params={"c": 0.5})
    with pytest.raises(ValueError, match=r"task 'sphere' has no objective 'offset'; allowed: \['linear'\]"):
        make_task("sphere").objective("offset")                         # it names the subspace task only


def test_two_builtins_of_one_name_for_one_task_are_refused(monkeypatch):
    monkeypatch.setattr(objectives, "BUILTIN_OBJECTIVES",
                        (*BUILTIN_OBJECTIVES, "benchmark.objectives.subspace:QuadraticOn"))
    with pytest.raises(ValueError, match="'benchmark.objectives.subspace:QuadraticOn' and "
                                         "'benchmark.objectives.subspace:QuadraticOn' are both objective "
                                         "'quadratic_on' of task 'subspace'"):
        TASKS["subspace"].objectives
    monkeypatch.setattr(objectives, "BUILTIN_OBJECTIVES", ("benchmark.objectives.quadratic:Quadratic",))
    with pytest.raises(ValueError, match="must be an Objective subclass with class attributes `name` and `tasks`"):
        TASKS["subspace"].objectives


def test_one_name_per_task_not_across_tasks():
    """digits and images both have an `inpaint`: each task builds its own class."""
    digits, images = TASKS["digits"], TASKS["images"]
    assert objectives.builtin_objectives("digits")["inpaint"] is not objectives.builtin_objectives("images")["inpaint"]
    assert digits.objective_params["inpaint"] == {"image": "all", "sigma_y": 0.05, "mask": "centre"}
    assert images.objective_params["inpaint"]["size"] == 0.5
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['size'\]; allowed: \['image', 'mask', 'sigma_y'\]"):
        digits.check_objective("inpaint", {"size": 0.5})
    images.check_objective("inpaint", {"size": 0.25})


@pytest.mark.parametrize("module", ["benchmark.tasks.mixture.objectives", "benchmark.objectives.digits",
                                    "benchmark.tasks"])
def test_any_import_order_resolves_the_registry(module):
    """The registry is read on first use, so whichever module a process imports first, it resolves."""
    code = f"import {module}; from benchmark.objectives import builtin_classes; print(len(builtin_classes()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(len(BUILTIN_OBJECTIVES)), proc.stderr


# --- the Registry itself ----------------------------------------------------------------------

GROUP = "guidebench.tests_no_such_group"   # no installed distribution has entry points here


@pytest.mark.parametrize("path, message", [
    ("benchmark.registry", r"'benchmark.registry' is not an import path; expected 'package.module:Attribute'"),
    ("no_such_module_xyz:Thing", r"cannot import 'no_such_module_xyz' \(from 'no_such_module_xyz:Thing'\)"),
    ("benchmark.registry:Registry.nope", r"module 'benchmark.registry' has no attribute 'Registry.nope' "
                                         r"\(from 'benchmark.registry:Registry.nope'\)"),
])
def test_import_path_names_what_failed(path, message):
    with pytest.raises(ValueError, match=message):
        import_path(path)
    assert import_path("benchmark.registry:Registry.get") is Registry.get      # dotted attributes resolve


def test_a_registry_resolves_builtins_then_import_paths_and_names_every_allowed_name():
    reg = Registry("widget", GROUP, {"b": int, "a": str})
    assert list(reg) == ["b", "a"] and len(reg) == 2 and reg["a"] is str
    assert reg.origin("a") == "built-in"
    assert reg["benchmark.registry:Registry"] is Registry and reg.origin("benchmark.registry:Registry") == "import path"
    assert "benchmark.registry:Registry" not in list(reg)                  # paths resolve but are not listed
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; allowed: \['a', 'b'\] \(or an import path "
                                         r"'package.module:Attribute', or a plug-in's entry point in group "
                                         r"'guidebench.tests_no_such_group'\)$"):
        reg["c"]
    assert "c" not in reg and reg.get("c", 42) == 42


def test_registering_deleting_and_resolving_a_subclass():
    reg = Registry("widget", GROUP, {"num": int})
    reg["flag"] = bool                                                     # as monkeypatch.setitem does
    assert reg.builtins() == {"num": int, "flag": bool}
    assert reg.resolve_subclass("flag", int) is bool
    with pytest.raises(ValueError, match=r"widget 'num' resolves to <class 'int'>, which is not a subclass of "
                                         r"builtins.bool"):
        reg.resolve_subclass("num", bool)
    del reg["flag"]
    assert "flag" not in reg
    with pytest.raises(KeyError):
        del reg["benchmark.registry:Registry"]                             # only built-ins can be deleted
