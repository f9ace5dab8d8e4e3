"""Audit a run's saved chain against its method's closed-form formula.

For every task the method's ``residuals`` are evaluated on the files alone: the
previous task's handoff, this task's initial and trained adapters, and its handoff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from continual_lora import atomic, checkpoint
from continual_lora.lora import LoraSpec
from continual_lora.methods import get_method

TOLERANCE = 1e-4


class ChainAuditError(AssertionError):
    pass


def audit_run(
    method: str,
    tasks: list[tuple[str | Path, str | Path, str | Path]],
    out_json: str | Path,
    method_settings: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """``tasks``: per task, in order, (handoff, init_lora, task_lora) files."""
    continual = get_method(method, method_settings)
    previous = None
    report = {"method": method, "tolerance": TOLERANCE, "tasks": []}
    for index, (handoff_path, init_path, trained_path) in enumerate(tasks, start=1):
        handoff = checkpoint.load_tensors(handoff_path)
        init = checkpoint.load_tensors(init_path).factors()
        trained = checkpoint.load_tensors(trained_path).factors()
        rank = next(iter(trained.values()))[0].shape[0]
        spec = LoraSpec(rank=rank, alpha=handoff.scale * rank)
        residuals = continual.residuals(previous, init, trained, handoff.tensors, spec, task=index)
        report["tasks"].append({"task": index, "residuals": residuals})
        log(f"task {index}: " + ", ".join(f"{name} {value:.2e}" for name, value in residuals.items()))
        previous = handoff.tensors
    worst = max(value for task in report["tasks"] for value in task["residuals"].values())
    report["max_residual"] = worst
    report["passed"] = worst <= TOLERANCE
    if not report["passed"]:
        raise ChainAuditError(f"{method}: a checkpoint departs from the method's formula by {worst:.3e}")
    atomic.write_json(out_json, report)
    return report
