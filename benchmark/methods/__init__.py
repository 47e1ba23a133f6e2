"""Guidance methods and the inference-compute references (bon, smc): one file each, registered here by name.

METHODS is a Registry (benchmark/registry.py): the built-ins below, then the entry points of group
`guidebench.methods` of installed plug-ins, then `package.module:Class` import paths. A plug-in method is
a GuidanceMethod subclass (a dataclass of typed hyper-parameters) that declares its cost formula
`costs_per_sample(steps)`; `python -m benchmark check-method` runs the contract (benchmark/contract.py)
on it.
"""

from __future__ import annotations

import dataclasses
import typing

from benchmark.methods.base import GuidanceMethod, Guide, LinearTarget
from benchmark.methods.bon import BestOfN
from benchmark.methods.cg import ClassifierGuidance
from benchmark.methods.daps import DAPS
from benchmark.methods.ddnm import DDNM
from benchmark.methods.diffpir import DiffPIR
from benchmark.methods.dps import DPS
from benchmark.methods.freedom import FreeDoM
from benchmark.methods.gloss import LookAheadLoss
from benchmark.methods.lgd import LGD
from benchmark.methods.mpgd import MPGD
from benchmark.methods.naive import NaiveGradient
from benchmark.methods.none import Unguided
from benchmark.methods.pigdm import PiGDM
from benchmark.methods.reddiff import REDDiff
from benchmark.methods.shen import Shen
from benchmark.methods.smc import SMC
from benchmark.methods.svdd import SVDD
from benchmark.methods.tfg import TFG
from benchmark.methods.ugd import UGD
from benchmark.registry import Registry

METHODS: Registry[type[GuidanceMethod]] = Registry("method", "guidebench.methods", {
    "none": Unguided,
    "naive": NaiveGradient,
    "gloss": LookAheadLoss,
    "dps": DPS,
    "freedom": FreeDoM,
    "mpgd": MPGD,
    "cg": ClassifierGuidance,
    "ugd": UGD,
    "lgd": LGD,
    "tfg": TFG,
    "shen": Shen,
    "pigdm": PiGDM,
    "ddnm": DDNM,
    "diffpir": DiffPIR,
    "svdd": SVDD,
    "daps": DAPS,
    "reddiff": REDDiff,
    "bon": BestOfN,
    "smc": SMC,
})


def method_class(name: str | type) -> type[GuidanceMethod]:
    """The class of method `name`: a built-in, a plug-in's entry point or `package.module:Class`
    (ValueError naming the allowed names, or what the name resolved to when it is no GuidanceMethod);
    a class is checked and returned as it is."""
    if isinstance(name, type):
        if not issubclass(name, GuidanceMethod):
            raise ValueError(f"{name.__module__}.{name.__qualname__} is not a subclass of "
                             "benchmark.methods.GuidanceMethod")
        cls = name
    else:
        cls = METHODS.resolve_subclass(name, GuidanceMethod)
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"method {name!r} ({cls.__module__}.{cls.__qualname__}) is not a dataclass: decorate it "
                         "with @dataclasses.dataclass so its hyper-parameters are typed fields")
    return cls


def method_params(name: str | type) -> dict[str, type]:
    """The hyper-parameters of method `name` and their types (strength included)."""
    cls = method_class(name)
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def make_method(name: str | type, strength: float = 0.0, **params) -> GuidanceMethod:
    """Build a method by name (or from its class); unknown names or hyper-parameters raise with what is allowed.
    The one check of a method's parameter names and types: such a ValueError carries the parameter in `param`,
    for the caller to name its config key (benchmark.config_checks.method_or_error)."""
    cls = method_class(name)
    name = name if isinstance(name, str) else cls.name or cls.__qualname__
    allowed = {k: t for k, t in method_params(cls).items() if k != "strength"}
    unknown = sorted(set(params) - set(allowed))

    def error(message: str, param: str) -> ValueError:  # the one place of these errors; `param`: for the caller's key
        exc = ValueError(message)
        exc.param = param
        return exc

    if unknown:
        raise error(f"method {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed) or 'none'}", unknown[0])
    typed = {}
    for k, v in params.items():
        kind = allowed[k]
        if kind is bool and not isinstance(v, bool) or kind in (int, float) and isinstance(v, bool):
            raise error(f"method {name!r}: parameter {k} must be {kind.__name__}, got {v!r}", k)
        try:  # Literal choices pass through as given; the dataclass checks them
            typed[k] = kind(v) if kind in (float, int, str, bool) else v
        except (TypeError, ValueError):
            raise error(f"method {name!r}: parameter {k} must be {kind.__name__}, got {v!r}", k) from None
    return cls(strength=float(strength), **typed)


__all__ = ["METHODS", "GuidanceMethod", "Guide", "LinearTarget", "make_method", "method_class", "method_params"]
