"""Plug-ins: a method, an objective and a task from another distribution, found through entry points
(`guidebench.methods`, `guidebench.objectives`, `guidebench.tasks`), listed by `python -m benchmark list`,
checked by `python -m benchmark check-method`, and run by the contract tests (the task: pre-trained and run
by `pretrain` and `run`); import paths without entry points.

The plug-in is tests/fixtures/guidebench_demo_plugin, installed offline (no index, no build isolation:
setuptools comes from the test environment) into a temporary folder put on PYTHONPATH of subprocesses,
so this process's registries never see it.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/guidebench_demo_plugin"


def _env(*paths) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The fixture distribution installed into a fresh folder (its entry points included)."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is None:   # the build backend, with no index to fetch it from
        pytest.fail("installing the plug-in fixture offline needs setuptools>=70.1 in the test environment "
                    "(pip install 'setuptools>=70.1'); it builds wheels without the `wheel` package")
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "src"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(site), str(source)],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "guidebench_demo").is_dir() and list(site.glob("guidebench_demo_plugin-*.dist-info"))
    return site


def bench(site, *args, timeout=600) -> subprocess.CompletedProcess:
    paths = [site] if site else []
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(*paths), timeout=timeout)


def python(code: str, *paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          env=_env(*paths), timeout=600)


@pytest.fixture(scope="module")
def listed(plugin_site) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """`list` and `list --json` with the plug-in installed (run once for the tests that read them)."""
    return bench(plugin_site, "list"), bench(plugin_site, "list", "--json")


def test_list_shows_the_plugin_method_and_objective(listed):
    proc = listed[0]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("demo_tweedie"))
    assert "plug-in (guidebench.methods: demo_tweedie = guidebench_demo.methods:TweedieGradient)" in line
    assert "Normalised Tweedie-gradient guidance" in line
    assert "strength: float = 0.0, eps: float = 1e-08" in out
    subspace = next(ln for ln in out.splitlines() if ln.strip().startswith("subspace"))
    assert "quadratic_off" in subspace and "plug-in objectives: demo_latent" in subspace
    sphere = next(ln for ln in out.splitlines() if ln.strip().startswith("sphere"))
    assert "demo_latent" not in sphere                                   # it applies to subspace only
    assert "demo_latent" in out and "tasks subspace; target = 1.0" in out
    for name in ("dps", "tfg", "smc", "oracle"):                          # the built-ins still there
        assert f"  {name}" in out

    catalog = json.loads(listed[1].stdout)
    demo = next(m for m in catalog["methods"] if m["name"] == "demo_tweedie")
    assert demo["class"] == "guidebench_demo.methods:TweedieGradient"
    assert demo["params"] == [{"name": "strength", "type": "float", "default": 0.0},
                              {"name": "eps", "type": "float", "default": 1e-8}]
    [obj] = catalog["objectives"]
    assert (obj["name"], obj["tasks"], obj["params"]) == ("demo_latent", ["subspace"],
                                                          [{"name": "target", "default": 1.0}])
    plugged = {t["name"]: t["plugin_objectives"] for t in catalog["tasks"]}
    assert plugged.pop("subspace") == ["demo_latent"] and {"sphere", "digits"} <= set(plugged)
    assert not any(plugged.values())                                      # no other task gets it


def test_list_without_plugins():
    proc = bench(None, "list")
    assert proc.returncode == 0, proc.stderr
    assert "demo_tweedie" not in proc.stdout and "(none installed" in proc.stdout


def test_check_method_passes_on_the_plugin(plugin_site):
    proc = bench(plugin_site, "check-method", "demo_tweedie")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("hyper-parameters", "batch equals single chains", "same seed same samples", "cost formula"):
        assert f"PASS  {check}" in proc.stdout
    assert "all 5 checks passed" in proc.stdout
    assert "counted = declared: (20, 20, 20, 20) per sample over 20 steps" in proc.stdout
    proc = bench(plugin_site, "check-method", "guidebench_demo.methods:TweedieGradient", "--strength", "0.5",
                 "--param", "eps=1e-6")
    assert proc.returncode == 0 and "at strength 0.5 with {'eps': 1e-06}" in proc.stdout, proc.stdout


@pytest.mark.parametrize("path, failed, text", [
    ("guidebench_demo.methods:BatchNormalised", "batch equals single chains", "couples the samples"),
    ("guidebench_demo.methods:NoCostFormula", "cost formula",
     "method 'demo_no_cost_formula' (guidebench_demo.methods.NoCostFormula) declares no cost formula: "
     "define costs_per_sample(steps)"),
])
def test_check_method_fails_on_a_broken_method(plugin_site, path, failed, text):
    proc = bench(plugin_site, "check-method", path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAIL  {failed}: " in proc.stdout and text in proc.stdout
    assert f"1 of 5 checks failed: {failed}" in proc.stdout


def test_check_method_names_what_does_not_resolve(plugin_site):
    for name, text in [("guidebench_demo.methods:Nope", "has no attribute 'Nope'"),
                       ("not_a_package_xyz:Method", "cannot import 'not_a_package_xyz'"),
                       ("guidebench_demo.objectives:LatentTarget", "is not a subclass of"),
                       ("gradient", "unknown method 'gradient'; allowed: ['bon', 'cg', 'daps', 'ddnm', 'demo_tweedie', 'diffpir', 'dps'")]:
        proc = bench(plugin_site, "check-method", name)
        assert proc.returncode == 1 and "FAIL  builds: " in proc.stdout and text in proc.stdout, proc.stdout


def test_plugin_objective_through_the_task(plugin_site):
    proc = python("""
        import pytest, torch
        from benchmark.objectives import OBJECTIVES
        from benchmark.tasks import make_task

        sub = make_task("subspace")
        r = sub.objective("demo_latent", {"target": 2.0})
        assert r.params() == {"target": 2.0} and r.optimum == 2.0
        assert torch.allclose(r((r.A @ r.c)[None]), torch.tensor([2.0]))    # the optimum, on the support
        assert "demo_latent" in OBJECTIVES
        with pytest.raises(ValueError, match=r"objective 'demo_latent' \\(guidebench_demo.objectives.LatentTarget\\) "
                                             r"applies to tasks \\['subspace'\\], not to task 'sphere'; allowed for "
                                             r"task 'sphere': \\['linear'\\]"):
            make_task("sphere").objective("demo_latent")
        with pytest.raises(ValueError, match=r"has no parameter\\(s\\) \\['tagret'\\]; allowed: \\['target'\\]"):
            sub.objective("demo_latent", {"tagret": 1.0})
        from benchmark.spec import CellSpec   # refused in the spec too, before any job (no objective built)
        with pytest.raises(ValueError, match=r"has no parameter\\(s\\) \\['tagret'\\]; allowed: \\['target'\\]"):
            CellSpec(task="subspace", objective="demo_latent", method="none", objective_params={"tagret": 1.0})
        with pytest.raises(ValueError, match=r"task 'subspace' has no objective 'nope'; "
                                             r"allowed: \\[.*'gaussian_inverse', 'demo_latent'\\]"):
            sub.objective("nope")
        print("ok")
    """, plugin_site)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_import_paths_resolve_without_entry_points():
    """The fixture's source folder on the path (a module, no distribution, so no entry points): methods,
    objectives and the contract reach it by `package.module:Class`."""
    proc = python("""
        import pytest
        from benchmark.contract import check_method
        from benchmark.methods import METHODS, make_method, method_params
        from benchmark.objectives import OBJECTIVES
        from benchmark.tasks import make_task

        assert "demo_tweedie" not in METHODS and "demo_latent" not in OBJECTIVES
        path = "guidebench_demo.methods:TweedieGradient"
        assert path in METHODS and METHODS.origin(path) == "import path"
        m = make_method(path, 0.3, eps=1e-6)
        assert type(m).__name__ == "TweedieGradient" and m.eps == 1e-6
        assert set(method_params(path)) == {"strength", "eps"}
        assert m.costs_per_sample(7) == (7, 7, 7, 7)
        assert all(c.passed for c in check_method(path)), check_method(path)
        r = make_task("subspace").objective("guidebench_demo.objectives:LatentTarget", {"target": 0.5})
        assert r.params() == {"target": 0.5}
        with pytest.raises(ValueError, match="unknown method 'demo_tweedie'"):
            make_method("demo_tweedie")
        print("ok")
    """, FIXTURE)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_contract_tests_run_over_the_plugin(plugin_site):
    """tests/test_contract.py with the plug-in installed: its tests run over demo_tweedie too."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_contract.py", "-k", "plugin-demo_tweedie"],
                          capture_output=True, text=True, cwd=ROOT, env=_env(plugin_site), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "5 passed" in proc.stdout, proc.stdout[-2000:]


