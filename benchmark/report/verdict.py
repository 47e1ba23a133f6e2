"""The verdict: which method, at which setting, for this problem, at this compute (DESIGN 3b).

The protocol, in the order it is applied:
1. Validity before reward (the gate). A setting is *admissible* on a set of seeds when every cell
   finished ok and each gate metric of its task (config `protocol.gate`) is no worse than the
   unguided samples' (method `none`, same panel, same seeds, same number of steps where there is
   such a run) by more than the tolerance: value <= ref + tol (or ref * (1 + tol) when relative;
   mirrored for a metric where higher is better: the direction the task declares for the metric,
   aggregate.metric_direction; the gate's `higher_is_better` only for a metric declared with a target
   value or by nobody, see gate_direction).
2. Tune, then evaluate. Per selection group (a method variant in one panel: benchmark.sweep's
   `CellArgs.group`) the admissible setting of highest mean final reward on the *tuning* seeds is
   chosen (`gated_max_reward`); `select` writes the choice, every candidate and every exclusion with
   its reason to one human-readable YAML file per panel. The chosen settings then run on the
   *evaluation* seeds, and every headline number comes from those runs only. In-sample optimism
   = tuning-seed reward - evaluation-seed reward of the chosen setting.
3. Compute on the axis: compute per output sample = (denoiser forwards + VJPs) of the guided rounds
   (round >= 1) / samples. `at_equal_compute`: per budget, each method's group of highest tuning
   reward among those within the budget, scored on the evaluation seeds.
4. Paired statistics. Every method of a panel samples from the same per-chain noise streams
   (seed, round, chain), so differences are paired chain by chain where the cells record per-chain
   rewards (`per_sample`), else seed by seed; the CI is a percentile bootstrap of the mean paired
   difference (scipy.stats.bootstrap). Differences whose CI contains 0 are ties, in ranks and
   fronts alike.
"""

from __future__ import annotations

import json

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmark.paths import job_key
from benchmark.report import aggregate as agg
from benchmark.report.paired import bootstrap_ci, paired_units  # noqa: F401  (part of this module's interface)
from benchmark.report.summary import SUMMARY_RULE, panel_standing, summary  # noqa: F401  (idem)

SELECTIONS = ("gated_max_reward",)
PROTOCOL_FILE = "protocol.yaml"
COMPUTE = "compute"          # denoiser forwards + VJPs per output sample
UNGUIDED = agg.UNGUIDED


# ---------------------------------------------------------------------------------------------
# per cell

def job_of(cell: str) -> str:
    """A cell id (path less suffix) less its `_seed<seed>`: the job, the setting (benchmark.paths.job_key)."""
    return job_key(cell, strict=False)


def cell_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per cell of labelled results (aggregate.label_results): identity, `method_name`,
    `cell`/`job` (when the results carry the `cell` column), status, final-round reward and
    `metrics`, per-chain final rewards (`chains`, or None), compute and wall seconds per output
    sample over the guided rounds."""
    c = agg.cells(df)
    if "cell" in df.columns:
        c = c.merge(df.groupby("run_id")["cell"].first().rename("cell"), left_on="run_id", right_index=True)
        c["job"] = c["cell"].map(job_of)
    final = df.merge(c[["run_id", "last_round"]], left_on=["run_id", "round"], right_on=["run_id", "last_round"])
    ok = c.set_index("run_id")["status"].eq("ok")
    for m in [agg.REWARD_METRIC, *metrics]:
        v = final[final["metric"] == m].groupby("run_id")["value"].first()
        c[m if m != agg.REWARD_METRIC else "reward"] = c["run_id"].map(v.where(ok.reindex(v.index, fill_value=False)))
    if "per_sample" in df.columns:
        ch = final[final["metric"] == agg.REWARD_METRIC].groupby("run_id")["per_sample"].first()
        c["chains"] = c["run_id"].map(ch)
    else:
        c["chains"] = None
    guided = df[df["round"] >= 1].drop_duplicates(["run_id", "round"])
    per = guided.groupby("run_id").agg(fwd=("cost_denoiser_forwards", "sum"), vjp=("cost_denoiser_vjps", "sum"),
                                       wall=("wall_seconds", "sum"), samples=("samples", "first"))
    c[COMPUTE] = c["run_id"].map((per["fwd"] + per["vjp"]) / per["samples"])
    c["wall_per_sample"] = c["run_id"].map(per["wall"] / per["samples"])
    c["steps"] = c["run_id"].map(df.groupby("run_id")["steps"].first())
    c["eta"] = c["run_id"].map(df.groupby("run_id")["eta"].first())
    c["cfg"] = (c["run_id"].map(df.groupby("run_id")["checkpoint_info"].first().map(_cfg_of))
                if "checkpoint_info" in df.columns else None)
    c["method_name"] = c["run_id"].map(df.groupby("run_id")["method_name"].first())
    return c


def _cfg_of(info) -> float | None:
    """The classifier-free guidance scale a cell's denoiser ran with (its loader's record: the effective value, so
    a null sampling.cfg reads as the pipeline's default), None for a denoiser without one."""
    try:
        cfg = json.loads(info).get("denoiser", {}).get("cfg") if isinstance(info, str) and info else None
    except (ValueError, AttributeError):
        return None
    return float(cfg) if isinstance(cfg, (int, float)) and not isinstance(cfg, bool) else None


