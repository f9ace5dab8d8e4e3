"""Orthogonal subspaces across every earlier task, O-LoRA-style (Wang et al.,
"Orthogonal Subspace Learning for Language Model Continual Learning", arXiv 2310.14152),
within the regime.

The one adapter handed on is every task's adapter stacked (A's rows on top of each
other, B's columns side by side), so the model after task t is
W0 + scale * (B_1 A_1 + ... + B_t A_t), the sum merge_and_init fuses, and the rows of
the stacked A span the inputs every earlier task has written to. Task t fuses that
adapter into the frozen base and trains a fresh one with O-LoRA's penalty on the
overlap of its A with all of them:

    weight * sum over modules of sum_ij | (A_t Ahat_{t-1}^T)_ij |

ortho_init makes only the initial A orthogonal, column by column, to the previous
sum; this keeps the whole training run near the span of every earlier task's A. The
handed-on adapter grows by ``lora.rank`` per task (an adapter of rank t * r).
"""

from __future__ import annotations

import torch

from continual_lora.lora import Factors, LoraSpec, Tensors, factor_deltas, factors_to_state, stack_factors, state_to_factors
from continual_lora.methods._shared import fresh_b_residual
from continual_lora.methods.base import ContinualMethod, LoraExport, Penalty, TaskStart, max_abs, register


class SubspaceOverlapPenalty(Penalty):
    """weight * sum_m sum |A_m Ahat_m^T| for the earlier tasks' stacked ``a_hat``."""

    def __init__(self, a_hat: Tensors, weight: float):
        self.a_hat, self.weight = a_hat, weight

    def __call__(self, factors: Factors) -> torch.Tensor:
        return self.weight * sum((a @ self.a_hat[m].T).abs().sum() for m, (a, _) in factors.items())

    def to(self, device) -> SubspaceOverlapPenalty:
        return SubspaceOverlapPenalty({m: a.to(device) for m, a in self.a_hat.items()}, self.weight)


@register
class OrthogonalSubspaces(ContinualMethod):
    name = "o_lora"
    handoff_format = "adapter"
    defaults = {"weight": 0.5}

    def __init__(self, settings=None):
        super().__init__(settings)
        self.weight = self._number("weight", low=0.0)

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        if previous is None:
            return TaskStart(init=fresh)
        stacked = state_to_factors(previous)
        penalty = SubspaceOverlapPenalty({m: a for m, (a, _) in stacked.items()}, self.weight) if self.weight > 0 else None
        return TaskStart(init=fresh, frozen_delta=factor_deltas(stacked, spec.scale), penalty=penalty)

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        if previous is None:
            return factors_to_state(trained)
        return factors_to_state(stack_factors([state_to_factors(previous), trained]))

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        return LoraExport(state_to_factors(handoff), scale)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        expected: Tensors = {}
        for module, (a, b) in trained.items():
            if previous is not None:
                a = torch.cat([previous[f"{module}.lora_A.weight"], a])
                b = torch.cat([previous[f"{module}.lora_B.weight"], b], dim=1)
            expected[f"{module}.lora_A.weight"], expected[f"{module}.lora_B.weight"] = a, b
        if set(handoff) != set(expected) or any(handoff[k].shape != v.shape for k, v in expected.items()):
            return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_stacks_previous_and_trained": float("inf")}
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_stacks_previous_and_trained": max_abs(handoff, expected)}
