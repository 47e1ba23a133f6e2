"""The README's section "Bring your own method / objective / model / task", checked against the real thing.

- Python blocks: each names its file on its first line (`# guidebench_demo/methods.py`), runs as written
  (test_python_blocks_run_as_written: the method passes check-method), and is an excerpt of
  that file of the demo plug-in (tests/fixtures/guidebench_demo_plugin): dedented, every run of lines between
  two `# ...` marks (what the README leaves out) appears verbatim in the file, in the block's order.
- TOML blocks: valid TOML, contained verbatim in the plug-in's pyproject.toml; each entry point names a class
  a Python block shows, and each class a Python block shows has one.
- YAML blocks: complete configs that pass `python -m benchmark check-config` with the plug-in installed (in a
  folder where the images task's data folder does not exist, with an empty Hugging Face cache: check-config
  needs neither); the ones naming plug-in components are refused without it; the model's block is the
  preset config/ddpm_cifar10.yaml's.
- Commands: every `python -m benchmark SUB` of the section names a subcommand of `python -m benchmark --help`,
  and every --flag of a command block is one of that subcommand's; repository paths named exist.
"""

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.test_plugins import FIXTURE, _env, plugin_site  # noqa: F401  (plugin_site: the installed plug-in, a fixture)

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Bring your own method / objective / model / task"
ELISION = re.compile(r"^\s*# \.\.\.")


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(HEADING) == 1, f"README.md has no (or more than one) section {HEADING!r}"
    body = text.split(HEADING, 1)[1]
    return body.split("\n## ", 1)[0]


def blocks(lang: str) -> list[str]:
    """The section's fenced code blocks of language `lang` (their text, without the fences)."""
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", section(), re.S | re.M) if m.group(1) == lang]


def python_blocks() -> list[tuple[str, str]]:
    """(fixture file, block text without its first line) of every Python block."""
    out = []
    for block in blocks("python"):
        first, _, rest = textwrap.dedent(block).partition("\n")
        m = re.fullmatch(r"# (guidebench_demo/\w+\.py)", first.strip())
        assert m, f"a README Python block must start with a comment naming its file, got {first!r}"
        out.append((m.group(1), rest))
    return out


def segments(code: str) -> list[str]:
    """The runs of lines between `# ...` marks, without leading and trailing blank lines."""
    runs, current = [], []
    for line in code.splitlines():
        if ELISION.match(line):
            runs.append(current)
            current = []
        else:
            current.append(line)
    runs.append(current)
    out = []
    for run in runs:
        text = "\n".join(run).strip("\n")
        assert text.strip(), "an empty excerpt between two `# ...` marks"
        out.append(text)
    return out


def test_the_section_shows_each_kind():
    text = section()
    for lead in ("**A method.**", "**An objective.**", "**A model.**", "**A task.**"):
        assert lead in text
    assert [f for f, _ in python_blocks()] == ["guidebench_demo/methods.py", "guidebench_demo/objectives.py",
                                               "guidebench_demo/tasks.py"]
    groups = [next(iter(tomllib.loads(b)["project"]["entry-points"])) for b in blocks("toml")]
    assert groups == ["guidebench.methods", "guidebench.objectives", "guidebench.tasks"]
    assert len(blocks("yaml")) == 3 and blocks("bash")
    assert not set(re.findall(r"^```(\w*)$", text, re.M)) - {"python", "toml", "yaml", "bash", ""}


@pytest.mark.parametrize("path, code", python_blocks(), ids=[f for f, _ in python_blocks()])
def test_python_blocks_are_excerpts_of_the_plugin(path, code):
    source = (FIXTURE / path).read_text(encoding="utf-8")
    lines = "\n" + source + "\n"
    at = 0
    for seg in segments(code):
        found = lines.find("\n" + seg + "\n", at)                     # whole lines, after the previous excerpt
        assert found >= 0, f"README excerpt not in {path} (in this order, verbatim):\n{seg}"
        at = found + len(seg) + 1


