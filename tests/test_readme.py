"""README.md and the reference pages beside the code (DOCS), checked against the real thing.

The section "Bring your own method / objective / model / task" (benchmark/README.md):

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
    text = (ROOT / "benchmark" / "README.md").read_text(encoding="utf-8")
    assert text.count(HEADING) == 1, f"benchmark/README.md has no (or more than one) section {HEADING!r}"
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


# --- every code block of README.md and the reference pages ----------------------------------------------------------------------
#
# Each fenced block of the DOCS is claimed by one checker below, and a block no checker claims fails
# test_every_block_is_checked: a new block needs a checker. Bash blocks: each command line is parsed by the real
# command-line interface (fast tier) and the ones that run in seconds are run as written (slow tier); Snakemake
# lines are dry-run with their options; pip lines name real extras and files; the set-up lines are .ci/run's.
# Python, TOML and YAML blocks live in the "Bring your own" section (the tests above). The layout block names
# real files.

README = ROOT / "README.md"
#: The newcomer's page and the reference pages beside the code it points to.
DOCS = ("README.md", "benchmark/README.md", "benchmark/methods/README.md", "benchmark/tasks/README.md",
        "benchmark/rewards/README.md", "benchmark/denoisers/README.md", "workflow/README.md", "config/README.md")
CHEAP = {"run", "check-config", "list", "schema"}     # subcommands run as written (slow tier); check-method's
                                                       # line needs the demo plug-in: test_python_blocks_run_as_written


def readme_blocks() -> list[tuple[str, str, str]]:
    """(file:line, language, text) of every fenced block of the DOCS."""
    out = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        out += [(f"{doc}:{text[:m.start()].count(chr(10)) + 1}", m.group(1), m.group(2))
                for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]
    return out


def test_the_readme_points_to_every_reference_page():
    text = README.read_text(encoding="utf-8")
    assert all(f"]({doc})" in text for doc in DOCS[1:]), [d for d in DOCS[1:] if f"]({d})" not in text]


def readme_commands() -> list[tuple[str, str]]:
    """(file:line of the block, command) of every bash block's command lines (continuations joined, comments dropped)."""
    out = []
    for where, lang, block in readme_blocks():
        if lang == "bash":
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"(^|\s+)#.*$", "", line).strip()
                if line:
                    out.append((where, re.sub(r"\s+", " ", line)))
    return out


def kind(command: str) -> str:
    for prefix, name in (("python3 -m venv", "setup"), (". .venv/bin/activate && snakemake", "setup"),
                         ("python -m benchmark.denoisers.latent ", "embed"), ("python -m benchmark ", "cli"),
                         ("snakemake ", "snakemake"), ("pip install ", "pip"), ("export ", "export"),
                         ("hf download ", "hf")):
        if command.startswith(prefix):
            return name
    return "unknown"


def test_every_block_is_checked():
    byo = section()
    for where, lang, block in readme_blocks():
        if lang == "yaml" and where.startswith("config/README.md:"):
            continue     # test_config_readme_yaml_blocks_pass_check_config
        if lang in ("python", "toml", "yaml"):
            assert block in byo, f"{where}: a {lang} block outside the section {HEADING!r} has no checker"
        elif lang == "":
            assert block.startswith(("Snakefile, workflow/rules/", "error: my.yaml:")), f"{where}: an unchecked plain block"
        else:
            assert lang == "bash", f"{where}: a ```{lang} block has no checker"
    unknown = [f"{n}: {c}" for n, c in readme_commands() if kind(c) == "unknown"]
    assert not unknown, "command lines no checker reads:\n" + "\n".join(unknown)
    kinds = {kind(c) for _, c in readme_commands()}
    assert kinds == {"setup", "cli", "embed", "snakemake", "pip", "export", "hf"}, kinds


def test_the_two_setup_commands_are_those_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    setup = [c for w, c in readme_commands() if kind(c) == "setup" and w.startswith("README.md:")]
    assert len(setup) == 2 and all(c in ci or any(line.startswith(c) for line in ci) for c in setup), setup


def _cli_argv(command: str) -> list[str]:
    import shlex

    return shlex.split(command)[3:]


