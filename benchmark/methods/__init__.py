"""Guidance methods: one file each, registered here by name."""

from __future__ import annotations

import dataclasses

from benchmark.methods.base import GuidanceMethod, Guide, LinearTarget
from benchmark.methods.gloss import LookAheadLoss
from benchmark.methods.naive import NaiveGradient
from benchmark.methods.none import Unguided

METHODS: dict[str, type[GuidanceMethod]] = {
    "none": Unguided,
    "naive": NaiveGradient,
    "gloss": LookAheadLoss,
}


def method_params(name: str) -> dict[str, type]:
    """The hyper-parameters of method `name` and their types (strength included)."""
    return {f.name: f.type for f in dataclasses.fields(METHODS[name])}


def make_method(name: str, strength: float = 0.0, **params) -> GuidanceMethod:
    """Build a method by name; unknown names or hyper-parameters raise with what is allowed."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    cls = METHODS[name]
    allowed = {f.name: f for f in dataclasses.fields(cls) if f.name != "strength"}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    typed = {}
    for k, v in params.items():
        kind = {"float": float, "int": int, "bool": bool, "str": str}.get(str(allowed[k].type), None)
        try:
            typed[k] = kind(v) if kind is not None else v
        except (TypeError, ValueError):
            raise ValueError(f"method {name!r}: parameter {k} must be {allowed[k].type}, got {v!r}") from None
    return cls(strength=float(strength), **typed)


__all__ = ["METHODS", "GuidanceMethod", "Guide", "LinearTarget", "make_method", "method_params"]