def grid_key(cell) -> tuple:
    """(steps, eta, cfg) of a cell (a row of cell_table): the sampling grid its unguided reference must share."""
    eta, cfg = cell.get("eta"), cell.get("cfg")
    return (int(cell["steps"]) if pd.notna(cell["steps"]) else None,
            float(eta) if eta is not None and pd.notna(eta) else None,
            float(cfg) if cfg is not None and pd.notna(cfg) else None)


# ---------------------------------------------------------------------------------------------
# the gate

def gate_direction(rule: dict, task: str, objective: str) -> bool:
    """Whether the gate `rule` (a config entry) treats its metric as higher-is-better: as the task
    declares the metric (aggregate.metric_direction). A metric declared with a target value or with
    none follows the rule's `higher_is_better` (absent: lower is better).
    ValueError when the rule's `higher_is_better` contradicts the declaration, or a target metric's
    rule does not say which way to gate it."""
    metric, given = rule["metric"], rule.get("higher_is_better")
    direction = agg.metric_direction(metric, task, objective)
    where = f"protocol.gate.{task}: metric {metric!r}"
    if direction in (agg.HIGHER, agg.LOWER):
        if given is not None and bool(given) != (direction == agg.HIGHER):
            raise ValueError(f"{where} has higher_is_better: {str(bool(given)).lower()}, but task {task!r} declares "
                             f"it {direction!r} is better (Task.metric_directions); drop higher_is_better or make it "
                             f"{str(direction == agg.HIGHER).lower()}")
        return direction == agg.HIGHER
    if direction is not None and given is None:
        raise ValueError(f"{where} is declared best near {direction:g}, but a gate compares one way: "
                         "set higher_is_better")
    return bool(given)


def gates_for(protocol: dict, task: str, objective: str, present: set[str]) -> list[dict]:
    """The gate rules of a panel: the task's, restricted to its objective and to measured metrics,
    each with the direction of its metric (gate_direction)."""
    out = []
    for g in (protocol.get("gate") or {}).get(task, []):
        if g.get("objectives") and objective.split()[0] not in g["objectives"]:
            continue
        if g["metric"] in present:
            out.append({"metric": g["metric"], "tolerance": float(g["tolerance"]),
                        "relative": bool(g.get("relative", False)),
                        "higher_is_better": gate_direction(g, task, objective)})
    return out


def threshold(rule: dict, ref: float) -> float:
    """The worst admissible value of a gate metric, given the unguided reference value."""
    tol = rule["tolerance"] * (abs(ref) if rule["relative"] else 1.0)
    return ref - tol if rule["higher_is_better"] else ref + tol


def references(panel_cells: pd.DataFrame, rules: list[dict]) -> dict[tuple, dict[str, float]]:
    """{(steps, eta, cfg): {metric: mean over the unguided cells on that sampling grid (grid_key)}}, plus for each
    (eta, cfg) the key (None, eta, cfg): its unguided runs with the most steps (the reference where a step count has
    no unguided run). Runs of another eta or guidance scale are never a cell's reference: an experiment's DDIM eta
    and classifier-free guidance scale change the unguided samples themselves."""
    none = panel_cells[(panel_cells["method_name"] == UNGUIDED) & (panel_cells["status"] == "ok")]
    out: dict[tuple, dict[str, float]] = {}
    keys = none.apply(grid_key, axis=1) if len(none) else pd.Series([], dtype=object)
    for key in sorted(set(keys), key=lambda k: tuple((v is None, v or 0) for v in k)):
        rows = none[[k == key for k in keys]]          # tuples compared as values, never element-wise
        out[key] = ({r["metric"]: float(rows[r["metric"]].mean()) for r in rules}
                    | {"reward": float(rows["reward"].mean())})
        out[(None, *key[1:])] = out[key]          # sorted by steps: the most steps of this (eta, cfg) last
    return out


