"""Which way each metric is better: read from the declarations, never kept here.

- the reward statistics and gaps that benchmark.metrics measures for every cell: its METRIC_DIRECTIONS
  (the reward is always to be maximised);
- a task's own metrics: its class's `metric_directions` (benchmark.tasks.TASKS: built-ins, plug-ins'
  entry points and `package.module:Class` import paths), then a plug-in objective's
  (benchmark.objectives.OBJECTIVES) for the metrics its task does not declare;
- the DERIVED_METRICS: lower is better when their source is declared "higher".

A direction is "higher", "lower", a target value (nearer is better), or None (declared, no better
direction). A metric nobody declares has no direction: the report shows it unranked (no arrow) and
never takes it for a fidelity metric. benchmark.report.aggregate re-exports every name.
"""

from __future__ import annotations

import math

import pandas as pd

HIGHER, LOWER = "higher", "lower"
# Errors the report derives from measured metrics declared "higher" (a similarity), so that the
# derived one can be a fidelity metric (lower is better): name -> (measured metric, transform of its values).
DERIVED_METRICS = {"1-ssim": ("ssim", lambda v: 1.0 - v)}


def check_direction(metric: str, direction, where: str) -> None:
    """ValueError unless `direction` is "higher", "lower" or a finite number (a target value)."""
    if direction in (HIGHER, LOWER) or (isinstance(direction, (int, float)) and not isinstance(direction, bool)
                                        and math.isfinite(direction)):
        return
    raise ValueError(f"{where}: metric {metric!r} has direction {direction!r}; expected 'higher', 'lower' or a "
                     "target value (a finite number: nearer is better)")


def _declared_by(owner, where: str) -> dict[str, str | float]:
    declared = getattr(owner, "metric_directions", None) or {}
    if not isinstance(declared, dict):
        raise ValueError(f"{where}: metric_directions must be a dict metric -> direction, got {declared!r}")
    for metric, direction in declared.items():
        check_direction(metric, direction, where)
    return dict(declared)


def declared_directions(task: str | None, objective: str | None = None) -> dict[str, str | float]:
    """The metrics `task` declares with their directions, in declaration order: the task class's
    `metric_directions`, then those of the plug-in objective `objective` (a panel label's first word)
    that the task does not declare. {} for a task the registry cannot resolve. ValueError for a
    declaration that is not a direction, or two declarations of one metric that disagree."""
    from benchmark.metrics import METRIC_DIRECTIONS as MEASURED
    from benchmark.tasks import TASKS

    cls = TASKS.get(task) if isinstance(task, str) else None
    if cls is None:
        return {}
    out = _declared_by(cls, f"task {task!r}")
    name = str(objective).split()[0] if isinstance(objective, str) and objective.strip() else None
    if name is not None and name not in getattr(cls, "objectives", ()):
        from benchmark.objectives import OBJECTIVES

        plugin = OBJECTIVES.get(name)
        for metric, direction in _declared_by(plugin, f"objective {name!r}").items():
            if out.setdefault(metric, direction) != direction:
                raise ValueError(f"metric {metric!r}: task {task!r} declares {out[metric]!r}, objective {name!r} "
                                 f"declares {direction!r}")
    for metric, direction in out.items():
        if metric in MEASURED and MEASURED[metric] != direction:
            raise ValueError(f"task {task!r} declares metric {metric!r} {direction!r}; benchmark.metrics measures "
                             f"it for every task as {MEASURED[metric]!r}")
    return out


def metric_direction(metric: str, task: str | None = None, objective: str | None = None) -> str | float | None:
    """Which way `metric` of a panel of (`task`, `objective`) is better: "higher", "lower", a target
    value, or None (declared without a direction, or declared by nobody; see the notes above)."""
    from benchmark.metrics import METRIC_DIRECTIONS as MEASURED

    if metric in MEASURED:
        return MEASURED[metric]
    declared = declared_directions(task, objective)
    if metric in DERIVED_METRICS:
        return LOWER if declared.get(DERIVED_METRICS[metric][0]) == HIGHER else None
    return declared.get(metric)


def _panel_ids(df: pd.DataFrame) -> list[tuple]:
    """The distinct (task, objective) of `df`, sorted (one for a panel)."""
    if df.empty:
        return []
    pairs = df[["task", "objective"]].drop_duplicates()
    return sorted(((t, o) for t, o in zip(pairs["task"], pairs["objective"])), key=lambda p: (str(p[0]), str(p[1])))


def panel_directions(df: pd.DataFrame) -> dict[str, str | float]:
    """The declared directions of the metrics of `df`'s task(s) and objective(s) (its panels' in order)."""
    out: dict[str, str | float] = {}
    for task, objective in _panel_ids(df):
        for metric, direction in declared_directions(task, objective).items():
            out.setdefault(metric, direction)
    return out


def fidelity_candidates(task: str | None, objective: str | None = None) -> list[str]:
    """The metrics that can be a fidelity metric (lower is better) of a panel of `task`, in the order
    they are tried: the task's declared metrics in declaration order, each declared "lower" as itself
    and each declared "higher" that the report derives an error from (DERIVED_METRICS) as that error,
    in its source's place. Metrics declared "higher" otherwise, with a target or with none are not."""
    derived = {source: name for name, (source, _) in DERIVED_METRICS.items()}
    out = []
    for metric, direction in declared_directions(task, objective).items():
        if direction == LOWER:
            out.append(metric)
        elif direction == HIGHER and metric in derived:
            out.append(derived[metric])
    return out


def report_fidelity_candidates(df: pd.DataFrame) -> list[str]:
    """The fidelity_candidates of every (task, objective) of `df` that `df` measures, tasks in the
    registry's order (built-ins, then plug-ins; others by name), each metric once: the report's note."""
    from benchmark.tasks import TASKS

    order = {name: i for i, name in enumerate(TASKS)}
    pairs = sorted(_panel_ids(df), key=lambda p: (order.get(p[0], len(order)), str(p[0]), str(p[1])))
    present = set(df["metric"].unique())
    return [m for m in dict.fromkeys(m for task, objective in pairs for m in fidelity_candidates(task, objective))
            if m in present]


def direction_arrow(direction) -> str:
    """↑ higher is better, ↓ lower is better, →t best near t, '' no direction."""
    if direction == HIGHER:
        return "↑"
    if direction == LOWER:
        return "↓"
    return "" if direction is None else f"→{direction:g}"


def direction_text(direction) -> str:
    if direction in (HIGHER, LOWER):
        return f"{direction} is better"
    return "no declared direction" if direction is None else f"best near {direction:g}"
