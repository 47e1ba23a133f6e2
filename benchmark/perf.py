"""`python -m benchmark perf`: wall time and counted network evaluations of one round per method.

Not a test (timings vary by machine): a measurement to quote. One round = one batch of
`samples` chains through every step of the schedule (200 on the subspace task), timed as the
median over `repeats` rounds after one warm-up round, with the counted denoiser forwards and
VJPs per round, and each method's wall-time ratio to unguided sampling.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmark.cell import Cell, CellSpec


def measure(methods: dict[str, float], *, task: str = "subspace", objective: str = "quadratic_off",
            denoiser: str = "trained", checkpoint: str | None = None, samples: int = 32, repeats: int = 5,
            device: str = "auto") -> list[dict]:
    rows = []
    for name, strength in methods.items():
        cell = Cell(CellSpec(task=task, objective=objective, method=name, strength=strength, denoiser=denoiser,
                             checkpoint=checkpoint, rounds=repeats + 1, samples=samples, device=device))
        walls, costs = [], None
        for rnd in cell.rounds():
            if rnd.index >= 2:  # round 0 is unguided for every method, round 1 warms up
                walls.append(rnd.wall_seconds)
                costs = rnd.costs
        rows.append({"method": name, "strength": strength, "device": cell.device, "samples": samples,
                     "steps": len(cell.sampler.steps), "round_seconds": statistics.median(walls),
                     "forwards_per_round": costs.denoiser_forwards, "vjps_per_round": costs.denoiser_vjps,
                     "objective_grads_per_round": costs.objective_grads})
    base = next((r["round_seconds"] for r in rows if r["method"] == "none"), None)
    for r in rows:
        r["ratio_to_none"] = r["round_seconds"] / base if base else float("nan")
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'method':8} {'strength':>8} {'s/round':>9} {'x none':>7} {'fwd/round':>10} {'vjp/round':>10} {'grads':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:8} {r['strength']:8g} {r['round_seconds']:9.3f} {r['ratio_to_none']:7.2f} "
                     f"{r['forwards_per_round']:10d} {r['vjps_per_round']:10d} {r['objective_grads_per_round']:6d}")
    dev = rows[0]
    lines.append(f"({dev['samples']} chains x {dev['steps']} steps per round, device {dev['device']}, "
                 f"torch threads {torch.get_num_threads()}, median of rounds after warm-up)")
    return "\n".join(lines)


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = measure({"none": 0.0, "naive": 0.9, "gloss": 0.2}, task=args.task, objective=args.objective,
                   denoiser=args.denoiser, checkpoint=args.checkpoint, samples=args.samples,
                   repeats=args.repeats, device=args.device)
    print(format_table(rows))
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0
