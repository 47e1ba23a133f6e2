"""The tests mirror the package: every module benchmark/<path>/<name>.py has its home test file
tests/<path>/test_<name>.py, which imports that module, and every test file is either a module's home or one of
the few cross-cutting files named here (the workflow, SLURM and browser tests live apart, in tests/workflow/ and
tests/browser/)."""

import ast
import importlib
import importlib.util
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# Test files that are not one module's home, and why.
CROSS_CUTTING = {
    "test_conventions.py": "the sign and scale conventions shared by every gradient method",
    "test_contract.py": "the contract (benchmark/contract.py) run over the whole method registry",
    "test_imports.py": "the import graph: no cycles, the largest module",
    "test_layout.py": "this file",
    "test_plugins.py": "a plug-in package installed beside the suite (entry points of every kind)",
    "test_readme.py": "README.md's code blocks and named paths, against the real thing",
    "methods/test_published_steps.py": "one guided step of each published method against its paper's formula",
    "tasks/test_digits_cells.py": "digits cells end to end (task, networks, methods and metrics together)",
    "tasks/test_digits_slow.py": "the digits networks pre-trained to their targets (slow tier)",
}
APART = ("workflow", "browser")   # snakemake end to end, the SLURM profile, the report in headless Chromium
SUPPORT = {"conftest.py", "__init__.py", "mutations.py", "images_fixture.py", "latent_fixture.py", "reward_fixture.py",
           "report_page.py"}


def modules() -> list[Path]:
    """benchmark's modules, relative to benchmark/, less packages' __init__ and __main__."""
    return sorted(p.relative_to(ROOT / "benchmark") for p in (ROOT / "benchmark").rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def home(module: Path) -> Path:
    return TESTS / module.parent / f"test_{module.name}"


def imported(path: Path) -> set[str]:
    """Modules a file imports: `import a.b` gives a.b; `from a import b` gives a, and a.b where b is a module
    (not where b is a function or class that a's namespace re-exports under a module's name)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module.startswith("benchmark"):
                package = importlib.import_module(node.module)
                for alias in node.names:
                    attr = getattr(package, alias.name, None)
                    submodule = f"{node.module}.{alias.name}"
                    if isinstance(attr, types.ModuleType) or (
                            attr is None and importlib.util.find_spec(submodule) is not None):
                        names.add(submodule)
    return names


def test_every_module_has_a_home_test_file_that_imports_it():
    missing, unused = [], []
    for module in modules():
        dotted = "benchmark." + ".".join(module.with_suffix("").parts)
        test = home(module)
        if not test.exists():
            missing.append(f"benchmark/{module} -> {test.relative_to(ROOT)}")
        elif dotted not in imported(test):
            unused.append(f"{test.relative_to(ROOT)} does not import {dotted}")
    assert not missing, "modules without a home test file:\n" + "\n".join(missing)
    assert not unused, "\n".join(unused)


def test_every_test_file_is_a_home_or_named_cross_cutting():
    homes = {home(m) for m in modules()}
    stray = []
    for test in sorted(TESTS.rglob("test_*.py")):
        rel = test.relative_to(TESTS)
        if rel.parts[0] in APART or test in homes or rel.as_posix() in CROSS_CUTTING:
            continue
        stray.append(rel.as_posix())
    assert not stray, ("test files that are neither a module's home (tests/<path>/test_<module>.py) nor listed in "
                       "CROSS_CUTTING:\n" + "\n".join(stray))


def test_cross_cutting_entries_exist():
    assert all((TESTS / name).exists() for name in CROSS_CUTTING), [n for n in CROSS_CUTTING if not (TESTS / n).exists()]


def test_only_support_files_beside_the_tests():
    """Besides test files and folders, tests/ holds only the shared support modules and fixtures/."""
    others = sorted(p.name for p in TESTS.iterdir()
                    if p.is_file() and p.suffix == ".py" and not p.name.startswith("test_") and p.name not in SUPPORT)
    assert not others, others
