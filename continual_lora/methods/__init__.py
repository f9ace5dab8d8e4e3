"""Continual-learning methods, one module each, found through a registry.

Every module in this package that defines a ``@register``-ed ``ContinualMethod``
is imported here, so adding a method means adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from continual_lora.methods.base import (
    METHODS,
    ContinualMethod,
    FusedExport,
    LoraExport,
    ModelExport,
    Penalty,
    TaskStart,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def get_method(name: str, settings: dict[str, Any] | None = None) -> ContinualMethod:
    """The method ``name`` with its ``method_settings`` (defaults where unset)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}") from None
    return cls(settings)


__all__ = [
    "METHODS",
    "ContinualMethod",
    "FusedExport",
    "LoraExport",
    "ModelExport",
    "Penalty",
    "TaskStart",
    "get_method",
    "register",
]
