"""`python -m benchmark`: GuideBench's command line, what the Snakemake rules call (run, pretrain, aggregate, report).

Bad input exits with status 2 and a message naming the bad value and what is allowed; nothing
is written then. A cell that fails or diverges while running still writes its rows (status
'failed' / 'diverged') and exits 0, so a sweep goes on. A file that cannot be written (full disk,
read-only folder) exits with status 1 and one line naming it; the previous file stays as it was.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmark.spec import _pair


def _positive(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects an integer >= 1, got {text!r}")
    return value


def _add_run(sub, full: bool = True):
    """The `run` command; not `full` (another command runs): its line in the list only, since its options name
    the registries' entries, which import torch (a second or more of start-up for aggregate or report)."""
    p = sub.add_parser("run", help="run one cell (or one per --seed) and write its Parquet file",
                       description="Run a cell given by --spec (the workflow's form: the cell spec as JSON, "
                                   "benchmark/spec.py) or by one option per spec field.")
    if not full:
        return
    from benchmark.spec import add_spec_arguments

    p.add_argument("--spec", nargs="+", metavar="JSON",
                   help="the cell spec as JSON; the field options below then must not be given, except --seed "
                        "(and --strengths). Several: one cell each (with its own seed and strength), one per --out. "
                        "A spec with \"cells\": [[strength, seed], ...] instead of the two stands for one cell per "
                        "pair (what a workflow job passes: benchmark.spec.specs_to_json)")
    add_spec_arguments(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: 0, torch's default)")
    p.add_argument("--out", required=True, nargs="+",
                   help="the cell's Parquet file (one per --seed); image tasks also write the .png gallery beside it")
    p.add_argument("--strengths", type=float, nargs="+", metavar="STRENGTH",
                   help="a group of cells (benchmark/batch.py): one strength per --seed and --out, which replace the "
                        "spec's strength; cells that can share a sampling pass run as one batch")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="every K rounds save each cell's round checkpoint beside its file (.resume.pt), from which "
                        "a rerun resumes (default: 0, none)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")


def _add_pretrain(sub):
    from benchmark.tasks.networks import flag

    p = sub.add_parser("pretrain", help="pre-train one network a task declares (its denoiser, an image task's "
                                        "classifiers)",
                       description="Pre-train one network of a task (benchmark.tasks.networks: `python -m benchmark "
                                   "list` shows each task's networks). A setting the network does not take is "
                                   "refused; one not given is the network's own default.")
    p.add_argument("--task", required=True, help="the task (see `python -m benchmark list`)")
    p.add_argument("--network", default="denoiser", help="which of the task's networks (default: denoiser)")
    p.add_argument("--out", required=True, help="safetensors checkpoint to write")
    p.add_argument("--report", help="also write the training report (JSON) here")
    p.add_argument("--need", type=_pair, action="append", default=[], metavar="NAME=FILE",
                   help="the checkpoint of a network this one needs (digits' denoiser: evaluator=FILE, whose "
                        "scores of unguided samples go into its report)")
    for key, kind, text in _pretrain_settings():
        p.add_argument(flag(key), dest=key, type=kind, default=None, help=text)
    p.add_argument("--set", type=_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="another setting the network declares (a plug-in network's)")
    p.add_argument("--task-seed", type=int, default=0, help="the task's problem instance (default: 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")


def _pretrain_settings() -> list[tuple[str, type, str]]:
    """(setting, type, help) of the pre-training flags, one per setting benchmark.tasks.networks.SETTINGS
    declares; which a network takes is its declaration."""
    from benchmark.tasks.networks import SETTINGS

    types = {"string": str, "integer": int, "number": float}
    return [(key, types[schema["type"]],
             schema["description"] + (f"; one of: {', '.join(schema['enum'])}" if "enum" in schema else ""))
            for key, schema in SETTINGS.items()]


def run_specs(args) -> list:
    """The cell specs of `run`'s options: --spec JSON (the workflow's form) or the field options, one per --seed."""
    from benchmark.spec import cli_fields, spec_from_args, specs_from_json

    if args.spec is None:
        missing = [flag for flag, path, f, _ in cli_fields() if path in (("task",), ("objective",), ("method",))
                   and getattr(args, "spec__" + "__".join(path)) is None]
        if missing:
            raise ValueError(f"give --spec JSON, or at least {', '.join(missing)}")
        return [spec_from_args(args, seed) for seed in (args.spec__seed or [0])]
    given = [flag for flag, path, f, _ in cli_fields() if path != ("seed",)
             and getattr(args, "spec__" + "__".join(path)) not in (None, [], f.default)]
    if given:
        raise ValueError(f"--spec gives the whole cell; do not also give {', '.join(given)}")
    specs = [spec for text in args.spec for spec in specs_from_json(text)]
    if len(specs) > 1:
        if args.spec__seed is not None or args.strengths is not None:
            raise ValueError("several cells (--spec several times, or a spec with `cells`) give each cell's own "
                             "seed and strength; do not also give --seed or --strengths")
        return specs
    spec = specs[0]
    if args.spec__seed is None:                    # the spec's own seed
        return [spec]
    return [spec.replace(seed=seed) for seed in args.spec__seed]


