"""Small conversions that several methods share."""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor

from continual_lora.lora import Factors, LoraSpec, Tensors, deltas_to_state, factor_deltas, state_to_deltas
from continual_lora.methods.base import ContinualMethod, FusedExport, ModelExport, TaskStart


def fresh_b_residual(init: Factors) -> float:
    """A fresh adapter starts with B = 0: its largest |B| entry."""
    return max(float(b.abs().max()) for _, b in init.values())


class DeltaMerging(ContinualMethod):
    """A fresh adapter trained on the frozen W_{t-1}, its update then merged into the
    running task vector tau = W - W0, which is what is handed on."""

    handoff_format = "delta"

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        return TaskStart(init=fresh, frozen_delta=state_to_deltas(previous))

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec) -> Tensors:
        tau = state_to_deltas(previous)
        update = factor_deltas(trained, spec.scale)
        return deltas_to_state({m: d if m not in tau else self.merge(tau[m], d) for m, d in update.items()})

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> ModelExport:
        """The task vector fused into the model: in general it has full rank."""
        return FusedExport(state_to_deltas(handoff))

    @abstractmethod
    def merge(self, tau: Tensor, delta: Tensor) -> Tensor:
        """The new task vector from the previous one and this task's update scale * B A."""
