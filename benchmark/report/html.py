"""Rendering the report template (jinja2, auto-escaped) and writing the page atomically."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import jinja2

from benchmark.results import atomic_path

TEMPLATE = "report.html.j2"
MISSING = "—"


def fmt_num(x, digits: int = 4) -> str:
    """A table cell: integers as they are, floats to `digits` significant digits, NaN/None as a dash."""
    if x is None or (isinstance(x, str) and not x):
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if isinstance(x, numbers.Real):
        x = float(x)
        if not math.isfinite(x):
            return MISSING
        return f"{x:.{digits}g}"
    return str(x)


def fmt_ci(mean, half, digits: int = 4) -> str:
    """'mean ± half', or 'mean (CI n/a)' when there is one seed, or a dash."""
    if mean is None or not math.isfinite(float(mean)):
        return MISSING
    if half is None or not math.isfinite(float(half)):
        return f"{fmt_num(mean, digits)} (CI n/a)"
    return f"{fmt_num(mean, digits)} ± {fmt_num(half, 2)}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("benchmark.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    return env


def render(context: dict) -> str:
    """The report page for `context` (see build.build_context for its keys)."""
    return _environment().get_template(TEMPLATE).render(**context)


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write the page atomically (see benchmark.results.atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
