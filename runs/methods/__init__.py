"""The stylize methods, one module each, and their registry.

Every module of this package (but `base`) that defines `METHOD` (a `runs.methods.base.Method`)
is registered when the package is imported: a new method is one new module here, plus its
tests. The CLI's --method, the flow's check, the manifest's `method` column and the audit's
repair commands all learn the methods from here. Tests (and plug-ins outside this package) may
`register` more at run time.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

from runs.methods.base import Knob, Method, Resolved, knobs_of
from styleops.errors import InvalidInputError

_methods: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method`; its name and aliases must be new. Returns it."""
    taken = {n for m in _methods.values() for n in (m.name, *m.aliases)}
    clash = sorted({method.name, *method.aliases} & taken)
    if clash:
        raise ValueError(f"method name {', '.join(clash)} is taken")
    _methods[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove the method registered as `name` (tests)."""
    _methods.pop(name, None)


def find(name_or_alias: str) -> Method | None:
    """The method of that name or alias, else None."""
    if name_or_alias in _methods:
        return _methods[name_or_alias]
    return next((m for m in _methods.values() if name_or_alias in m.aliases), None)


def get(name_or_alias: str) -> Method:
    """The method of that name or alias; InvalidInputError naming the registered ones otherwise."""
    method = find(name_or_alias)
    if method is None:
        raise InvalidInputError(f"method must be one of {', '.join(names())}, got {name_or_alias!r}")
    return method


def names() -> tuple[str, ...]:
    """The registered methods' names, in registration order."""
    return tuple(_methods)


def all_methods() -> Iterator[Method]:
    return iter(tuple(_methods.values()))


def knobs() -> dict[str, Knob]:
    """Every knob the registered methods declare, by name, in registration order: one
    StylizeParams field and one `stylize` option each. Two methods may declare the same knob
    (adain's and magenta's alpha) with the same type and default."""
    found: dict[str, Knob] = {}
    for method in all_methods():
        for k in knobs_of(method.options):
            seen = found.setdefault(k.name, k)
            if (seen.type, seen.default) != (k.type, k.default):
                raise TypeError(f"knob {k.name!r} of {method.name} differs from another method's")
    return found


def knob_takers(name: str) -> list[Method]:
    """The registered methods whose params hash reads the knob `name`."""
    return [m for m in all_methods() if name in m.hashed]


def resolve(method: str, style: str, version: str | None, model: str | None = None) -> Resolved:
    """`get(method).resolve(style, version, model)`."""
    return get(method).resolve(style, version, model)


def _discover() -> None:
    """Register the METHOD of every module of this package but `base`, by `Method.rank` (the
    documented order), then by name."""
    found = [
        getattr(importlib.import_module(f"{__name__}.{m.name}"), "METHOD", None)
        for m in pkgutil.iter_modules(__path__)
        if m.name != "base" and not m.name.startswith("_")
    ]
    for method in sorted((m for m in found if isinstance(m, Method)), key=lambda m: (m.rank, m.name)):
        register(method)


_discover()