def test_a_config_refuses_an_import_path_as_method_name():
    """A method name is a component of every cell id (a file path): an import path needs an entry point."""
    from benchmark.config import ConfigError
    from benchmark.config_checks import check_config

    config = {"seeds": {"tuning": [0], "evaluation": [1]},
              "experiments": {"e": {"task": "subspace", "denoiser": "oracle", "objectives": ["quadratic_off"],
                                    "rounds": 1, "samples": 2, "steps": 5,
                                    "methods": {"benchmark.methods.dps:DPS": {"strengths": [0.1]}}}}}
    with pytest.raises(ConfigError, match=r"method name 'benchmark.methods.dps:DPS' cannot be part of a file name.*"
                                          r"entry point in group 'guidebench.methods'"):
        check_config(config)


def test_list_shows_the_plugin_task_with_its_objectives(listed):
    proc = listed[0]
    assert proc.returncode == 0, proc.stderr
    ring = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("demo_ring"))
    assert "plug-in (guidebench.tasks: demo_ring = guidebench_demo.tasks:RingTask)" in ring
    assert "]: linear" in ring and "oracle" not in ring                   # its objective; no exact denoiser
    catalog = json.loads(listed[1].stdout)
    task = next(t for t in catalog["tasks"] if t["name"] == "demo_ring")
    assert (task["class"], task["objectives"], task["plugin_objectives"], task["oracle"]) == \
        ("guidebench_demo.tasks:RingTask", ["linear"], [], False)


