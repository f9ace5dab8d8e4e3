"""Merge & Orthogonal Initialization, as the reference code does it.

One accumulated adapter (Ahat, Bhat) is kept. From task 2 on, W0 + scale*Bhat Ahat is
fused and frozen, and the new adapter starts with B = 0 and every length-r column of
A replaced by a unit vector orthogonal to the same column of Ahat: the last right
singular vector of that column seen as a 1 x r matrix. After training the factors are
summed, so the model after task t is W0 + scale * Bhat_t Ahat_t, cross terms included.

Which model is evaluated after task t the reference code leaves open (its evaluation
script loads a full pipeline from the task's folder, which ortho_init never writes).
``evaluate: handoff`` (the default) evaluates the model task t+1 starts from,
W0 + scale * Bhat_t Ahat_t; ``evaluate: trained`` the model task t was trained as,
W0 + scale * (Bhat_{t-1} Ahat_{t-1} + B_t A_t), without the cross terms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from continual_lora.lora import (
    Factors,
    LoraSpec,
    Tensors,
    factor_deltas,
    factors_to_state,
    stack_factors,
    state_to_factors,
)
from continual_lora.methods._shared import fresh_b_residual
from continual_lora.methods.base import ContinualMethod, LoraExport, TaskStart, max_abs, register

# What ortho_init is evaluated as after a task (the ``evaluate`` setting).
EVALUATED_MODELS = ("handoff", "trained")


def orthogonal_columns(a_hat: Tensor) -> Tensor:
    """For A of shape (r, n): an (r, n) matrix whose column j is a unit vector
    orthogonal to column j of A (the last right-singular vector of that column)."""
    columns = a_hat.double().T.unsqueeze(1)  # (n, 1, r): each column as a 1 x r matrix
    _, _, vh = torch.linalg.svd(columns, full_matrices=True)
    return vh[:, -1, :].T.float().contiguous()


@register
class OrthogonalInit(ContinualMethod):
    name = "ortho_init"
    handoff_format = "adapter"
    defaults = {"evaluate": "handoff"}
    evaluation_settings = ("evaluate",)

    def __init__(self, settings=None):
        super().__init__(settings)
        if self.settings["evaluate"] not in EVALUATED_MODELS:
            raise ValueError(
                f"method_settings.ortho_init.evaluate: {self.settings['evaluate']!r} is not one of "
                f"{', '.join(EVALUATED_MODELS)}"
            )

    @property
    def evaluates_handoff(self) -> bool:
        return self.settings["evaluate"] == "handoff"

    def evaluated_update(self, handoff: Tensors, trained: Factors, scale: float, device=None) -> Tensors:
        previous = self._accumulated_before(handoff, trained)
        before, update = factor_deltas(previous, scale, device), factor_deltas(trained, scale, device)
        return {m: before[m] + update[m] for m in update}

    def export(self, handoff: Tensors, task_adapters: list[Factors], scale: float) -> LoraExport:
        if self.evaluates_handoff:
            return LoraExport(state_to_factors(handoff), scale)
        # Scale * (Bhat_{t-1} Ahat_{t-1} + B_t A_t): the two adapters side by side, rank 2r.
        trained = task_adapters[-1]
        return LoraExport(stack_factors([self._accumulated_before(handoff, trained), trained]), scale)

    @staticmethod
    def _accumulated_before(handoff: Tensors, trained: Factors) -> Factors:
        """The summed factors minus this task's: the previous accumulated adapter (to
        float32 rounding), whose product the task was trained on top of."""
        summed = state_to_factors(handoff)
        return {m: (summed[m][0] - a, summed[m][1] - b) for m, (a, b) in trained.items()}

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        if previous is None:
            return TaskStart(init=fresh)
        accumulated = state_to_factors(previous)
        init = {
            module: (orthogonal_columns(a_hat), torch.zeros_like(b_hat))
            for module, (a_hat, b_hat) in accumulated.items()
        }
        return TaskStart(init=init, frozen_delta=factor_deltas(accumulated, spec.scale))

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        if previous is None:
            return factors_to_state(trained)
        accumulated = state_to_factors(previous)
        return factors_to_state(
            {m: (accumulated[m][0] + a, accumulated[m][1] + b) for m, (a, b) in trained.items()}
        )

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        checks = {"fresh_B_is_zero": fresh_b_residual(init)}
        if previous is None:
            checks["handoff_is_trained_adapter"] = max_abs(handoff, factors_to_state(trained))
            return checks
        worst_cos, worst_norm = 0.0, 0.0
        expected: Tensors = {}
        for module, (a, b) in trained.items():
            a_hat = previous[f"{module}.lora_A.weight"].double()
            b_hat = previous[f"{module}.lora_B.weight"].double()
            a0 = init[module][0].double()
            cos = (a0 * a_hat).sum(0) / (a0.norm(dim=0) * a_hat.norm(dim=0)).clamp_min(1e-30)
            worst_cos = max(worst_cos, float(cos.abs().max()))
            worst_norm = max(worst_norm, float((a0.norm(dim=0) - 1).abs().max()))
            expected[f"{module}.lora_A.weight"] = a_hat + a.double()
            expected[f"{module}.lora_B.weight"] = b_hat + b.double()
        checks["init_columns_orthogonal_abs_cos"] = worst_cos
        checks["init_columns_unit_norm"] = worst_norm
        checks["handoff_is_sum_of_factors"] = max_abs(handoff, expected)
        return checks
