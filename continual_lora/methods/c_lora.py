"""C-LoRA (Smith et al., "Continual Diffusion", arXiv 2304.06027), within the regime.

As merge_and_init, a fresh adapter is trained on the frozen W_{t-1} and its update is
then merged: W_t = W_{t-1} + scale * B_t A_t. Training adds C-LoRA's
self-regularization, which penalizes the new update where the accumulated update
W_{t-1} - W0 is already large:

    weight * sum over modules of || (W_{t-1} - W0) ⊙ (scale * B_t A_t) ||_F^2

The paper's sum of earlier adapters is here the task vector W_{t-1} - W0 the previous
task handed on, which is that sum, so no earlier adapter is needed. Unlike the paper,
the adapter sits on the configured ``lora.target_modules`` (C-LoRA trains the
cross-attention key and value projections only; set ``target_modules: [attn2.to_k,
attn2.to_v]`` for that) and the prompt's token is not learnt.
"""

from __future__ import annotations

import torch

from continual_lora.lora import Factors, LoraSpec, Tensors, state_to_deltas
from continual_lora.methods.base import Penalty, TaskStart, register
from continual_lora.methods.merge_and_init import MergeAndInit


class OverlapPenalty(Penalty):
    """weight * sum_m || tau_m ⊙ (scale * B_m A_m) ||^2 for the task vector ``tau``."""

    def __init__(self, tau: Tensors, scale: float, weight: float):
        self.tau, self.scale, self.weight = tau, scale, weight

    def __call__(self, factors: Factors) -> torch.Tensor:
        total = sum(((self.tau[m] * (self.scale * (b @ a))) ** 2).sum() for m, (a, b) in factors.items())
        return self.weight * total

    def to(self, device) -> OverlapPenalty:
        return OverlapPenalty({m: t.to(device) for m, t in self.tau.items()}, self.scale, self.weight)


@register
class ContinualSelfRegularized(MergeAndInit):
    name = "c_lora"
    defaults = {"weight": 1.0}

    def __init__(self, settings=None):
        super().__init__(settings)
        self.weight = self._number("weight", low=0.0)

    def start(self, previous: Tensors | None, fresh: Factors, spec: LoraSpec) -> TaskStart:
        task_start = super().start(previous, fresh, spec)
        if previous is not None and self.weight > 0:
            task_start.penalty = OverlapPenalty(state_to_deltas(previous), spec.scale, self.weight)
        return task_start
