"""Merge & Initialization: a fresh adapter per task, fused into the model after it.

W_t = W_{t-1} + scale * B_t A_t, so the handoff W_t - W0 is the running sum of the
task updates.
"""

from __future__ import annotations

from torch import Tensor

from continual_lora.lora import Factors, Tensors, stack_factors
from continual_lora.methods._shared import DeltaMerging, fresh_b_residual
from continual_lora.methods.base import LoraExport, max_abs, register


@register
class MergeAndInit(DeltaMerging):
    name = "merge_and_init"

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        return tau + delta

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        """W_t - W0 is the sum of t rank-r updates: exactly one adapter of rank t * r."""
        return LoraExport(stack_factors(task_adapters), scale)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        expected = {}
        for module, (a, b) in trained.items():
            fused = spec.scale * (b.double() @ a.double())
            if previous is not None:
                fused = fused + previous[f"{module}.weight"].double()
            expected[f"{module}.weight"] = fused
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_previous_plus_update": max_abs(handoff, expected)}
