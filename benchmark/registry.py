"""Registries of named components (methods, objectives, tasks, denoiser loaders), open to plug-ins.

A name resolves, in order, to
1. a built-in (the package's own, listed where the kind is defined);
2. an entry point of the kind's group (`guidebench.methods`, `guidebench.objectives`,
   `guidebench.tasks`, `guidebench.denoisers`) of any installed distribution, e.g. in a plug-in's
   pyproject.toml:  [project.entry-points."guidebench.methods"]  my_method = "my_pkg.guide:MyMethod"
3. an import path `package.module:Attribute` written directly in a config or on the command line.

A name that resolves to nothing raises ValueError naming the kind and every allowed name.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
#: `package.module:Attribute` (dotted on both sides).
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_path(path: str):
    """The attribute `package.module:Attribute` names (ValueError naming what failed)."""
    if not IMPORT_PATH.match(path):
        raise ValueError(f"{path!r} is not an import path; expected 'package.module:Attribute'")
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} (from {path!r}): {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None
    return obj


class Registry(Mapping, Generic[T]):
    """name -> component: the built-ins, then the group's entry points (loaded on first use), then
    `package.module:Attribute` paths. Iterating lists built-ins and entry points, not paths."""

    def __init__(self, kind: str, group: str, builtins: dict[str, T]):
        self.kind, self.group = kind, group
        self._builtins = dict(builtins)
        self._plugins: dict[str, T] | None = None
        self._paths: dict[str, T] = {}

    def plugins(self) -> dict[str, T]:
        """The entry points of the group, loaded (a built-in's name cannot be taken by a plug-in)."""
        if self._plugins is None:
            found = {}
            for ep in entry_points(group=self.group):
                if ep.name in self._builtins:
                    raise ValueError(f"plug-in {ep.value!r} (entry point {self.group}:{ep.name}) takes the name of "
                                     f"a built-in {self.kind}; rename it")
                try:
                    found[ep.name] = ep.load()
                except Exception as exc:  # a broken plug-in names itself
                    raise ValueError(f"plug-in {self.kind} {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            self._plugins = found
        return self._plugins

    def builtins(self) -> dict[str, T]:
        return dict(self._builtins)

    def __getitem__(self, name: str) -> T:
        if name in self._builtins:
            return self._builtins[name]
        plugins = self.plugins()
        if name in plugins:
            return plugins[name]
        if isinstance(name, str) and ":" in name:
            if name not in self._paths:
                self._paths[name] = import_path(name)
            return self._paths[name]
        raise ValueError(f"unknown {self.kind} {name!r}; allowed: {sorted(self)} (or an import path "
                         "'package.module:Attribute', or a plug-in's entry point in group " + repr(self.group) + ")")

    def __contains__(self, name) -> bool:
        try:
            self[name]
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        yield from self._builtins
        yield from (n for n in self.plugins() if n not in self._builtins)

    def __len__(self) -> int:
        return len(self._builtins) + len(self.plugins())

    def register(self, name: str, component: T) -> None:
        """Add a built-in (the package's own modules call this; plug-ins use entry points)."""
        self._builtins[name] = component

    def get(self, name, default=None):
        """The component `name` resolves to, or `default` (never raises for an unknown name)."""
        try:
            return self[name]
        except ValueError:
            return default

    # Item assignment and deletion act on the built-ins, so `monkeypatch.setitem(METHODS, name, cls)`
    # works in tests as it did on a dict (and is undone the same way).
    def __setitem__(self, name: str, component: T) -> None:
        self.register(name, component)

    def __delitem__(self, name: str) -> None:
        if name not in self._builtins:
            raise KeyError(name)
        del self._builtins[name]

    def origin(self, name: str) -> str:
        """Where `name` comes from: 'built-in', 'plug-in (entry point GROUP:NAME = VALUE)' or 'import path'."""
        if name in self._builtins:
            return "built-in"
        if name in self.plugins():
            ep = next(ep for ep in entry_points(group=self.group) if ep.name == name)
            return f"plug-in ({self.group}: {ep.name} = {ep.value})"
        self[name]                                                  # ValueError for an unknown name
        return "import path"

    def resolve_subclass(self, name: str, base: type) -> type:
        """The component `name` resolves to, which must be a subclass of `base` (ValueError otherwise,
        naming what `name` resolved to)."""
        obj = self[name]
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise ValueError(f"{self.kind} {name!r} resolves to {obj!r}, which is not a subclass of "
                             f"{base.__module__}.{base.__qualname__}")
        return obj
