"""`python -m benchmark perf`: wall time and counted network evaluations of one round per method,
against the time its cost formula predicts.

Not a test (timings vary by machine): a measurement to quote. One round = one batch of
`samples` chains through every step of the grid, timed as the median over `repeats` rounds after
one warm-up round, with the counted evaluations per sample and step.

The formula's time per step is built from separately timed primitives on the same batch:
    T_formula = f T_none + v T_vjp + g T_G
with f, v, g the counted denoiser forwards, denoiser VJPs and objective gradients per sample and
step (equal to each method's cost formula: tests/test_contract.py), T_none the measured
unguided step (one forward plus the DDIM update and noise draw), T_vjp the extra time of a
forward that keeps its graph plus the backward through the denoiser, and T_G one objective
evaluation plus gradient. measured / formula > 1 is overhead the formula does not account for.

`--throughput` measures instead how sampling scales with the batch: for each denoiser setting (the
subspace task's oracle and trained ScoreMLP, the digits U-Net when given), method and batch size N,
seconds per sampling pass of N chains and chains x steps per second, with the speed-up over the
smallest N (`throughput`, below), naming the device, torch version and thread count that produced them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.cell import Cell, CellSpec
from benchmark.paths import checkpoint_name

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


def _parse_methods(items: list[str] | None, baseline: bool = True) -> dict[str, float]:
    """NAME[=STRENGTH] items (each may be a comma-separated list) -> {name: strength}; with `baseline`
    the unguided method comes first whether asked for or not."""
    if not items:
        return dict(DEFAULT_STRENGTHS)
    out = {}
    for item in (part for it in items for part in it.split(",") if part):
        name, _, s = item.partition("=")
        out[name] = float(s) if s else DEFAULT_STRENGTHS.get(name, 0.0)
    if baseline and "none" not in out:
        out = {"none": 0.0} | out
    return out


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "throughput", False):
        return main_throughput(args)
    denoisers = args.denoiser or ["trained"]
    if len(denoisers) != 1:
        raise ValueError(f"--denoiser: one denoiser without --throughput, got {denoisers}")
    denoiser = denoisers[0]
    checkpoint = None if denoiser == "oracle" else (args.checkpoint or f"models/{SUBSPACE_CHECKPOINT}")
    start = time.perf_counter()
    rows, prim = measure(_parse_methods(args.methods), task=args.task, objective=args.objective,
                         denoiser=denoiser, checkpoint=checkpoint, samples=args.samples,
                         repeats=args.repeats or 5, steps=args.steps, device=args.device)
    print(format_table(rows, prim))
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


# --- throughput: chains x steps per second against the batch size ------------------------------------------
#
# `python -m benchmark perf --throughput`: for each denoiser setting, method and batch size N, the median wall
# time of one sampling pass of N chains over the grid (benchmark.diffusion.sample, as one round of
# benchmark.optimize.run_rounds runs it, the noise streams and linear target prepared outside the clock), after
# one warm-up pass; throughput = N x steps / seconds, and its speed-up over the smallest N.

THROUGHPUT_BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)
THROUGHPUT_METHODS = ("none", "dps", "gloss")
THROUGHPUT_SETTINGS = ("oracle", "trained")
THROUGHPUT_STEPS = 50
THROUGHPUT_REPEATS = 5
#: The columns of the throughput table (CSV header, JSON row keys).
THROUGHPUT_COLUMNS = ("setting", "task", "objective", "denoiser", "method", "strength", "device", "device_name",
                      "batch", "steps", "repeats", "seconds_per_pass", "chain_steps_per_second", "speedup",
                      "fwd", "vjp", "G")
#: --device values of the throughput mode.
THROUGHPUT_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "all")
SUBSPACE_CHECKPOINT = checkpoint_name("subspace", "denoiser")
DIGITS_CHECKPOINT = checkpoint_name("digits", "denoiser")


@dataclass(frozen=True)
class Setting:
    """One denoiser setting of the throughput table: a task, its objective and the eps-model."""

    name: str
    task: str
    objective: str
    denoiser: str
    checkpoint: str | None = None
    models_dir: str | None = None
    note: str = ""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name and not name.isdigit():
                    return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_name()


def system_info(devices: list[str]) -> dict:
    """What produced the numbers: devices by name, torch and its threads, the host's load."""
    info = {"devices": {d: device_name(d) for d in devices}, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["load_average_1min"] = None
    return info


def throughput_devices(device: str) -> list[str]:
    """The devices to time: auto (cuda when available, else cpu), cpu, cuda[:N], or all (cpu, and cuda
    when available). Asking for CUDA where there is none is a ValueError naming what is allowed."""
    if device == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if device == "auto":
        return ["cuda" if torch.cuda.is_available() else "cpu"]
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r} asked for but CUDA is not available (torch {torch.__version__}); "
                             f"allowed here: cpu, auto, all (all: cpu, and cuda when available)")
        return [device]
    if device == "cpu":
        return ["cpu"]
    raise ValueError(f"unknown --device {device!r}; allowed: {', '.join(THROUGHPUT_DEVICES)}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_pass(setting: Setting, method: str, strength: float, samples: int, *, steps: int | None = THROUGHPUT_STEPS,
              repeats: int = THROUGHPUT_REPEATS, device: str = "cpu", seed: int = 0) -> dict:
    """Median seconds of one sampling pass of `samples` chains (after a warm-up pass) and the counted
    evaluations per chain and step, for a cell of `setting` and `method` built as a sweep builds it."""
    from benchmark.diffusion import CountingObjective, PerSampleNoise, sample
    from benchmark.methods import Guide, make_method
    from benchmark.optimize import linearise

    cell = Cell(CellSpec.of(task=setting.task, objective=setting.objective, method=method, strength=strength,
                            denoiser=setting.denoiser, checkpoint=setting.checkpoint, models_dir=setting.models_dir,
                            samples=samples, steps=steps, rounds=1, seed=seed), device)
    dev, task = cell.device, cell.task
    objective = CountingObjective(cell.objective, cell.costs)

    def streams(k):
        noise = PerSampleNoise.for_chains(("throughput", task.name, setting.name, seed, k), samples, task.shape,
                                          device=dev)
        return noise, noise.draw()

    target = None
    if cell.method.uses_linear_target:  # round 1's target: linearised at an unguided batch, as run_rounds does
        noise, x_T = streams(-1)
        target = linearise(objective, sample(cell.sampler, make_method("none"), x_T, noise), cell.method.strength,
                           cell.config.linearise)
    guide = Guide(objective, target, augment=task.augment, noisy_log_prob=getattr(objective, "noisy_log_prob", None))
    times, costs = [], None
    for k in range(repeats + 1):  # pass 0 warms up
        noise, x_T = streams(k)
        _sync(dev)
        before = cell.costs.snapshot()
        start = time.perf_counter()
        sample(cell.sampler, cell.method, x_T, noise, guide)
        _sync(dev)
        if k:
            times.append(time.perf_counter() - start)
            costs = cell.costs.snapshot() - before
    n_steps = len(cell.sampler.steps)
    seconds = statistics.median(times)
    per = samples * n_steps
    return {"setting": setting.name, "task": setting.task, "objective": setting.objective,
            "denoiser": setting.denoiser, "method": method, "strength": strength, "device": dev,
            "device_name": device_name(dev), "batch": samples, "steps": n_steps, "repeats": repeats,
            "seconds_per_pass": seconds, "chain_steps_per_second": per / seconds,
            "fwd": costs.denoiser_forwards / per, "vjp": costs.denoiser_vjps / per, "G": costs.objective_grads / per}


