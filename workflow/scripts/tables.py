"""Text tables for closing notes and READMEs, from an aggregated results file.

    python workflow/scripts/tables.py best RESULTS.parquet [FIDELITY]
        per panel, each method at its best strength (highest mean final reward): reward with its
        95 % t-interval, the fidelity metric (default r_off), denoiser forwards / VJPs per sample
    python workflow/scripts/tables.py metrics RESULTS.parquet OBJECTIVE METRIC [METRIC ...]
        per (method, strength) of OBJECTIVE: each metric's final-round mean ± 95 % t-interval over seeds
    python workflow/scripts/tables.py verdict RESULTS.parquet SELECTED_DIR
        the report's verdict per panel (evaluation seeds, gated, paired Δ to the best with its bootstrap
        CI, compute per sample, optimism) and the across-panels summary (verdict.SUMMARY_RULE)
"""

import sys

import numpy as np

from benchmark.report.aggregate import cost_table, leaderboard, load_results, mean_ci, panels


def best(path: str, fidelity: str = "r_off") -> None:
    for key, rows in panels(load_results(path)):
        board = leaderboard(rows, fidelity)
        costs = cost_table(rows).set_index(["method", "strength"])
        print(f"\n{key}")
        print(f"{'method':24} {'strength':>8} {'reward (95% CI)':>20} {fidelity:>9} {'fwd/sample':>10} {'VJP/sample':>10}")
        for _, r in board[board["best"]].sort_values("method").iterrows():
            c = costs.loc[(r.method, r.strength)]
            print(f"{r.method:24} {r.strength:8g} {r.reward:9.3g} ± {r.reward_ci:7.2g} {r.get('fidelity', np.nan):9.2g} "
                  f"{c.denoiser_forwards:10.0f} {c.denoiser_vjps:10.0f}")


def metrics(path: str, objective: str, names: list[str]) -> None:
    df = load_results(path)
    last = df[(df["objective"] == objective) & (df["status"] == "ok")]
    last = last[last["round"] == last.groupby("run_id")["round"].transform("max")]
    piv = last.pivot_table(index=["method", "strength", "seed"], columns="metric", values="value").reset_index()
    print(f"{'method':40}" + "".join(f"{m:>24}" for m in names))
    for (m, s), g in piv.groupby(["method", "strength"]):
        cells = [mean_ci(g[n].values) if n in g else (np.nan, np.nan, 0) for n in names]
        print(f"{m + f' s={s:g}':40}" + "".join(f"{f'{v:.3g} ± {ci:.2g} (n={k})':>24}" for v, ci, k in cells))


def verdict(path: str, selected: str) -> None:
    from benchmark.report import verdict as vd

    df = load_results(path)
    header, selections = vd.read_selection(selected)
    panels_ = vd.verdict(df, header, selections)
    for p in panels_:
        key = p["panel"]
        print(f"\n{key['task']} / {key['objective']} / {key['denoiser']}  (gate: "
              + ", ".join(f"{g['metric']} tol {g['tolerance']:g}{' rel' if g['relative'] else ''}" for g in p["gate"])
              + ")")
        print(f"{'verdict':7} {'method':8} {'setting':28} {'reward (95% CI)':>20} {'delta to best [CI]':>26} "
              f"{'compute':>8} {'optimism':>9}")
        for r in p["methods"]:
            delta = "" if r["verdict"] == "best" else f"{r['diff']:.3g} [{r['diff_lo']:.3g}, {r['diff_hi']:.3g}]"
            ci = r["reward_ci"] if r["reward_ci"] == r["reward_ci"] else float("nan")
            print(f"{r['verdict']:7} {r['method']:8} {(r['label'] + ' s=' + format(r['strength'], 'g'))[:28]:28} "
                  f"{r['reward']:9.4g} ± {ci:7.2g} {delta:>26} {r['compute']:8.0f} {r['optimism']:9.3g}")
        for e in p["excluded"]:
            print(f"  excluded: {e['label']} s={e['strength']:g}: {e['reason']}")
        if p["budgets"]:
            print("  at equal compute (held-out reward of the best admissible variant within the budget):")
            print("  " + f"{'method':8}" + "".join(f"{f'<= {b:g}/sample':>28}" for b in p["budgets"]))
            for e in p["equal_compute"]:
                cells = [f"{c['reward']:.4g} ({c['compute']:.0f})" if c else "-" for c in e["budgets"]]
                print("  " + f"{e['method']:8}" + "".join(f"{c:>28}" for c in cells))
    s = vd.summary(panels_, float(header.get("level", 0.95)), int(header.get("bootstrap", 2000)))
    print(f"\nacross panels. {s['rule']}")
    print("  method   win share; rank with ties by CI; mean rank [95% bootstrap CI]; panels ran (no admissible setting)")
    for r in s["ranks"]:
        print(f"  {r['method']:8} {r['win_share']:5.3f}; {r['tie_rank']:5.2f}; {r['mean_rank']:5.2f} "
              f"[{r['lo']:.2f}, {r['hi']:.2f}]; {r['panels']} ({r['failed']}){' †' if r['caveat'] else ''}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "best":
        best(*sys.argv[2:4])
    elif len(sys.argv) == 4 and sys.argv[1] == "verdict":
        verdict(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "metrics":
        metrics(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