def test_every_benchmark_command_line_parses(monkeypatch):
    """`python -m benchmark SUB ...` as written goes through the real parser (a recorder stands in for each
    command's handler); an elided line (`...`) has each of its --flags checked against the subcommand's."""
    import benchmark.catalog as catalog
    import benchmark.cli as cli

    seen = []
    for name in [n for n in vars(cli) if n.startswith("cmd_")]:
        monkeypatch.setattr(cli, name, lambda args, _n=name: seen.append((_n, args)) or 0)
    for name in list(catalog.HANDLERS):
        monkeypatch.setitem(catalog.HANDLERS, name, lambda args, _n=name: seen.append((_n, args)) or 0)
    parsed = 0
    for where, command in readme_commands():
        if kind(command) != "cli":
            continue
        argv = _cli_argv(command)
        if "..." in argv:
            continue     # checked flag by flag in test_elided_command_lines_name_real_flags
        try:
            assert cli.main(argv) == 0, f"{where}: {command}"
        except SystemExit as exc:
            pytest.fail(f"{where}: the parser refuses `{command}` (exit {exc.code})")
        parsed += 1
    assert parsed >= 10 and len(seen) == parsed


def test_elided_command_lines_name_real_flags(capsys):
    elided = [(n, c) for n, c in readme_commands() if kind(c) == "cli" and "..." in _cli_argv(c)]
    assert elided
    for where, command in elided:
        sub = _cli_argv(command)[0]
        options = help_text(capsys, sub)
        for flag in re.findall(r"(?<!\S)(--[\w-]+)", command):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", options), \
                f"{where}: `python -m benchmark {sub}` has no option {flag}"


def test_the_embed_command_parses(monkeypatch):
    import benchmark.denoisers.latent as latent

    calls = []
    monkeypatch.setattr(latent, "resolve_pipeline", lambda p: calls.append(p) or (Path(p), None))
    monkeypatch.setattr(latent, "read_prompts", lambda p: ["a"])
    monkeypatch.setattr(latent, "encode_prompts", lambda *a: (_ for _ in ()).throw(RuntimeError("parsed")))
    lines = [c for _, c in readme_commands() if kind(c) == "embed"]
    assert lines
    for command in lines:
        with pytest.raises(RuntimeError, match="parsed"):
            latent._main(_cli_argv(command))
    assert len(calls) == len(lines)


def test_pip_lines_name_real_extras_and_files():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for where, command in readme_commands():
        if kind(command) != "pip":
            continue
        for group in re.findall(r"\.\[([\w,]+)\]", command):
            assert set(group.split(",")) <= extras, f"{where}: no such extra in {group!r}; have {extras}"
        for path in re.findall(r"(?:-r |(?<=\s))((?:requirements|tests)/[\w./-]+)", command):
            assert (ROOT / path).exists(), f"{where}: {path} does not exist"


def test_downloaded_models_are_the_presets_sources():
    """`hf download REPO` (the one step that needs the internet, done by the user beforehand) fetches what a
    preset's `source` names."""
    sources = {m for p in (ROOT / "config").glob("*.yaml")
               for m in re.findall(r"^\s*source: ([\w./-]+)\s*$", p.read_text(encoding="utf-8"), re.M)}
    repos = [c.split()[2] for _, c in readme_commands() if kind(c) == "hf"]
    assert repos and set(repos) <= sources, (repos, sources)


def test_exported_variables_are_read_by_the_profile():
    profile = (ROOT / "workflow/profiles/slurm/config.yaml").read_text(encoding="utf-8")
    names = [v for _, c in readme_commands() if kind(c) == "export" for v in re.findall(r"(\w+)=", c)]
    assert names and all(f"environ.get('{v}'" in profile for v in names), names


