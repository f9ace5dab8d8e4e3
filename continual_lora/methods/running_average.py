"""A running average of task vectors: a fresh adapter is trained on the frozen
W_{t-1}, then tau_t = ((t - 1) tau_{t-1} + scale * B_t A_t) / t, so after t tasks the
model is W0 plus the mean of the t task updates, each weighing 1/t whenever it came.
The merge is peft's ``task_arithmetic`` with weights ((t - 1) / t, 1 / t).
"""

from __future__ import annotations

import torch
from torch import Tensor

from continual_lora.lora import Factors, Tensors, stack_factors
from continual_lora.methods._shared import DeltaMerging, closed_form_updates, fresh_b_residual, previous_task_vector
from continual_lora.methods.base import LoraExport, register


@register
class RunningAverage(DeltaMerging):
    name = "running_average"

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        from peft.utils.merge_utils import task_arithmetic

        weights = torch.tensor([(task - 1) / task, 1 / task], dtype=delta.dtype, device=delta.device)
        return task_arithmetic([tau, delta], weights)

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        """The mean of the t task updates: every task's B divided by t, stacked to rank t * r."""
        n = len(task_adapters)
        return LoraExport(stack_factors([{m: (a, b / n) for m, (a, b) in f.items()} for f in task_adapters]), scale)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        error = 0.0
        for module, update in closed_form_updates(trained, spec).items():
            expected = (previous_task_vector(previous, module, update) * (task - 1) + update) / task
            error = max(error, float((handoff[f"{module}.weight"].double() - expected).abs().max()))
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_running_mean": error}
