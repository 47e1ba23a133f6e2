"""`python -m benchmark list` and `python -m benchmark check-method`: what is registered, and whether a
(plug-in) method keeps the contract.

    list                      methods with their parameters, defaults and one-line docs; tasks with their
                              objectives (plug-in objectives included); denoisers. --json for a machine.
    check-method METHOD       the contract of benchmark/contract.py on METHOD (a registered name or
                              `package.module:Class`), one line per check; exit 1 when one fails.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import typing
from collections.abc import Mapping
from typing import Literal

from benchmark.spec import _pair



def add_parsers(sub) -> None:
    """Add the `list` and `check-method` subcommands to an argparse subparsers object."""
    p = sub.add_parser("list", help="methods with their parameters, defaults and one-line docs; tasks with their "
                                    "objectives; denoisers (built-ins and installed plug-ins)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = sub.add_parser("check-method", help="run the method contract (per-sample independence, determinism, "
                                            "counted cost = declared cost formula) on a method; exit 1 on failure")
    p.add_argument("method", help="a registered method name or an import path package.module:Class")
    p.add_argument("--strength", type=float, default=None,
                   help="strength to check at (default: 0.3, or the method's default when it refuses 0.3)")
    p.add_argument("--param", type=_pair, action="append", default=[], metavar="NAME=VALUE",
                   help="a method hyper-parameter (repeatable), e.g. --param augment=3")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N]")


def _first_sentence(doc: str) -> str:
    """The docstring's first line, continued while it does not end a sentence (within its first paragraph)."""
    out = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        out.append(line.strip())
        if line.rstrip().endswith((".", ":")):
            break
    return " ".join(out)


def one_line_doc(obj) -> str:
    """The first sentence of an object's own docstring, else of its module's (a dataclass without a
    docstring gets a generated signature, which is no documentation)."""
    own = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if own and not (dataclasses.is_dataclass(obj) and own.startswith(f"{getattr(obj, '__name__', '')}(")):
        return _first_sentence(inspect.cleandoc(own))
    module = sys.modules.get(getattr(obj, "__module__", None) or "", None)
    doc = inspect.getdoc(module) if module is not None else None
    return _first_sentence(doc) if doc else ""


def _type_name(kind) -> str:
    if typing.get_origin(kind) is Literal:
        return " | ".join(repr(c) for c in typing.get_args(kind))
    return getattr(kind, "__name__", repr(kind))


def method_entries() -> list[dict]:
    from benchmark.methods import METHODS, method_params

    out = []
    for name in METHODS:
        cls = METHODS[name]
        types = method_params(name)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        out.append({"name": name, "origin": METHODS.origin(name), "class": f"{cls.__module__}:{cls.__qualname__}",
                    "doc": one_line_doc(cls),
                    "params": [{"name": k, "type": _type_name(t), "default": defaults[k]} for k, t in types.items()]})
    return out


def objective_entries() -> list[dict]:
    from benchmark.objectives import OBJECTIVES

    out = []
    for name in OBJECTIVES:
        cls = OBJECTIVES[name]
        try:
            params = [{"name": p.name, "default": None if p.default is p.empty else p.default}
                      for p in list(inspect.signature(cls).parameters.values())[1:]
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            params = []
        out.append({"name": name, "origin": OBJECTIVES.origin(name), "class": f"{cls.__module__}:{cls.__qualname__}",
                    "doc": one_line_doc(cls), "tasks": list(getattr(cls, "tasks", ()) or ()), "params": params})
    return out


def task_entries() -> list[dict]:
    from benchmark.objectives import plugin_objectives
    from benchmark.tasks import TASKS

    out = []
    for name in TASKS:
        cls = TASKS[name]
        out.append({"name": name, "origin": TASKS.origin(name), "class": f"{cls.__module__}:{cls.__qualname__}",
                    "doc": one_line_doc(cls), "objectives": list(cls.objectives),
                    "objective_params": {k: dict(v) for k, v in cls.objective_params.items()},
                    "plugin_objectives": [o for o in plugin_objectives(name) if o not in cls.objectives],
                    "oracle": bool(cls.has_oracle),
                    "networks": {n: {"doc": net.doc, "settings": list(net.takes()), "needs": list(net.needs)}
                                 for n, net in cls.networks.items()}})
    return out


def denoiser_entries() -> list[dict]:
    from benchmark import denoisers

    kinds = getattr(denoisers, "DENOISERS", ())
    if isinstance(kinds, Mapping):
        out = []
        for name in kinds:
            loader = kinds[name]
            origin = kinds.origin(name) if hasattr(kinds, "origin") else "built-in"
            out.append({"name": name, "origin": origin, "doc": one_line_doc(loader)})
        return out
    return [{"name": name, "origin": "built-in", "doc": ""} for name in kinds]


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (str, bool)) or v is None else repr(v)


