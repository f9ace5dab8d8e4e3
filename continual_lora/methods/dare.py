"""DARE (Yu et al., "Language Models are Super Mario", arXiv 2311.03099): drop and
rescale the new update before merging it, with peft's ``dare_linear``.

A fresh adapter is trained on the frozen W_{t-1}; then each entry of its update
delta_t = scale * B_t A_t is kept with probability ``density`` and divided by it
(zero otherwise), and the result, times ``weight``, is added: W_t = W_{t-1} +
weight * drop(delta_t) / density. Only the new update is dropped: the task vector
already handed on is kept whole, since dropping it again at every task would thin
out the first tasks' updates geometrically. The drop mask of task t is drawn from
``seed`` and t alone, so a rerun draws the same one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from continual_lora.lora import Factors, LoraSpec, Tensors
from continual_lora.methods._shared import DeltaMerging, fresh_b_residual, previous_task_vector
from continual_lora.methods.base import register

# How far (in standard errors of a binomial) the kept fraction may stray from density.
KEPT_FRACTION_SIGMAS = 6.0


@register
class DropAndRescale(DeltaMerging):
    name = "dare"
    defaults = {"density": 0.5, "weight": 1.0, "seed": 0}

    def __init__(self, settings=None):
        super().__init__(settings)
        self.density = self._number("density", low=0.0, high=1.0, low_open=True)
        self.weight = self._number("weight", low=0.0, low_open=True)
        if not isinstance(self.settings["seed"], int) or isinstance(self.settings["seed"], bool):
            raise ValueError(f"method_settings.dare.seed: {self.settings['seed']!r} is not an integer")

    def hand_on(self, previous: Tensors | None, trained: Factors, spec: LoraSpec, *, task: int) -> Tensors:
        # peft draws the mask from torch's global generator: seeded here for this task
        # alone, and restored afterwards so that nothing else's draws move.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings["seed"] * 1_000_003 + task)
            return super().hand_on(previous, trained, spec, task=task)

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        from peft.utils.merge_utils import dare_linear

        return tau + dare_linear([delta], torch.tensor([self.weight], dtype=delta.dtype), self.density)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        entry_error, kept, total = 0.0, 0, 0
        for module, (a, b) in trained.items():
            delta = spec.scale * (b.double() @ a.double())
            added = handoff[f"{module}.weight"].double() - previous_task_vector(previous, module, delta)
            rescaled = self.weight * delta / self.density
            # Every entry of the added update is either dropped or the rescaled one.
            entry_error = max(entry_error, float(torch.minimum(added.abs(), (added - rescaled).abs()).max()))
            kept += int(((added - rescaled).abs() < added.abs()).sum())
            total += added.numel()
        # The kept fraction is a binomial draw: beyond many standard errors, not chance.
        spread = KEPT_FRACTION_SIGMAS * math.sqrt(self.density * (1 - self.density) / total)
        return {
            "fresh_B_is_zero": fresh_b_residual(init),
            "update_entries_dropped_or_rescaled": entry_error,
            "kept_fraction_beyond_chance": max(0.0, abs(kept / total - self.density) - spread),
        }
