"""The backend registry: every module in this package that defines `BACKEND` (a `record.Backend`) is a target.

Adding a target is one module here plus a device profile (docs/architecture.md, rule 13). The modules hold data only;
the heavy runtimes stay imported inside the functions that use them (rule 8).
"""

from __future__ import annotations

import importlib
import pkgutil

from edgekd.backends.record import FORMAT_RUNTIME, Backend
from edgekd.errors import EdgekdError


def _discover() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "record":
            continue
        record = getattr(importlib.import_module(f"{__name__}.{info.name}"), "BACKEND", None)
        if isinstance(record, Backend):
            found[record.name] = record
    return found


REGISTRY: dict[str, Backend] = _discover()


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise EdgekdError(f"unknown backend {name!r}", key="backend", hint=f"allowed: {', '.join(REGISTRY)}") from None


def device_runtime_of(name: str | None) -> str | None:
    """The runtime a profile's device executes: only its artifacts are judged against the device's budgets. None
    for a manifest whose backend is unknown here (written by another edgekd version)."""
    record = REGISTRY.get(name or "")
    return record.device_runtime if record else None


__all__ = ["FORMAT_RUNTIME", "REGISTRY", "Backend", "device_runtime_of", "get", "names"]