def _grid_name(key: tuple) -> str:
    """'10' (steps only, the usual case), else e.g. '10 eta=0 cfg=7.5': a reference's name in the selection file."""
    steps, eta, cfg = key
    return f"{steps}" + ("" if eta in (None, 1.0) else f" eta={eta:g}") + ("" if cfg is None else f" cfg={cfg:g}")


def admissibility(setting: pd.DataFrame, rules: list[dict], refs: dict) -> tuple[bool, str]:
    """(admissible, reason) of one setting's cells on one set of seeds."""
    bad = setting[setting["status"] != "ok"]
    if len(bad):
        return False, f"{bad['status'].iloc[0]} on seed {int(bad['seed'].iloc[0])}"
    if not np.isfinite(setting["reward"].to_numpy(dtype=float)).all():
        return False, "no finite reward"
    key = grid_key(setting.iloc[0])
    ref = refs.get(key, refs.get((None, *key[1:])))
    if ref is None:
        return (True, "no unguided reference on its sampling grid (eta, cfg): not gated") if rules else (True, "")
    reasons = []
    for r in rules:
        value, limit = float(setting[r["metric"]].mean()), threshold(r, ref[r["metric"]])
        if not math.isfinite(value):
            reasons.append(f"{r['metric']} not finite")
        elif (value < limit) if r["higher_is_better"] else (value > limit):
            reasons.append(f"{r['metric']} {value:.3g} {'<' if r['higher_is_better'] else '>'} {limit:.3g} "
                           f"(unguided {ref[r['metric']]:.3g} {'-' if r['higher_is_better'] else '+'} "
                           f"{r['tolerance']:g}{' x unguided' if r['relative'] else ''})")
    return (not reasons), "; ".join(reasons)


# ---------------------------------------------------------------------------------------------
# selection (the workflow's `select` checkpoint)

def _gate_metrics(protocol: dict) -> list[str]:
    return sorted({g["metric"] for gates in (protocol.get("gate") or {}).values() for g in gates})


def select(df: pd.DataFrame, groups: dict[str, str], protocol: dict) -> list[dict]:
    """Per panel: the chosen setting of every selection group on the tuning results `df` (with the
    `cell` column); `groups` maps each job to its group. Returns one dict per panel (see write_selection)."""
    if protocol.get("selection", "gated_max_reward") not in SELECTIONS:
        raise ValueError(f"protocol.selection: unknown {protocol['selection']!r}; allowed: {list(SELECTIONS)}")
    gate_metrics = _gate_metrics(protocol)
    panels = []
    for key, rows in agg.panels(df):
        present = set(rows["metric"].unique())
        rules = gates_for(protocol, str(key[0]), str(key[1]), present)
        c = cell_table(rows, [m for m in gate_metrics if m in present])
        c["group"] = c["job"].map(groups)
        unknown = sorted(c.loc[c["group"].isna(), "job"].unique())
        if unknown:
            raise ValueError(f"results of jobs this config does not have: {unknown[:3]}")
        refs = references(c, rules)
        out_groups = []
        for group, g in c.groupby("group", sort=True):
            candidates = []
            for job, s in g.groupby("job", sort=True):
                ok, why = admissibility(s, rules, refs)
                candidates.append({
                    "job": job, "label": str(s["method"].iloc[0]), "strength": float(s["strength"].iloc[0]),
                    "reward": _float(s["reward"].mean()), "seeds": sorted(int(x) for x in s["seed"]),
                    "compute": _float(s[COMPUTE].mean()),
                    **{r["metric"]: _float(s[r["metric"]].mean()) for r in rules},
                    "admissible": ok, **({"reason": why} if why else {})})
            admissible = [x for x in candidates if x["admissible"]]
            chosen = max(admissible, key=lambda x: (x["reward"], -x["strength"])) if admissible else None
            out_groups.append({"group": group, "method": str(g["method_name"].iloc[0]),
                               "chosen": chosen["job"] if chosen else None,
                               "tuning_reward": chosen["reward"] if chosen else None,
                               "candidates": candidates})
        panels.append({"panel": {"task": key[0], "objective": key[1], "denoiser": key[2]},
                       "gate": rules, "unguided": {_grid_name(k): v for k, v in refs.items() if k[0] is not None},
                       "groups": out_groups})
    return panels