def throughput(settings: list[Setting], methods: dict[str, float], batch_sizes: list[int], *,
               devices: list[str], steps: int | None = THROUGHPUT_STEPS, repeats: int = THROUGHPUT_REPEATS,
               progress=None) -> list[dict]:
    """One row per (device, setting, method, batch size), with the speed-up of its throughput over the
    smallest batch size of the same (device, setting, method)."""
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {batch_sizes}")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    rows = []
    for dev in devices:
        for setting in settings:
            for name, strength in methods.items():
                group = [time_pass(setting, name, strength, n, steps=steps, repeats=repeats, device=dev)
                         for n in sorted(set(batch_sizes))]
                base = group[0]["chain_steps_per_second"]
                for r in group:
                    r["speedup"] = r["chain_steps_per_second"] / base
                    if progress:
                        progress(r)
                rows += group
    return rows


def format_throughput(rows: list[dict], info: dict | None = None) -> str:
    head = (f"{'device':7} {'setting':8} {'method':7} {'N':>5} {'steps':>5} {'s/pass':>9} {'chain-steps/s':>13} "
            f"{'x smallest N':>12} {'fwd':>4} {'vjp':>4} {'G':>4}")
    lines = [head, "-" * len(head)]
    prev = None
    for r in rows:
        key = (r["device"], r["setting"], r["method"])
        if prev is not None and key != prev:
            lines.append("")
        prev = key
        lines.append(f"{r['device']:7} {r['setting']:8} {r['method']:7} {r['batch']:5d} {r['steps']:5d} "
                     f"{r['seconds_per_pass']:9.4f} {r['chain_steps_per_second']:13,.0f} {r['speedup']:12.2f} "
                     f"{r['fwd']:4.0f} {r['vjp']:4.0f} {r['G']:4.0f}")
    lines.append("(s/pass: median wall time of one sampling pass of N chains over the grid after a warm-up pass; "
                 "chain-steps/s = N x steps / s/pass; x smallest N: throughput over that of the smallest N; "
                 "fwd, vjp, G: counted denoiser forwards, denoiser VJPs, objective gradients per chain and step)")
    if info:
        devs = "; ".join(f"{d}: {n}" for d, n in info["devices"].items())
        lines.append(f"devices {devs}; torch {info['torch']} (CUDA {info['cuda'] or 'none'}), "
                     f"{info['torch_threads']} torch threads, {info['cpu_count']} CPUs, "
                     f"load average {info['load_average_1min']} at the start, "
                 f"{info.get('load_average_1min_end', '?')} at the end (1 min)")
    return "\n".join(lines)


