"""Magnitude-based merging (MagMax), as the reference code does it.

A fresh adapter is trained on W_{t-1}; then, per weight element, whichever of the
new update delta_t = scale * B_t A_t and the running task vector tau_{t-1} =
W_{t-1} - W0 is larger in magnitude is kept, ties going to delta_t.
"""

from __future__ import annotations

import torch

from continual_lora.lora import Factors, LoraSpec, Tensors, factor_deltas
from continual_lora.methods._shared import delta_state, fresh_b_residual, state_deltas
from continual_lora.methods.base import ContinualMethod, TaskStart, register


@register
class MagnitudeMerge(ContinualMethod):
    name = "magmax"
    handoff_format = "delta"

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        return TaskStart(init=fresh, frozen_delta=state_deltas(previous))

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec) -> Tensors:
        update = factor_deltas(trained, spec.scale)
        if previous is None:
            return delta_state(update)
        tau = state_deltas(previous)
        return delta_state({m: torch.where(d.abs() >= tau[m].abs(), d, tau[m]) for m, d in update.items()})

    def residuals(self, previous, init, trained, handoff, spec) -> dict[str, float]:
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
