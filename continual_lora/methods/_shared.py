"""Small conversions that several methods share."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from continual_lora.lora import Factors, LoraSpec, Tensors, deltas_to_state, factor_deltas, state_to_deltas
from continual_lora.methods.base import ContinualMethod, FusedExport, ModelExport, TaskStart


def fresh_b_residual(init: Factors) -> float:
    """A fresh adapter starts with B = 0: its largest |B| entry."""
    return max(float(b.abs().max()) for _, b in init.values())


def closed_form_updates(trained: Factors, spec: LoraSpec) -> dict[str, Tensor]:
    """Each module's task update scale * B A, in float64, for an audit's closed form."""
    return {module: spec.scale * (b.double() @ a.double()) for module, (a, b) in trained.items()}


def previous_task_vector(previous: Tensors | None, module: str, like: Tensor) -> Tensor:
    """W_{t-1} - W0 of ``module`` from a delta handoff, in float64 (zero before task 1)."""
    if previous is None:
        return torch.zeros_like(like, dtype=torch.float64)
    return previous[f"{module}.weight"].double()


class DeltaMerging(ContinualMethod):
    """A fresh adapter trained on the frozen W_{t-1}, its update then merged into the
    running task vector tau = W - W0, which is what is handed on."""

    handoff_format = "delta"

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        return TaskStart(init=fresh, frozen_delta=state_to_deltas(previous))

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        tau = state_to_deltas(previous)
        update = factor_deltas(trained, spec.scale)
        # Before the first task the task vector is zero (W_0 - W0).
        return deltas_to_state({m: self.merge(tau.get(m, torch.zeros_like(d)), d, task) for m, d in update.items()})

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> ModelExport:
        """The task vector fused into the model: in general it has full rank."""
        return FusedExport(state_to_deltas(handoff))

    @abstractmethod
    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        """The task vector after task ``task`` from the previous one ``tau`` (zero before
        the first task) and this task's update ``delta`` = scale * B A."""
