"""Metric backends, one module each, found through a registry.

Every module in this package that defines a concrete ``Metric`` (one with a ``name``)
is imported here, so adding a metric means adding one file. A backend imports the
libraries of its network (transformers, diffusers) when a metric is built, not at
module level: the registry is read by the config checks of every `snakemake` call and
by the table and figure jobs, which should not pay seconds of imports for it.
"""

from __future__ import annotations

import importlib
import pkgutil

from continual_lora.scoring.base import (
    METRICS,
    EmbeddingMetric,
    Metric,
    ModelHandle,
    ScoringInput,
    get_metric,
    paired_mean_cosine,
    pairwise_mean_cosine,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METRICS",
    "EmbeddingMetric",
    "Metric",
    "ModelHandle",
    "ScoringInput",
    "get_metric",
    "paired_mean_cosine",
    "pairwise_mean_cosine",
]
