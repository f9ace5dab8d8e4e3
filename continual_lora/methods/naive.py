"""Naive continual fine-tuning: one adapter trained on and on, over a frozen W0."""

from __future__ import annotations

from continual_lora.lora import Factors, LoraSpec, Tensors, factors_to_state, state_to_factors
from continual_lora.methods._shared import fresh_b_residual
from continual_lora.methods.base import ContinualMethod, LoraExport, TaskStart, max_abs, register


@register
class NaiveFineTuning(ContinualMethod):
    name = "naive"
    handoff_format = "adapter"

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        if previous is None:
            return TaskStart(init=fresh)
        return TaskStart(init=state_to_factors(previous))

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        return LoraExport(state_to_factors(handoff), scale)

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        return factors_to_state(trained)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        checks = {"handoff_is_trained_adapter": max_abs(handoff, factors_to_state(trained))}
        if previous is None:
            checks["fresh_B_is_zero"] = fresh_b_residual(init)
        else:
            checks["starts_from_previous_adapter"] = max_abs(factors_to_state(init), previous)
        return checks
