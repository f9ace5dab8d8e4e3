"""Experiments, runs and task orders, as the config declares them.

A run is one (task order seed, training seed) pair, named ``order{O}_seed{S}``. Its
task order is the experiment's task list shuffled with ``random.seed(O)``, as
the paper's code does (docs/reproduction.md).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from continual_lora.data.concepts import Concept
from continual_lora.data.sources import DatasetMissing, DatasetSource, make_source

RUN_PATTERN = re.compile(r"order(?P<order>\d+)_seed(?P<seed>\d+)")


# What the paper scores each domain with, used where an experiment names no metrics.
PAPER_METRICS = {"objects": ("clip_i", "dino"), "styles": ("csd", "dino")}


def metric_names(experiment: dict[str, Any]) -> list[str]:
    """The metric backends an experiment scores with: its own list, else the paper's."""
    return list(experiment.get("metrics") or PAPER_METRICS[experiment["domain"]])


def run_name(order_seed: int, training_seed: int) -> str:
    return f"order{order_seed}_seed{training_seed}"


def parse_run(name: str) -> tuple[int, int]:
    match = RUN_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a run name of the form order<O>_seed<S>")
    return int(match["order"]), int(match["seed"])


def task_order(tasks: list[Concept], order_seed: int) -> list[Concept]:
    """The tasks shuffled as ``random.seed(order_seed); random.shuffle(tasks)`` would,
    without touching the global random state."""
    shuffled = list(tasks)
    random.Random(order_seed).shuffle(shuffled)
    return shuffled


@dataclass
class Experiment:
    name: str
    domain: str
    n_tasks: int
    order_seeds: list[int]
    training_seeds: list[int]
    dataset: dict[str, Any] = field(default_factory=dict)
    # A dry run shows the graph before the data is there, with stand-in concepts.
    missing_data_ok: bool = False

    @cached_property
    def source(self) -> DatasetSource:
        return make_source(self.domain, self.dataset)

    @cached_property
    def concepts(self) -> list[Concept]:
        """The experiment's task list in the dataset's canonical order (stand-ins,
        named so, where the dataset is missing and ``missing_data_ok``)."""
        try:
            return self.source.concepts(self.n_tasks)
        except DatasetMissing:
            if not self.missing_data_ok:
                raise
            return self.source.placeholder_concepts(self.n_tasks)

    def concept(self, name: str) -> Concept:
        for concept in self.concepts:
            if concept.name == name:
                return concept
        raise KeyError(f"experiment {self.name!r} has no concept {name!r}")

    @property
    def runs(self) -> list[str]:
        return [run_name(o, s) for o in self.order_seeds for s in self.training_seeds]

    def tasks(self, run: str) -> list[Concept]:
        order_seed, _ = parse_run(run)
        return task_order(self.concepts, order_seed)

    def task(self, run: str, index: int) -> Concept:
        """The concept of task ``index`` (1-based) in ``run``."""
        return self.tasks(run)[index - 1]


def experiments_from_config(config: dict[str, Any], missing_data_ok: bool = False) -> dict[str, Experiment]:
    return {
        name: Experiment(
            name=name,
            domain=spec["domain"],
            n_tasks=spec["n_tasks"],
            order_seeds=list(spec["order_seeds"]),
            training_seeds=list(spec["training_seeds"]),
            dataset=dict(spec["dataset"]),
            missing_data_ok=missing_data_ok,
        )
        for name, spec in config["experiments"].items()
    }
