"""DARE (Yu et al., "Language Models are Super Mario", arXiv 2311.03099): drop and
rescale the new update before merging it, with peft's ``dare_linear``.

A fresh adapter is trained on the frozen W_{t-1}; then each entry of its update
delta_t = scale * B_t A_t is kept with probability ``density`` and divided by it
(zero otherwise), and the result, times ``weight``, is added: W_t = W_{t-1} +
weight * drop(delta_t) / density. Only the new update is dropped: the task vector
already handed on is kept whole, since dropping it again at every task would thin
out the first tasks' updates geometrically. The drop mask of task t is drawn from
``seed`` and t alone (module by module in name order, from a seed salted so that it
shares no stream with training's), so a rerun, and the audit, draw the same one.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from continual_lora.lora import Factors, LoraSpec, Tensors
from continual_lora.methods._shared import DeltaMerging, fresh_b_residual, previous_task_vector
from continual_lora.methods.base import register


def mask_seed(seed: int, task: int) -> int:
    """The seed of task ``task``'s drop masks: a hash, so that no training seed draws
    the same stream (a task's fresh adapter comes from seed * 1_000_003 + task)."""
    return int.from_bytes(hashlib.sha256(f"dare/{seed}/{task}".encode()).digest()[:8], "little") >> 1


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
        # peft draws the mask from torch's global CPU generator: seeded here for this
        # task alone, and restored afterwards so that nothing else's draws move.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(mask_seed(self.settings["seed"], task))
            return super().hand_on(previous, dict(sorted(trained.items())), spec, task=task)

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        from peft.utils.merge_utils import dare_linear

        return tau + dare_linear([delta], torch.tensor([self.weight], dtype=delta.dtype), self.density)

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        generator = torch.Generator().manual_seed(mask_seed(self.settings["seed"], task))
        error = 0.0
        for module, (a, b) in sorted(trained.items()):
            delta = spec.scale * (b.double() @ a.double()).float()
            # The mask drawn again, as the job drew it: one Bernoulli(density) per entry.
            kept = torch.bernoulli(torch.full_like(delta, self.density), generator=generator)
            expected = previous_task_vector(previous, module, delta) + self.weight * kept.double() * delta.double() / self.density
            error = max(error, float((handoff[f"{module}.weight"].double() - expected).abs().max()))
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_previous_plus_kept_rescaled_update": error}
