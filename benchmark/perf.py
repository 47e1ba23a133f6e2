"""`python -m benchmark perf`: wall time and counted network evaluations of one round per method,
against the time its cost formula predicts.

Not a test (timings vary by machine): a measurement to quote. One round = one batch of
`samples` chains through every step of the grid, timed as the median over `repeats` rounds after
one warm-up round, with the counted evaluations per sample and step.

The formula's time per step is built from separately timed primitives on the same batch:
    T_formula = f T_none + v T_vjp + g T_G
with f, v, g the counted denoiser forwards, denoiser VJPs and objective gradients per sample and
step (equal to each method's cost formula: tests/test_methods_contract.py), T_none the measured
unguided step (one forward plus the DDIM update and noise draw), T_vjp the extra time of a
forward that keeps its graph plus the backward through the denoiser, and T_G one objective
evaluation plus gradient. measured / formula > 1 is overhead the formula does not account for.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmark.cell import Cell, CellSpec

#: The strength each method is timed at (a mid-grid value of config/config.yaml).
DEFAULT_STRENGTHS = {"none": 0.0, "naive": 0.9, "gloss": 0.2, "dps": 1.0, "freedom": 0.3, "mpgd": 0.1,
                     "ugd": 3.0, "lgd": 0.3, "tfg": 0.1, "shen": 0.03}


def _median_time(fn, device: str, repeats: int = 30) -> float:
    fn()                                                      # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def primitives(cell: Cell, samples: int) -> dict[str, float]:
    """Seconds for one batch: forward (no graph), forward with graph + VJP, objective eval + grad."""
    model, objective, dev = cell.sampler.denoiser.model, cell.objective, cell.device
    x = torch.randn(samples, *cell.task.shape, device=dev)
    t = torch.full((samples,), cell.schedule.T // 2, dtype=torch.long, device=dev)

    def forward():
        with torch.no_grad():
            model(x, t)

    def forward_vjp():
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(model(xi, t).sum(), xi)

    def objective_grad():
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(objective(xi).sum(), xi)

    fwd = _median_time(forward, dev)
    return {"forward": fwd, "vjp": max(_median_time(forward_vjp, dev) - fwd, 0.0),
            "objective_grad": _median_time(objective_grad, dev)}


def measure(methods: dict[str, float], *, task: str = "subspace", objective: str = "quadratic_off",
            denoiser: str = "trained", checkpoint: str | None = None, samples: int = 32, repeats: int = 5,
            steps: int | None = None, device: str = "auto") -> tuple[list[dict], dict[str, float]]:
    rows, prim = [], None
    for name, strength in methods.items():
        cell = Cell(CellSpec.of(task=task, objective=objective, method=name, strength=strength, denoiser=denoiser,
                                checkpoint=checkpoint, rounds=repeats + 1, samples=samples, steps=steps), device)
        if prim is None:
            prim = primitives(cell, samples)
        walls, costs = [], None
        for rnd in cell.rounds():
            if rnd.index >= 2:  # round 0 is unguided for every method, round 1 warms up
                walls.append(rnd.wall_seconds)
                costs = rnd.costs
        n_steps = len(cell.sampler.steps)
        per = samples * n_steps
        rows.append({"method": name, "strength": strength, "device": cell.device, "samples": samples,
                     "steps": n_steps, "round_seconds": statistics.median(walls),
                     "forwards_per_round": costs.denoiser_forwards, "vjps_per_round": costs.denoiser_vjps,
                     "objective_grads_per_round": costs.objective_grads,
                     "f": costs.denoiser_forwards / per, "v": costs.denoiser_vjps / per,
                     "g": costs.objective_grads / per})
    base = next((r for r in rows if r["method"] == "none"), None)
    for r in rows:
        r["ratio_to_none"] = r["round_seconds"] / base["round_seconds"] if base else float("nan")
        if base:
            t_none = base["round_seconds"] / base["steps"]
            formula = r["f"] * t_none + r["v"] * prim["vjp"] + r["g"] * prim["objective_grad"]
            r["formula_ratio"] = formula / t_none
            r["measured_over_formula"] = (r["round_seconds"] / r["steps"]) / formula
        else:
            r["formula_ratio"] = r["measured_over_formula"] = float("nan")
    return rows, prim


def format_table(rows: list[dict], prim: dict[str, float] | None = None) -> str:
    head = (f"{'method':8} {'strength':>8} {'s/round':>9} {'x none':>7} {'formula x':>9} {'meas/form':>9} "
            f"{'fwd/step':>8} {'vjp/step':>8} {'G/step':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:8} {r['strength']:8g} {r['round_seconds']:9.3f} {r['ratio_to_none']:7.2f} "
                     f"{r['formula_ratio']:9.2f} {r['measured_over_formula']:9.2f} "
                     f"{r['f']:8.2f} {r['v']:8.2f} {r['g']:6.2f}")
    dev = rows[0]
    lines.append(f"({dev['samples']} chains x {dev['steps']} steps per round, device {dev['device']}, "
                 f"torch threads {torch.get_num_threads()}, median of rounds after warm-up; per sample and step:"
                 f" fwd = denoiser forwards, vjp = denoiser VJPs, G = objective gradients)")
    if prim:
        lines.append("primitives per batch: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in prim.items()))
    return "\n".join(lines)


def _parse_methods(items: list[str] | None) -> dict[str, float]:
    if not items:
        return dict(DEFAULT_STRENGTHS)
    out = {}
    for item in items:
        name, _, s = item.partition("=")
        out[name] = float(s) if s else DEFAULT_STRENGTHS.get(name, 0.0)
    if "none" not in out:
        out = {"none": 0.0} | out
    return out


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows, prim = measure(_parse_methods(args.methods), task=args.task, objective=args.objective,
                         denoiser=args.denoiser, checkpoint=args.checkpoint, samples=args.samples,
                         repeats=args.repeats, steps=args.steps, device=args.device)
    print(format_table(rows, prim))
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0
