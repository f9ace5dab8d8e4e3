"""Task arithmetic with a scale (Ilharco et al., "Editing Models with Task Arithmetic",
arXiv 2212.04089), applied task by task: a fresh adapter is trained on the frozen
W_{t-1}, then W_t = W_{t-1} + scale_setting * (scale * B_t A_t). ``scale: 1`` is
merge_and_init; a smaller one damps every task's update alike. The merge is peft's
``task_arithmetic`` with weights (1, lambda).
"""

from __future__ import annotations

import torch
from torch import Tensor

from continual_lora.lora import Factors, Tensors, stack_factors
from continual_lora.methods._shared import DeltaMerging, closed_form_updates, fresh_b_residual, previous_task_vector
from continual_lora.methods.base import LoraExport, register


@register
class TaskArithmetic(DeltaMerging):
    name = "task_arithmetic"
    defaults = {"scale": 1.0}

    def __init__(self, settings=None):
        super().__init__(settings)
        self.lam = self._number("scale", low=0.0, low_open=True)

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        from peft.utils.merge_utils import task_arithmetic

        return task_arithmetic([tau, delta], torch.tensor([1.0, self.lam], dtype=delta.dtype, device=delta.device))

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        """lambda * (B_1 A_1 + ... + B_t A_t): every task's B scaled, stacked to rank t * r."""
        return LoraExport(stack_factors([{m: (a, self.lam * b) for m, (a, b) in f.items()} for f in task_adapters]), scale)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        error = 0.0
        for module, update in closed_form_updates(trained, spec).items():
            expected = previous_task_vector(previous, module, update) + self.lam * update
            error = max(error, float((handoff[f"{module}.weight"].double() - expected).abs().max()))
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_previous_plus_scaled_update": error}