def group_specs(args) -> list:
    """run's cells: run_specs, each with its --strengths entry when given."""
    specs = run_specs(args)
    if args.strengths is None:
        return specs
    if len(args.strengths) != len(specs):
        raise ValueError(f"--strengths and --seed must pair up one to one; got {len(args.strengths)} strengths and "
                         f"{len(specs)} seeds")
    return [spec.replace(strength=s) for spec, s in zip(specs, args.strengths)]


def cmd_run(args) -> int:
    specs = group_specs(args)
    if len(specs) != len(args.out) or len(set(args.out)) != len(args.out):
        raise ValueError(f"--seed and --out must pair up one to one; got {len(specs)} seeds and "
                         f"{len(args.out)} distinct output files")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0 (0: no round checkpoints), got {args.checkpoint_every}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    # Several cells in one process: start-up paid once, and cells that can share a sampling pass (they differ
    # only in strength and seed) run as one batch (benchmark/batch.py); each is still its own cell with its
    # own file, written as soon as it is done.
    import time

    from benchmark.cell import write_cells

    start = time.perf_counter()
    results = write_cells(specs, args.out, args.device, progress=args.progress, checkpoint_every=args.checkpoint_every)
    seconds = time.perf_counter() - start
    for out, rows in zip(args.out, results):
        status = rows[0]["status"] if rows else "failed"
        print(f"{out}: {len(rows)} rows, status {status}" + (f" ({rows[0]['error']})" if status != "ok" else ""),
              file=sys.stderr)
    # the job's own work (build, sample, measure, write): the rest of its wall time is start-up and Snakemake's
    print(f"{len(specs)} cells in {seconds:.2f} s", file=sys.stderr)
    return 0


def cmd_pretrain(args) -> int:
    from pathlib import Path

    from benchmark.cell import resolve_device
    from benchmark.tasks import make_task

    task = make_task(args.task, args.task_seed)
    networks = type(task).networks
    if args.network not in networks:
        raise ValueError(f"task {args.task!r} has no {args.network!r} to pre-train; allowed: {list(networks)}")
    net = networks[args.network]
    settings = {key: getattr(args, key) for key, _, _ in _pretrain_settings() if getattr(args, key) is not None}
    settings |= dict(args.set)
    refused = sorted(set(settings) - set(net.takes()))
    if refused:
        raise ValueError(f"network {args.network!r} of task {args.task!r} takes no {refused}; allowed: "
                         f"{list(net.takes())}")
    from benchmark.pretraining import network_settings

    settings = network_settings(args.task, args.network, settings)  # the declaration's defaults, as the workflow
    needs = dict(args.need)
    unknown = sorted(set(needs) - set(net.needs))
    if unknown:
        raise ValueError(f"network {args.network!r} of task {args.task!r} needs no {unknown}; allowed: "
                         f"{list(net.needs) or 'none'}")
    device = resolve_device(args.device)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    save, report = net.trainer(task, args.network, settings, device=device, progress=progress, needs=needs)
    _add_run_facts(report, device)
    save(args.out)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2), file=sys.stderr)
    return 0


def cmd_schema(args) -> int:
    """The generated parts of workflow/schemas/config.schema.yaml and config/README.md (benchmark.schema)."""
    from benchmark import schema

    if args.write:
        changed = schema.write()
        print(f"rewrote {', '.join(map(str, changed))}" if changed else "up to date", file=sys.stderr)
        return 0
    if args.check:
        stale = schema.stale()
        if stale:
            print(f"out of date: {', '.join(map(str, stale))}; run `python -m benchmark schema --write`",
                  file=sys.stderr)
        return 1 if stale else 0
    print("\n".join(schema.schema_block("")))
    return 0