def _float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _slug(panel: dict) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", "_".join(str(panel[k]) for k in ("task", "objective", "denoiser"))).strip("-")


def write_selection(panels: list[dict], protocol: dict, seeds: dict, folder: str | Path) -> list[str]:
    """One YAML file per panel plus protocol.yaml in `folder`; returns the chosen jobs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = {"selection": protocol.get("selection", "gated_max_reward"), "budget": protocol.get("budget"),
              "seeds": {"tuning": list(seeds["tuning"]), "evaluation": list(seeds["evaluation"])},
              "level": protocol.get("level", 0.95), "bootstrap": protocol.get("bootstrap", 2000),
              "compute_budgets": list(protocol.get("compute_budgets") or []), "gate": protocol.get("gate") or {}}
    (folder / PROTOCOL_FILE).write_text(
        "# The comparison protocol of this run (written by the select step).\n" + yaml.safe_dump(header, sort_keys=False))
    chosen = []
    for p in panels:
        text = (f"# {p['panel']['task']} / {p['panel']['objective']} / {p['panel']['denoiser']}: the setting chosen per "
                f"method variant on tuning seeds {header['seeds']['tuning']} by {header['selection']} (admissible "
                "settings only, then highest mean final reward).\n"
                "# `chosen` is a job (a cell id less its seed); it runs on the evaluation seeds.\n")
        (folder / f"{_slug(p['panel'])}.yaml").write_text(text + yaml.safe_dump(p, sort_keys=False))
        chosen += [g["chosen"] for g in p["groups"] if g["chosen"]]
    return chosen


def read_selection(folder: str | Path) -> tuple[dict, list[dict]]:
    """(protocol header, [panel dicts]) as written by write_selection."""
    folder = Path(folder)
    path = folder / PROTOCOL_FILE
    if not path.exists():
        raise ValueError(f"{folder} has no {PROTOCOL_FILE}: not a selection folder (made by the workflow's select step)")
    header = yaml.safe_load(path.read_text())
    panels = [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml")) if p.name != PROTOCOL_FILE]
    return header, panels


def chosen_jobs(folder: str | Path) -> list[str]:
    return [g["chosen"] for p in read_selection(folder)[1] for g in p["groups"] if g["chosen"]]


def reuse_selection(source: str | Path, seeds: dict, folder: str | Path) -> list[str]:
    """A checked-in selection folder as this run's selection (`protocol.reuse`): the panels' files as
    they are, protocol.yaml with this run's evaluation seeds (the tuning seeds stay those the choice was
    made on, so the evaluation seeds must not be among them). Returns the chosen jobs."""
    import shutil

    header, _ = read_selection(source)
    tuned_on = set(header["seeds"]["tuning"])
    reused = sorted(tuned_on & set(seeds["evaluation"]))
    if reused:
        raise ValueError(f"protocol.reuse: {source} chose its settings on seeds {sorted(tuned_on)}; evaluation seeds "
                         f"{reused} were among them: evaluate on other seeds")
    folder = Path(folder)
    shutil.copytree(source, folder, dirs_exist_ok=True)
    header["seeds"]["evaluation"] = list(seeds["evaluation"])
    header["reused_from"] = str(source)
    (folder / PROTOCOL_FILE).write_text("# The comparison protocol of this run: the settings reused from "
                                        f"{source}.\n" + yaml.safe_dump(header, sort_keys=False))
    return chosen_jobs(folder)


def read_cells(paths: list[str], cells_root: str | Path) -> pd.DataFrame:
    """Cell files as one DataFrame with their cell ids (`cell`), every file checked first
    (benchmark.results.read_cells_checked: any bad one raises, listing all of them)."""
    from benchmark.results import read_cells_checked

    if not paths:
        raise ValueError("no cell files to read")
    tables = read_cells_checked(paths, root=cells_root)
    return pd.concat([t.to_pandas() for t in tables.values()], ignore_index=True)


def select_to_folder(paths: list[str], cells_root: str | Path, groups: dict[str, str], config: dict,
                     folder: str | Path) -> list[str]:
    """The workflow's select step: tuning cell files -> the selection folder; returns the chosen jobs."""
    df = agg.label_results(read_cells(paths, cells_root))
    protocol = config.get("protocol") or {}
    panels = select(df, groups, protocol)
    return write_selection(panels, protocol, config["seeds"], folder)


