"""Guidance methods and the inference-compute references (bon, smc): one file each, registered here by name."""

from __future__ import annotations

import dataclasses
import typing

from benchmark.methods.base import GuidanceMethod, Guide, LinearTarget
from benchmark.methods.bon import BestOfN
from benchmark.methods.cg import ClassifierGuidance
from benchmark.methods.dps import DPS
from benchmark.methods.freedom import FreeDoM
from benchmark.methods.gloss import LookAheadLoss
from benchmark.methods.lgd import LGD
from benchmark.methods.mpgd import MPGD
from benchmark.methods.naive import NaiveGradient
from benchmark.methods.none import Unguided
from benchmark.methods.shen import Shen
from benchmark.methods.smc import SMC
from benchmark.methods.tfg import TFG
from benchmark.methods.ugd import UGD

METHODS: dict[str, type[GuidanceMethod]] = {
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
    "bon": BestOfN,
    "smc": SMC,
}


def method_params(name: str) -> dict[str, type]:
    """The hyper-parameters of method `name` and their types (strength included)."""
    hints = typing.get_type_hints(METHODS[name])
    return {f.name: hints[f.name] for f in dataclasses.fields(METHODS[name])}


def make_method(name: str, strength: float = 0.0, **params) -> GuidanceMethod:
    """Build a method by name; unknown names or hyper-parameters raise with what is allowed."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    allowed = {k: t for k, t in method_params(name).items() if k != "strength"}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    typed = {}
    for k, v in params.items():
        kind = allowed[k]
        if kind is bool and not isinstance(v, bool) or kind in (int, float) and isinstance(v, bool):
            raise ValueError(f"method {name!r}: parameter {k} must be {kind.__name__}, got {v!r}")
        try:  # Literal choices pass through as given; the dataclass checks them
            typed[k] = kind(v) if kind in (float, int, str, bool) else v
        except (TypeError, ValueError):
            raise ValueError(f"method {name!r}: parameter {k} must be {kind.__name__}, got {v!r}") from None
    return METHODS[name](strength=float(strength), **typed)


__all__ = ["METHODS", "GuidanceMethod", "Guide", "LinearTarget", "make_method", "method_params"]
