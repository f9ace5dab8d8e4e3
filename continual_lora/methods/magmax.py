"""Magnitude-based merging (MagMax), as the reference code does it.

A fresh adapter is trained on W_{t-1}; then, per weight element, whichever of the
new update delta_t = scale * B_t A_t and the running task vector tau_{t-1} =
W_{t-1} - W0 is larger in magnitude is kept, ties going to delta_t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from continual_lora.methods._shared import DeltaMerging, fresh_b_residual
from continual_lora.methods.base import register


@register
class MagnitudeMerge(DeltaMerging):
    name = "magmax"

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        return torch.where(delta.abs() >= tau.abs(), delta, tau)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        checks = {"fresh_B_is_zero": fresh_b_residual(init)}
        magnitude_error, choice_error, tie_error = 0.0, 0.0, 0.0
        for module, (a, b) in trained.items():
            delta = (spec.scale * (b.double() @ a.double())).float()
            kept = handoff[f"{module}.weight"]
            tau = previous[f"{module}.weight"] if previous is not None else torch.zeros_like(delta)
            # The kept value is one of the two candidates, the larger in magnitude...
            magnitude_error = max(magnitude_error, float((kept.abs() - torch.maximum(delta.abs(), tau.abs())).abs().max()))
            choice_error = max(choice_error, float(torch.minimum((kept - delta).abs(), (kept - tau).abs()).max()))
            # ...and the new update wherever the two tie.
            ties = delta.abs() == tau.abs()
            if ties.any():
                tie_error = max(tie_error, float((kept[ties] - delta[ties]).abs().max()))
        checks["handoff_has_larger_magnitude"] = magnitude_error
        checks["handoff_is_one_candidate"] = choice_error
        checks["ties_go_to_new_update"] = tie_error
        return checks