# ---------------------------------------------------------------------------------------------
# the verdict (the report)

def verdict(df: pd.DataFrame, header: dict, selections: list[dict]) -> list[dict]:
    """Per panel of the selection: the held-out table of every chosen setting, the method-level
    verdict with paired differences to the best, and the at-equal-compute table."""
    level, resamples = float(header.get("level", 0.95)), int(header.get("bootstrap", 2000))
    eval_seeds = set(header["seeds"]["evaluation"])
    budgets = [float(b) for b in header.get("compute_budgets") or []]
    extra = agg.panel_metrics(df)      # every panel's declared (and undeclared) metrics besides the reward
    all_cells = cell_table(df, sorted(set(extra) | set(_gate_metrics(header))
                                      & set(df["metric"].unique())))
    out = []
    for sel in selections:
        p = sel["panel"]
        held = all_cells[(all_cells["task"] == p["task"]) & (all_cells["objective"] == p["objective"])
                         & (all_cells["denoiser"] == p["denoiser"]) & all_cells["seed"].isin(eval_seeds)]
        rules = sel.get("gate") or []
        refs = references(held, rules)
        rows, excluded = [], []
        for g in sel["groups"]:
            if not g["chosen"]:
                excluded += [{"group": g["group"], "label": c["label"], "strength": c["strength"],
                              "reason": c.get("reason", "")} for c in g["candidates"]]
                continue
            excluded += [{"group": g["group"], "label": c["label"], "strength": c["strength"], "reason": c["reason"]}
                         for c in g["candidates"] if not c["admissible"]]
            s = held[held["job"] == g["chosen"]]
            if s.empty:
                rows.append({"group": g["group"], "method": g["method"], "label": g["chosen"], "missing": True})
                continue
            ok, why = admissibility(s, rules, refs)
            mean, half, n = agg.mean_ci(s["reward"], level)
            row = {"group": g["group"], "method": g["method"], "label": str(s["method"].iloc[0]),
                   "strength": float(s["strength"].iloc[0]), "job": g["chosen"], "seeds": int(n),
                   "reward": mean, "reward_ci": half, "tuning_reward": g["tuning_reward"],
                   "optimism": (g["tuning_reward"] - mean) if g["tuning_reward"] is not None else math.nan,
                   COMPUTE: float(s[COMPUTE].mean()), "wall_per_sample": float(s["wall_per_sample"].mean()),
                   "admissible": ok, "reason": why, "cells": s}
            for m in extra:
                if m in s and s[m].notna().any():
                    row[m] = float(s[m].mean())
            if "eval_accuracy" in row and row["eval_accuracy"] > 0:
                row["cost_per_success"] = row[COMPUTE] / row["eval_accuracy"]
            rows.append(row)
        # the methods this panel ran: those with a group here, less those whose chosen settings have no
        # evaluation cells yet (not run, rather than failed)
        ran = sorted({g["method"] for g in sel["groups"] if not g["chosen"]}
                     | {r["method"] for r in rows if not r.get("missing")})
        rows = [r for r in rows if not r.get("missing")]
        methods = _method_verdict(rows, level, resamples)
        out.append({"panel": p, "gate": rules, "settings": rows, "methods": methods, "ran": ran, "excluded": excluded,
                    "equal_compute": _equal_compute(rows, budgets), "budgets": budgets})
    return out


def _best_per_method(rows: list[dict], within: float = math.inf) -> dict[str, dict]:
    """Per method: its admissible setting within the compute budget of highest TUNING reward."""
    best: dict[str, dict] = {}
    for r in rows:
        if not r["admissible"] or r["tuning_reward"] is None or not r[COMPUTE] <= within:
            continue
        if r["method"] not in best or r["tuning_reward"] > best[r["method"]]["tuning_reward"]:
            best[r["method"]] = r
    return best


def _method_verdict(rows: list[dict], level: float, resamples: int) -> list[dict]:
    """One row per method (its best admissible variant chosen on tuning seeds), sorted by held-out
    reward, with the paired difference to the best and its bootstrap CI; 'tie' when the CI holds 0."""
    best = sorted(_best_per_method(rows).values(), key=lambda r: -r["reward"])
    if not best:
        return []
    top = best[0]
    out = []
    for r in best:
        a, b, unit = paired_units(r["cells"], top["cells"])
        d = a - b
        lo, hi = bootstrap_ci(d, level, resamples)
        verdict = "best" if r is top else ("tie" if lo <= 0 <= hi else "worse")
        out.append({k: v for k, v in r.items() if k != "cells"} | {
            "diff": float(np.mean(d)) if len(d) else math.nan, "diff_lo": lo, "diff_hi": hi, "pairs": int(len(d)),
            "unit": unit, "verdict": verdict})
    return out