def write_throughput(path: str | Path, rows: list[dict], info: dict, settings: list[Setting]) -> None:
    """CSV (one row per measurement, the system columns on each) or JSON ({system, settings, rows})."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {str(path)!r}: the file name must end in .csv or .json")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        payload = {"system": info, "settings": [dataclasses.asdict(s) for s in settings],
                   "rows": [{k: r[k] for k in THROUGHPUT_COLUMNS} for r in rows]}
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return
    extra = {"torch": info["torch"], "torch_threads": info["torch_threads"],
             "load_average_1min": info["load_average_1min"], "load_average_1min_end": info.get("load_average_1min_end")}
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*THROUGHPUT_COLUMNS, *extra])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in THROUGHPUT_COLUMNS} | extra)


def _small_subspace_checkpoint(folder: str) -> str:
    """A ScoreMLP of the default architecture (pretrain's hidden 256, depth 3, T 200) trained for one
    short epoch: its timings are those of the benchmark's network, whatever it learnt."""
    from benchmark.denoisers import pretrain, save_checkpoint
    from benchmark.tasks import make_task

    model, schedule, report = pretrain(make_task("subspace"), epochs=1, n_train=4096, n_heldout=256)
    path = str(Path(folder) / SUBSPACE_CHECKPOINT)
    save_checkpoint(path, model, schedule, report)
    return path


def throughput_settings(names: list[str], *, checkpoint: str | None, models_dir: str | None,
                        digits_checkpoint: str | None, scratch: str) -> list[Setting]:
    """The settings asked for: oracle (subspace, the exact score), trained (subspace, the ScoreMLP of
    --checkpoint, else MODELS_DIR/subspace_denoiser.safetensors, else models/..., else one trained
    here in a second), digits (the digits U-Net of --digits-checkpoint or MODELS_DIR/digits_denoiser...,
    inpainting, whose cells also load MODELS_DIR's (or the checkpoint's folder's) digits_evaluator)."""
    allowed = ("oracle", "trained", "digits")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown throughput setting(s) {unknown} for --denoiser; allowed: {list(allowed)}")
    out = []
    for name in dict.fromkeys(names):
        if name == "oracle":
            out.append(Setting("oracle", "subspace", "quadratic_off", "oracle", note="exact score"))
        elif name == "trained":
            candidates = [checkpoint] if checkpoint else [str(Path(models_dir or "models") / SUBSPACE_CHECKPOINT)]
            path = candidates[0]
            if checkpoint and not Path(checkpoint).exists():
                raise FileNotFoundError(f"--checkpoint {checkpoint!r} does not exist")
            note = f"ScoreMLP {path}"
            if not Path(path).exists():
                print(f"no {path}: training a small ScoreMLP (default architecture, 1 epoch) for timing",
                      file=sys.stderr)
                path = _small_subspace_checkpoint(scratch)
                note = "ScoreMLP trained here for timing (default architecture, 1 short epoch)"
            out.append(Setting("trained", "subspace", "quadratic_off", "trained", path, note=note))
        else:
            path = digits_checkpoint or (str(Path(models_dir) / DIGITS_CHECKPOINT) if models_dir else None)
            if not path or not Path(path).exists():
                raise ValueError("setting 'digits' needs the digits U-Net: --digits-checkpoint FILE or --models-dir "
                                 f"DIR holding {DIGITS_CHECKPOINT} (`python -m benchmark pretrain --task digits "
                                 f"--out DIR/{DIGITS_CHECKPOINT}`)" + (f"; {path} does not exist" if path else ""))
            folder = models_dir or str(Path(path).parent)
            out.append(Setting("digits", "digits", "inpaint", "trained", path, folder, f"U-Net {path}"))
    return out


def _int_list(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ValueError(f"--batch-sizes {text!r}: expected comma-separated integers, e.g. 8,16,32") from None
    if not out or min(out) < 1:
        raise ValueError(f"--batch-sizes {text!r}: expected integers >= 1")
    return out


def main_throughput(args) -> int:
    devices = throughput_devices(args.device)
    methods = _parse_methods(args.methods or list(THROUGHPUT_METHODS), baseline=False)
    batch_sizes = _int_list(args.batch_sizes)
    names = args.denoiser or list(THROUGHPUT_SETTINGS) + (["digits"] if args.digits_checkpoint else [])
    steps = args.steps or THROUGHPUT_STEPS
    repeats = args.repeats or THROUGHPUT_REPEATS
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="perf-throughput-") as scratch:
        settings = throughput_settings(names, checkpoint=args.checkpoint, models_dir=args.models_dir,
                                       digits_checkpoint=args.digits_checkpoint, scratch=scratch)
        info = system_info(devices)
        for s in settings:
            print(f"setting {s.name}: task {s.task}, objective {s.objective}, {s.note}", file=sys.stderr)
        load, cpus = info["load_average_1min"], info["cpu_count"] or 1
        if load is not None and load > cpus - 0.5 and info["torch_threads"] > 1:
            print(f"warning: load average {load} on {cpus} CPUs with {info['torch_threads']} torch threads: the "
                  "threads contend with other processes, timings will be slow and noisy (--threads 1 is steadier "
                  "on a busy machine)", file=sys.stderr)
        rows = throughput(settings, methods, batch_sizes, devices=devices, steps=steps, repeats=repeats)
        info["load_average_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if args.device == "all" and not torch.cuda.is_available():
        print("(--device all: CUDA is not available, timed on the CPU only)")
    print(format_throughput(rows, info))
    if args.out:
        write_throughput(args.out, rows, info, settings)
        print(f"wrote {args.out}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0