def cmd_list(args) -> int:
    catalog = {"methods": method_entries(), "tasks": task_entries(), "objectives": objective_entries(),
               "denoisers": denoiser_entries()}
    if getattr(args, "json", False):
        print(json.dumps(catalog, indent=2, default=repr))
        return 0

    def origin(entry):
        return "" if entry["origin"] == "built-in" else f"  [{entry['origin']}]"

    print("methods (name: one-line doc; parameters as name: type = default):")
    for m in catalog["methods"]:
        print(f"  {m['name']}{origin(m)}: {m['doc']}")
        print("      " + ", ".join(f"{p['name']}: {p['type']} = {_value(p['default'])}" for p in m["params"]))
    print("tasks (name: objectives):")
    for t in catalog["tasks"]:
        own = ", ".join(o + (f" {t['objective_params'][o]}" if t["objective_params"].get(o) else "")
                        for o in t["objectives"])
        plug = f"; plug-in objectives: {', '.join(t['plugin_objectives'])}" if t["plugin_objectives"] else ""
        oracle = " (oracle denoiser)" if t["oracle"] else ""
        print(f"  {t['name']}{origin(t)}{oracle}: {own}{plug}")
        for n, net in t["networks"].items():
            needs = f"; after {', '.join(net['needs'])}" if net["needs"] else ""
            print(f"      pre-trains {n}: {net['doc']}{needs}")
    print("objectives of plug-ins (not a task's own; name: tasks it applies to):")
    if not catalog["objectives"]:
        print("  (none installed: entry points of group guidebench.objectives)")
    for o in catalog["objectives"]:
        params = ", ".join(f"{p['name']} = {_value(p['default'])}" for p in o["params"]) or "no parameters"
        print(f"  {o['name']}{origin(o)}: tasks {', '.join(o['tasks']) or 'any'}; {params}; {o['doc']}")
    print("denoisers:")
    for d in catalog["denoisers"]:
        print(f"  {d['name']}{origin(d)}" + (f": {d['doc']}" if d["doc"] else ""))
    return 0


def cmd_check_method(args) -> int:
    from benchmark import contract

    params = dict(args.param)
    checks = contract.check_method(args.method, args.strength, params, device=args.device)
    if checks and checks[0].name != "builds":
        strength = args.strength if args.strength is not None else contract.default_strength(args.method)
        print(f"method {contract.describe(args.method)} at strength {strength}"
              + (f" with {params}" if params else "")
              + f": subspace task, oracle denoiser, objective {contract.OBJECTIVE}, {contract.STEPS} steps")
    for c in checks:
        print(c.line())
    failed = [c for c in checks if not c.passed]
    if failed:
        print(f"{len(failed)} of {len(checks)} checks failed: {', '.join(c.name for c in failed)}")
        return 1
    print(f"all {len(checks)} checks passed")
    return 0


HANDLERS = {"list": cmd_list, "check-method": cmd_check_method}