def _equal_compute(rows: list[dict], budgets: list[float]) -> list[dict]:
    """Per method and budget: the held-out reward of its best admissible setting within the budget."""
    methods = sorted({r["method"] for r in rows})
    table = []
    for m in methods:
        entry = {"method": m, "budgets": []}
        for b in budgets:
            r = _best_per_method([x for x in rows if x["method"] == m], within=b).get(m)
            entry["budgets"].append(None if r is None else {"label": r["label"], "strength": r["strength"],
                                                           "reward": r["reward"], "reward_ci": r["reward_ci"],
                                                           COMPUTE: r[COMPUTE]})
        table.append(entry)
    return table


# ---------------------------------------------------------------------------------------------
# fronts

def hypervolume(points: pd.DataFrame, f_ref: float, r_ref: float) -> float:
    """Area of the (fidelity error, reward) region dominated by `points` and dominating the
    reference (f_ref = the gate's worst admissible fidelity, r_ref = the unguided reward): the
    whole reward-versus-fidelity trade-off of a method's strengths in one number (0: no point
    improves the reward within the admissible fidelity)."""
    pts = points[["fidelity", "reward"]].to_numpy(dtype=float)
    pts = pts[np.isfinite(pts).all(1) & (pts[:, 0] <= f_ref) & (pts[:, 1] > r_ref)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(pts[:, 0])]
    area, best = 0.0, r_ref
    for i, (f, r) in enumerate(pts):
        best = max(best, r)
        f_next = pts[i + 1, 0] if i + 1 < len(pts) else f_ref
        area += (f_next - f) * (best - r_ref)
    return float(area)


def ci_pareto(points: pd.DataFrame) -> pd.Series:
    """Pareto front that treats differences inside the CIs as ties: j dominates i only when j is
    better beyond the combined CI in one coordinate and not worse beyond it in the other.
    points: fidelity, fidelity_ci, reward, reward_ci (NaN CI: 0)."""
    f = points["fidelity"].to_numpy(float)
    r = points["reward"].to_numpy(float)
    fc = np.nan_to_num(points.get("fidelity_ci", pd.Series(0, index=points.index)).to_numpy(float))
    rc = np.nan_to_num(points.get("reward_ci", pd.Series(0, index=points.index)).to_numpy(float))
    ok = np.isfinite(f) & np.isfinite(r)
    front = np.zeros(len(points), dtype=bool)
    for i in np.flatnonzero(ok):
        tf, tr = np.hypot(fc, fc[i]), np.hypot(rc, rc[i])
        better = ((f < f[i] - tf) & (r >= r[i] - tr)) | ((r > r[i] + tr) & (f <= f[i] + tf))
        front[i] = not (ok & better).any()
    return pd.Series(front, index=points.index, name="pareto")


def chain_cis(df: pd.DataFrame, metrics: list[str], level: float) -> pd.DataFrame:
    """Per (method, strength): the t-interval half-width `<metric>_ci` of each metric's final per-chain
    values pooled over the ok cells (chains are the i.i.d. replicates: each has its own noise stream);
    NaN where the cells record no per-chain values."""
    c = agg.cells(df)
    ok = c[c["status"] == "ok"][["run_id", "method", "strength", "last_round"]]
    out = ok[["method", "strength"]].drop_duplicates().reset_index(drop=True)
    if "per_sample" not in df.columns:
        return out.assign(**{f"{m}_ci": math.nan for m in metrics})
    for m in metrics:
        rows = df[df["metric"] == m].merge(ok, left_on=["run_id", "round"], right_on=["run_id", "last_round"],
                                           suffixes=("_row", ""))
        cis = {}
        for key, g in rows.groupby(["method", "strength"]):
            values = [v for p in g["per_sample"] if p is not None for v in p]
            cis[key] = agg.mean_ci(values, level)[1] if values else math.nan
        out[f"{m}_ci"] = [cis.get((a, b), math.nan) for a, b in zip(out["method"], out["strength"])]
    return out