def test_python_blocks_run_as_written(tmp_path):
    """Each Python block, copied as written into a fresh package `readme_demo` (no plug-in installed), runs:
    the method passes every check of `check-method`, the objective scores the subspace task's data per
    sample, and the task samples data, builds its objective and scores its metrics per sample."""
    package = tmp_path / "readme_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for path, code in python_blocks():
        assert not ELISION.search(code) and not re.search(r"^\s*# \.\.\.", code, re.M), f"{path}: an elided block"
        (package / Path(path).name).write_text(code, encoding="utf-8")
    env = _env(tmp_path, ROOT)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "check-method", "readme_demo.methods:TweedieGradient"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout + proc.stderr
    script = textwrap.dedent("""
        import torch
        from benchmark.tasks import make_task
        from readme_demo.objectives import LatentTarget
        from readme_demo.tasks import RingTask

        task = make_task("subspace")
        x = task.sample_data(16, torch.Generator().manual_seed(0))
        r = LatentTarget(task, target=1.5)(x)
        assert r.shape == (16,) and torch.isfinite(r).all() and (r <= 2.0).all(), r
        ring = RingTask(task_seed=0)
        x = ring.sample_data(16, torch.Generator().manual_seed(0))
        assert x.shape == (16, 2) and torch.allclose(x.norm(dim=-1), torch.ones(16))
        r = ring.objective("linear")(x)
        assert r.shape == (16,) and (r <= 1 + 1e-6).all()
        m = ring.sample_metrics(x)["radius_error"]
        assert m.shape == (16,) and (m < 1e-6).all()
        print("ran")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr


def entry_points() -> dict[str, tuple[str, str]]:
    """name -> (module file, class) of the TOML blocks' entry points."""
    out = {}
    for block in blocks("toml"):
        for group, names in tomllib.loads(block)["project"]["entry-points"].items():
            assert group.startswith("guidebench.")
            for name, value in names.items():
                module, _, cls = value.partition(":")
                out[name] = (module.replace(".", "/") + ".py", cls)
    return out


def test_toml_blocks_are_in_the_plugin_pyproject():
    pyproject = (FIXTURE / "pyproject.toml").read_text(encoding="utf-8")
    for block in blocks("toml"):
        assert block.strip() in pyproject, f"README TOML block not in the plug-in's pyproject.toml:\n{block}"
    shown = {(path, cls) for path, code in python_blocks() for cls in re.findall(r"^class (\w+)", code, re.M)}
    registered = set(entry_points().values())
    assert registered == shown, (registered, shown)       # each class shown has its entry point, and back
    for path, _ in registered:
        assert (FIXTURE / path).is_file()


def yaml_files(tmp: Path) -> list[Path]:
    out = []
    for i, block in enumerate(blocks("yaml")):
        path = tmp / f"readme_{i}.yaml"
        path.write_text(block, encoding="utf-8")
        out.append(path)
    return out


def test_yaml_blocks_pass_check_config(plugin_site, tmp_path):  # noqa: F811
    """With the plug-in installed, in a folder without the images task's data and with an empty Hugging Face
    cache, offline: every config block of the section passes check-config."""
    files = yaml_files(tmp_path)
    for path in files:
        for exp in yaml.safe_load(path.read_text())["experiments"].values():
            folder = (exp.get("task_params") or {}).get("folder")
            assert folder is None or not (tmp_path / folder).exists()
    env = _env(plugin_site, ROOT)
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "benchmark", "check-config", *map(str, files)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for path in files:
        assert re.search(rf"^{re.escape(str(path))}: ok, [1-9]\d* cells$", proc.stderr, re.M), proc.stderr
    assert not (tmp_path / "hf").exists() and not (tmp_path / "data").exists()   # nothing fetched or made


def test_yaml_blocks_naming_plugins_are_refused_without_them(tmp_path):
    """This process does not see the plug-in (test_plugins installs it for subprocesses only): the configs
    naming its components are refused, so passing check-config above is the plug-in's doing."""
    from benchmark.config import ConfigError
    from benchmark.sweep import check_config_file

    plugin_names = {name for name in entry_points()}
    refused = 0
    for path in yaml_files(tmp_path):
        names = plugin_names & set(re.findall(r"\w+", path.read_text()))
        if not names:
            continue
        with pytest.raises(ConfigError, match="|".join(sorted(names))):
            check_config_file(str(path))
        refused += 1
    assert refused == 2


def test_the_model_block_is_the_preset():
    """The model's config block is config/ddpm_cifar10.yaml's model and (a part of) its experiment."""
    [block] = [yaml.safe_load(b) for b in blocks("yaml") if "denoisers" in yaml.safe_load(b)]
    preset = yaml.safe_load((ROOT / "config/ddpm_cifar10.yaml").read_text())
    assert block["denoisers"] == preset["denoisers"]
    assert [d["loader"] for d in block["denoisers"].values()] == ["diffusers"]
    [(name, exp)] = block["experiments"].items()
    full = preset["experiments"][name]
    assert {k: v for k, v in exp.items() if k != "methods"} == {k: full[k] for k in exp if k != "methods"}
    assert exp["task"] == "images" and "folder" in exp["task_params"]
    assert exp["methods"].items() <= full["methods"].items()
    assert "hf download google/ddpm-cifar10-32" in section() and "pip install -e '.[diffusers]'" in section()


def help_text(capsys, *args) -> str:
    """`python -m benchmark [ARGS] --help` (in this process: the same parser); an unknown subcommand fails."""
    from benchmark.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    out = capsys.readouterr()
    assert exit_.value.code == 0, f"`python -m benchmark {' '.join(args)} --help` failed: {out.err}"
    return out.out


def commands() -> list[str]:
    """The command lines of the section's bash blocks (continuation lines joined, comments dropped)."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                out.append(line)
    return out


def test_commands_are_real_subcommands(capsys):
    top = help_text(capsys)
    named = set(re.findall(r"python -m benchmark ([\w-]+)", section()))
    assert {"list", "check-method", "check-config", "pretrain", "run"} <= named
    listed = {sub for sub in named if re.search(rf"(?<![\w-]){re.escape(sub)}(?![\w-])", top)}
    assert listed == named, f"not subcommands of `python -m benchmark --help`: {sorted(named - listed)}"
    for sub in named:
        help_text(capsys, sub)                            # argparse refuses a subcommand that does not exist
    checked = 0
    for line in commands():
        m = re.match(r"python -m benchmark ([\w-]+)(.*)$", line)
        if not m:
            continue
        sub, rest = m.groups()
        options = help_text(capsys, sub)
        for flag in re.findall(r"(?<!\S)(--[\w-]+)", rest):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", options), \
                f"`python -m benchmark {sub}` has no option {flag} (README: {line})"
        checked += 1
    assert checked >= 7


def test_named_repository_paths_exist():
    text = section()
    paths = set(re.findall(r"(?<![\w/.-])((?:config|tests|benchmark|workflow)/[\w./-]*\w)", text))
    assert {"config/ddpm_cifar10.yaml", "tests/fixtures/guidebench_demo_plugin"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"