def _add_run_facts(report: dict, device: str) -> None:
    import resource

    report["device"] = device
    report["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmd_aggregate(args) -> int:
    from benchmark.results import aggregate

    table = aggregate(args.files, args.out, log=lambda note: print(note, file=sys.stderr))
    print(f"{args.out}: {table.num_rows} rows from {len(args.files)} cells", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    """Check every cell file (readable, complete, checksum, no conflicting duplicates); list the bad
    ones; with --remove-bad delete them and their galleries so the normal run recomputes them."""
    from benchmark.results import fix_command, verify

    files, problems, removed = verify(args.results_dir, remove_bad=args.remove_bad)
    for path, reason in problems.items():
        print(f"bad: {path}: {reason}", file=sys.stderr)
    for path in removed:
        print(f"removed: {path}", file=sys.stderr)
    summary = f"{len(files)} cell files checked, {len(problems)} bad"
    print(summary + (f", {len(removed)} files removed" if removed else ""), file=sys.stderr)
    if problems and args.remove_bad:
        print("recompute them: `snakemake --cores all` (with your usual --configfile / profile)", file=sys.stderr)
        return 0
    if problems:
        print(f"remove them and recompute exactly those cells: {fix_command(args.results_dir)}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args) -> int:
    """A config file's YAML syntax (errors at file:line:column), schema and sweep, without Snakemake."""
    from benchmark.sweep import check_config_file

    for path in args.files:
        print(f"{path}: ok, {check_config_file(path)} cells", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from benchmark.report import build_report

    build_report(args.results, args.out, models_dir=args.models, figures_dir=args.figures, selected=args.selected,
                 workers=args.workers)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_tune(args) -> int:
    """TFG's beam search (benchmark/tune.py) on one cell configuration, one guided round per setting."""
    from benchmark.cell import Cell
    from benchmark.spec import CellSpec, Denoiser, Rounds, Sampling
    from benchmark.tune import TFG_FACTORS, TFG_START, beam_search, best, cell_score

    base = CellSpec(task=args.task, objective=args.objective, method="tfg", seed=args.seed,
                    rounds=Rounds(rounds=1, samples=args.samples), sampling=Sampling(steps=args.steps),
                    denoiser=Denoiser(args.denoiser, source=args.checkpoint), models_dir=args.models_dir,
                    objective_params=dict(args.objective_param))
    Cell(base, args.device)  # a network that does not load stops here, before any search
    start = {k: v * args.start / TFG_START[k] for k, v in TFG_START.items()}
    trials = beam_search(cell_score(base, {}, metric=args.metric, maximise=not args.minimise, device=args.device),
                         start,
                         TFG_FACTORS, beam=args.beam, rounds=args.rounds)
    sign = -1 if args.minimise else 1
    print(f"{'round':>5} {'rho':>8} {'mu':>8} {'gamma':>8} {args.metric:>12}")
    for t in sorted(trials, key=lambda t: (t.round, -t.score if t.score == t.score else 0)):
        p = t.as_dict()
        print(f"{t.round:5d} {p['strength']:8.4g} {p['mu']:8.4g} {p['gamma']:8.4g} {sign * t.score:12.4g}")
    b = best(trials).as_dict()
    print(f"best: --method tfg --strength {b['strength']:g} --param mu={b['mu']:g} --param gamma={b['gamma']:g}"
          f" ({len(trials)} settings scored)")
    return 0


def cmd_perf(args) -> int:
    from benchmark.perf import main as perf_main

    return perf_main(args)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, False, []) or not text:
            return text
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    from benchmark import __version__

    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"GuideBench %(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands (`python -m benchmark COMMAND --help` for each)")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    _add_run(sub, full=command in (None, "run"))
    _add_pretrain(sub)
    from benchmark import catalog   # list, check-method
    catalog.add_parsers(sub)
    p = sub.add_parser("aggregate", help="concatenate cell files into one Parquet file")
    p.add_argument("--out", required=True, help="the aggregate Parquet file to write")
    p.add_argument("files", nargs="+", help="cell Parquet files (each checked: readable, complete, checksum)")
    p = sub.add_parser("verify", help="check every cell file under RESULTS_DIR/cells (readable, complete, "
                                      "checksum); list the bad ones, --remove-bad deletes them for a rerun")
    p.add_argument("results_dir", help="the results folder (config results_dir), e.g. results")
    p.add_argument("--remove-bad", action="store_true",
                   help="delete the bad cell files and their .png galleries: `snakemake --cores all` then "
                        "recomputes exactly those cells")
    p = sub.add_parser("check-config", help="check a config file before running Snakemake: YAML syntax "
                                            "(file:line), schema, registries, size of the sweep")
    p.add_argument("files", nargs="+", help="config files, e.g. config/config.yaml")
    p = sub.add_parser("schema", help="print the config's experiment run settings as generated from the cell spec "
                                      "(benchmark/spec.py); --write puts them into the schema file and "
                                      "config/README.md")
    p.add_argument("--write", action="store_true", help="rewrite the generated parts of "
                   "workflow/schemas/config.schema.yaml and config/README.md")
    p.add_argument("--check", action="store_true", help="exit 1 if those generated parts are out of date")
    p = sub.add_parser("report", help="write the HTML comparison report")
    p.add_argument("--results", required=True, help="the aggregate Parquet file (results/all.parquet)")
    p.add_argument("--out", required=True, help="the HTML file to write (its table goes beside it as .parquet)")
    p.add_argument("--models", default=None, help="folder of pre-training reports (*.json) to include")
    p.add_argument("--figures", default=None, help="also save every figure as a PNG in this folder")
    p.add_argument("--selected", default=None, help="the selection folder of the protocol (the workflow's "
                   "results/selected): the verdict (held-out, gated, compute-matched) comes first")
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="processes drawing the figures (default: 1; the page is the same for any N)")
    p = sub.add_parser("perf", help="time one round per method, count network evaluations, compare with "
                                    "the time the cost formula predicts; --throughput: chains x steps per "
                                    "second against the batch size")
    p.add_argument("--throughput", action="store_true",
                   help="throughput mode: for each denoiser setting, method and batch size N, seconds per sampling "
                        "pass of N chains and chains x steps per second, with the speed-up over the smallest N")
    p.add_argument("--methods", nargs="+", metavar="NAME[=STRENGTH]",
                   help="methods to time, space- or comma-separated (default: every registered method at a mid-grid "
                        "strength; --throughput: none,dps,gloss)")
    p.add_argument("--steps", type=int, help="sampling steps (default: every step of the schedule; --throughput: 50)")
    p.add_argument("--task", default="subspace", help="the task (not with --throughput: its settings name theirs)")
    p.add_argument("--objective", default="quadratic_off", help="the task's objective (not with --throughput)")
    p.add_argument("--denoiser", nargs="+", metavar="NAME",
                   help="oracle | trained (default: trained); with --throughput one or more of oracle (subspace, "
                        "exact score), trained (subspace ScoreMLP), digits (digits U-Net) (default: oracle trained, "
                        "and digits when --digits-checkpoint is given)")
    p.add_argument("--checkpoint", help="for --denoiser trained (default: models/subspace_denoiser.safetensors; "
                                        "--throughput: MODELS_DIR's, else one trained on the spot for timing)")
    p.add_argument("--models-dir", help="--throughput: folder of subspace_denoiser.safetensors and, for setting "
                                        "digits, digits_denoiser.safetensors with digits_evaluator.safetensors "
                                        "(default: models)")
    p.add_argument("--digits-checkpoint", help="--throughput: the digits U-Net checkpoint (adds setting digits)")
    p.add_argument("--batch-sizes", default=",".join(str(n) for n in (8, 16, 32, 64, 128, 256, 512)),
                   help="--throughput: comma-separated batch sizes N (chains per pass)")
    p.add_argument("--out", help="--throughput: also write the table to FILE.csv or FILE.json")
    p.add_argument("--samples", type=int, default=32, help="chains per round (not with --throughput)")
    p.add_argument("--repeats", type=int, help="timed rounds per method after one warm-up round (default: 5; "
                                               "--throughput: timed passes per batch size, default 5)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]; --throughput also all (cpu, and cuda "
                                                    "when available)")
    p = sub.add_parser("tune", help="TFG's beam search over (rho, mu, gamma) on a small batch")
    p.add_argument("--task", required=True, help="the task (see `python -m benchmark list`)")
    p.add_argument("--objective", required=True, help="the task's objective")
    p.add_argument("--denoiser", default="oracle", help="oracle | trained (with --checkpoint)")
    p.add_argument("--checkpoint", help="the denoiser's safetensors checkpoint (--denoiser trained)")
    p.add_argument("--models-dir", help="folder of the task's pre-trained networks (digits' classifiers)")
    p.add_argument("--objective-param", type=_pair, action="append", default=[], metavar="NAME=VALUE",
                   help="an objective parameter (repeatable)")
    p.add_argument("--samples", type=int, default=16, help="chains per scored setting (TFG: a small batch)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps")
    p.add_argument("--seed", type=int, default=0, help="the noise streams of the scored batch")
    p.add_argument("--start", type=float, default=0.25, help="start value of rho, mu and gamma (TFG: 0.25 or 0.5)")
    p.add_argument("--beam", type=int, default=2, help="settings kept per search round")
    p.add_argument("--rounds", type=int, default=6, help="search rounds (each moves every kept setting by one factor)")
    p.add_argument("--metric", default="reward_mean", help="the final-round metric to maximise")
    p.add_argument("--minimise", action="store_true", help="minimise --metric instead")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    for p in sub.choices.values():
        p.formatter_class = _HelpFormatter
    args = parser.parse_args(argv)
    from benchmark.log import setup_logging

    setup_logging()
    handler = {"run": cmd_run, "pretrain": cmd_pretrain, "aggregate": cmd_aggregate, "report": cmd_report,
               "perf": cmd_perf, "tune": cmd_tune, "verify": cmd_verify, "check-config": cmd_check_config,
               "schema": cmd_schema}
    handler.update(catalog.HANDLERS)
    try:
        return handler[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk error (benchmark.results.DiskError names the file)
        print(f"error: {exc}", file=sys.stderr)
        return 1
