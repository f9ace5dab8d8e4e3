"""Merge & Initialization: a fresh adapter per task, fused into the model after it.

W_t = W_{t-1} + scale * B_t A_t, so the handoff W_t - W0 is the running sum of the
task updates.
"""

from __future__ import annotations

from continual_lora.lora import Factors, LoraSpec, Tensors, factor_deltas
from continual_lora.methods.base import ContinualMethod, TaskStart, max_abs, register
from continual_lora.methods._shared import delta_state, fresh_b_residual, state_deltas


@register
class MergeAndInit(ContinualMethod):
    name = "merge_and_init"
    handoff_format = "delta"

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        return TaskStart(init=fresh, frozen_delta=state_deltas(previous))

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec) -> Tensors:
        update = factor_deltas(trained, spec.scale)
        before = state_deltas(previous)
        return delta_state({m: before.get(m, 0) + d for m, d in update.items()})

    def residuals(self, previous, init, trained, handoff, spec) -> dict[str, float]:
        expected = {}
        for module, (a, b) in trained.items():
            fused = spec.scale * (b.double() @ a.double())
            if previous is not None:
                fused = fused + previous[f"{module}.weight"].double()
            expected[f"{module}.weight"] = fused
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_previous_plus_update": max_abs(handoff, expected)}
