"""TIES merging (Yadav et al., "TIES-Merging", arXiv 2306.01708) of the running task
vector and each new update, with peft's ``ties``.

A fresh adapter is trained on the frozen W_{t-1}; then tau_{t-1} = W_{t-1} - W0 and
delta_t = scale * B_t A_t are each trimmed to their ``density`` largest-magnitude
entries, every entry's sign is elected (by the sum of the trimmed values,
``majority_sign_method: total``, or by the count of signs, ``frequency``), and each
entry of tau_t is the mean of the ``weights``-weighted trimmed values that agree with
it (zero where none does). Where both agree the result is their (weighted) mean, not
their sum, as TIES merges task vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from continual_lora.methods._shared import DeltaMerging, fresh_b_residual, previous_task_vector
from continual_lora.methods.base import register

SIGN_METHODS = ("total", "frequency")


@register
class TiesMerging(DeltaMerging):
    name = "ties"
    defaults = {"density": 0.5, "weights": [1.0, 1.0], "majority_sign_method": "total"}

    def __init__(self, settings=None):
        super().__init__(settings)
        self.density = self._number("density", low=0.0, high=1.0, low_open=True)
        weights = self.settings["weights"]
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != 2
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
        ):
            raise ValueError(
                f"method_settings.ties.weights: {weights!r} is not two numbers >= 0 "
                "(the previous task vector's weight, then the new update's)"
            )
        self.weights = [float(w) for w in weights]
        if self.settings["majority_sign_method"] not in SIGN_METHODS:
            raise ValueError(
                f"method_settings.ties.majority_sign_method: {self.settings['majority_sign_method']!r} "
                f"is not one of {', '.join(SIGN_METHODS)}"
            )

    def merge(self, tau: Tensor, delta: Tensor, task: int) -> Tensor:
        from peft.utils.merge_utils import ties

        weights = torch.tensor(self.weights, dtype=delta.dtype)
        return ties([tau, delta], weights, self.density, self.settings["majority_sign_method"])

    def residuals(self, previous, init, trained, handoff, spec, *, task) -> dict[str, float]:
        error = 0.0
        for module, (a, b) in trained.items():
            # Rounded as the job rounds the update, so that trimming sees the same order.
            delta = spec.scale * (b.double() @ a.double()).float()
            tau = previous_task_vector(previous, module, delta).float()
            expected = self._closed_form(tau.double(), delta.double())
            error = max(error, float((handoff[f"{module}.weight"].double() - expected).abs().max()))
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_ties_merge": error}

    def _closed_form(self, tau: Tensor, delta: Tensor) -> Tensor:
        """The TIES merge of the two, written out entry by entry in float64."""
        trimmed = []
        for x in (tau, delta):
            k = int(self.density * x.numel())
            keep = torch.zeros(x.numel(), dtype=torch.bool)
            keep[x.abs().flatten().argsort(descending=True, stable=True)[:k]] = True
            trimmed.append(torch.where(keep.view_as(x), x, 0.0))
        if self.settings["majority_sign_method"] == "total":
            elected = torch.where(trimmed[0] + trimmed[1] >= 0, 1.0, -1.0)
        else:
            elected = torch.where(trimmed[0].sign() + trimmed[1].sign() >= 0, 1.0, -1.0)
        agree = [x.sign() == elected for x in trimmed]
        summed = sum(w * x * m for w, x, m in zip(self.weights, trimmed, agree))
        count = (agree[0].double() + agree[1].double()).clamp_min(1.0)
        return summed / count