def test_plugin_task_pretrains_and_runs(plugin_site, tmp_path):
    """`pretrain` and `run` on the plug-in task: a ScoreMLP on its data, then a dps cell on it whose rows are
    ok and carry its fidelity metric radius_error, per chain."""
    import pandas as pd

    checkpoint, out = tmp_path / "ring.safetensors", tmp_path / "ring.parquet"
    proc = bench(plugin_site, "pretrain", "--task", "demo_ring", "--epochs", "1", "--n-train", "2048", "--hidden", "32",
                 "--depth", "1", "--out", str(checkpoint))
    assert proc.returncode == 0 and checkpoint.is_file(), proc.stderr[-2000:]
    assert '"task": "demo_ring"' in proc.stderr
    proc = bench(plugin_site, "run", "--task", "demo_ring", "--objective", "linear", "--method", "dps", "--strength",
                 "0.1", "--denoiser", "trained", "--checkpoint", str(checkpoint), "--rounds", "1", "--samples", "4",
                 "--steps", "5", "--out", str(out))
    assert proc.returncode == 0 and f"{out}: " in proc.stderr and "status ok" in proc.stderr, proc.stderr[-2000:]
    df = pd.read_parquet(out)
    assert set(df.status) == {"ok"} and set(df.task) == {"demo_ring"} and set(df["round"]) == {0, 1}
    radius = df[df.metric == "radius_error"]
    assert len(radius) == 2 and radius.value.ge(0).all()                  # rounds 0 (unguided) and 1
    assert all(len(v) == 4 for v in radius.per_sample)                    # one value per chain
    assert {"reward_mean", "gap_support"} <= set(df.metric)               # the linear objective's own


def test_plugin_task_refuses_what_it_lacks(plugin_site):
    """No oracle and one objective: the cell spec says so before anything runs."""
    proc = bench(plugin_site, "run", "--task", "demo_ring", "--objective", "linear", "--method", "dps",
                 "--denoiser", "oracle", "--rounds", "1", "--samples", "2", "--steps", "2", "--out", "unused.parquet")
    assert proc.returncode == 2 and "task 'demo_ring' has no exact (oracle) denoiser" in proc.stderr, proc.stderr
    proc = bench(plugin_site, "run", "--task", "demo_ring", "--objective", "quadratic_off", "--method", "dps",
                 "--denoiser", "trained", "--checkpoint", "unused.safetensors", "--out", "unused.parquet")
    assert proc.returncode == 2 and "task 'demo_ring' has no objective 'quadratic_off'; allowed: ['linear']" \
        in proc.stderr, proc.stderr
    assert not (ROOT / "unused.parquet").exists()


# --- end to end through the workflow (slow) -------------------------------------------------------------

PLUGIN_CONFIG = {
    "results_dir": "results/plugin", "models_dir": "models/plugin", "report": "reports/plugin.html",
    "device": "cpu", "gpu": False, "seeds": {"tuning": [0], "evaluation": [1]},
    "protocol": {"gate": {"subspace": [{"metric": "r_off", "tolerance": 0.05}]}},
    "experiments": {"plugin": {"task": "subspace", "denoiser": "oracle", "objectives": ["quadratic_off"],
                               "rounds": 1, "samples": 4, "steps": 10,
                               "methods": {"none": {"strengths": [0.0]}, "dps": {"strengths": [0.1]},
                                           "demo_tweedie": {"strengths": [0.2, 0.5]}}}},
}


@pytest.mark.slow
def test_plugin_method_through_snakemake(plugin_site, tmp_path):
    """A config naming the plug-in method runs end to end: its cells land with status ok and their cost
    columns equal its declared formula, and the report names it."""
    import pandas as pd
    import yaml

    config = tmp_path / "plugin.yaml"
    config.write_text(yaml.safe_dump(PLUGIN_CONFIG))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(work), "--configfile", str(config), "--cores", "2"],
                          capture_output=True, text=True, env=_env(plugin_site), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = sorted((work / "results/plugin/cells").rglob("*.parquet"))
    demo = [f for f in files if "/demo_tweedie/" in f.as_posix()]
    assert demo, [f.as_posix() for f in files]
    df = pd.concat([pd.read_parquet(f) for f in demo])
    assert (df.status == "ok").all() and set(df.method) == {"demo_tweedie"}
    guided = df[(df["round"] == 1) & (df.metric == "reward_mean")]
    # per round: samples x steps x (1, 1, 1, 1), the plug-in's declared formula
    assert (guided.cost_denoiser_forwards == 4 * 10).all() and (guided.cost_denoiser_vjps == 4 * 10).all()
    assert (guided.cost_objective_grads == 4 * 10).all()
    report = work / "reports/plugin.html"
    assert report.exists() and "demo_tweedie" in report.read_text()