def test_config_readme_yaml_blocks_pass_check_config(tmp_path):
    """config/README.md's example configs pass check-config, with the cell count the text after each states."""
    text = (ROOT / "config/README.md").read_text(encoding="utf-8")
    found = list(re.finditer(r"^```yaml\n(.*?)^```$\n(.*?)(?=^```|\Z)", text, re.S | re.M))
    assert found
    for i, m in enumerate(found):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(m.group(1))
        proc = subprocess.run([sys.executable, "-m", "benchmark", "check-config", path.name], cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        stated = re.search(r"tuning cells \(.*?= (\d+)\)", m.group(2), re.S)
        out = (proc.stdout + proc.stderr).strip()
        assert stated and out == f"{path.name}: ok, {stated.group(1)} cells", (out, stated)


def test_every_registered_method_has_a_row_in_methods_as_published():
    from benchmark.methods import METHODS

    text = (ROOT / "benchmark/methods/README.md").read_text(encoding="utf-8")
    named = {n for row in re.findall(r"^\| ([^|]+) \|", text, re.M) for n in re.findall(r"`(\w+)`", row)}
    assert set(METHODS.builtins()) <= named, sorted(set(METHODS.builtins()) - named)


def test_the_error_message_shown_is_what_check_config_prints(tmp_path):
    """config/README.md's example error: config/smoke.yaml with naive's `strengths` misspelt, as check-config
    prints it (the file name and line are the example's)."""
    shown = [b.strip() for _, lang, b in readme_blocks() if lang == "" and b.startswith("error: my.yaml:")]
    assert len(shown) == 1
    lines = (ROOT / "config/smoke.yaml").read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(lines) if re.search(r"^\s+naive: \{strengths", line))
    lines[i] = lines[i].replace("strengths", "strenghts")
    (tmp_path / "my.yaml").write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "benchmark", "check-config", "my.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert re.sub(r"^error: my.yaml:\d+:", "", proc.stderr.strip()) == re.sub(r"^error: my.yaml:\d+:", "", shown[0])


def test_the_layout_block_names_real_files():
    block = next(b for _, lang, b in readme_blocks() if lang == "" and b.startswith("Snakefile"))
    missing = []
    for line in block.splitlines():
        head = line.split("#", 1)[0].strip()
        base = ""
        for name in filter(None, (p.strip() for p in head.split(","))):
            path = name if "/" in name or name == "Snakefile" else base + name   # `cell.py, cli.py`: siblings
            base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            if not (ROOT / path).exists():
                missing.append(path)
    assert not missing, f"the layout block names paths that do not exist: {missing}"


def test_every_repository_path_the_docs_name_exists():
    text = "\n".join((ROOT / doc).read_text(encoding="utf-8") for doc in DOCS)
    paths = set(re.findall(r"(?<![\w/.-])((?:config|tests|benchmark|workflow|requirements|\.ci)/[\w./-]*\w)(?![\w./<-])",
                           text))                                    # not a pattern such as tests/<path>/test_<name>.py
    assert "tests/test_readme.py" in paths or any(p.startswith("tests/") for p in paths)
    missing = sorted(p for p in paths if not (ROOT / p).exists() and "*" not in p)
    assert not missing, f"the DOCS name paths that do not exist: {missing}"


@pytest.mark.slow
def test_cheap_benchmark_commands_run_as_written(tmp_path, monkeypatch):
    """The command lines of the cheap subcommands (`run` of a few rounds, `check-config`, `list`, ...) run as
    written, in a scratch folder that sees the repository's config/ and tests/ (outputs land there)."""
    for name in ("config", "tests", "workflow"):
        (tmp_path / name).symlink_to(ROOT / name)
    text = (ROOT / "benchmark/README.md").read_text(encoding="utf-8")
    start = text[:text.index(HEADING)].count("\n") + 1
    byo = range(start, start + section().count("\n") + 1)      # its commands need the plug-in: the tests above
    ran = 0
    for where, command in readme_commands():
        doc, line = where.rsplit(":", 1)
        if doc == "benchmark/README.md" and int(line) in byo:
            continue
        argv = _cli_argv(command) if kind(command) == "cli" else []
        if not argv or argv[0] not in CHEAP or "..." in argv or argv[0] == "schema" and "--write" in argv:
            continue
        proc = subprocess.run([sys.executable, "-m", "benchmark", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{where}: `{command}` failed:\n{proc.stderr[-2000:]}"
        ran += 1
    assert ran >= 4


@pytest.mark.slow
def test_snakemake_lines_dry_run(tmp_path):
    """Each `snakemake ...` line builds its DAG (`-n`): its profile, config file and --config values are real."""
    lines = [(n, c) for n, c in readme_commands() if kind(c) == "snakemake"]
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for m in re.finditer(r"`(snakemake [^`]*--config [^`]*)`", text):     # the presets table's command cells
            lines.append((f"{doc}:{text[:m.start()].count(chr(10)) + 1}", m.group(1)))
    lines = list({c: (n, c) for n, c in lines}.values())
    assert len(lines) >= 4
    import shlex

    for where, command in lines:
        argv = shlex.split(command)[1:]
        proc = subprocess.run(["snakemake", *argv, "-n", "--quiet", "rules", "--directory", str(ROOT)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{where}: `{command} -n` failed:\n{proc.stderr[-3000:]}"
