"""TIES merging (Yadav et al., "TIES-Merging", arXiv 2306.01708) of the running task
vector and each new update, with peft's ``ties``.

A fresh adapter is trained on the frozen W_{t-1}; then tau_{t-1} = W_{t-1} - W0 and
delta_t = scale * B_t A_t are each trimmed to their ``density`` largest-magnitude
entries, every entry's sign is elected (by the sum of the trimmed values,
``majority_sign_method: total``, or by the count of signs, ``frequency``), and each
entry of tau_t is the sum of the ``weights``-weighted trimmed values that agree with
it divided by how many agree (zero where none does). Where both agree with weights
[1, 1] the result is their mean, not their sum, as TIES merges task vectors.
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
            # Rounded as the job rounds the update, so that trimming sees the same values.
            delta = spec.scale * (b.double() @ a.double()).float()
            tau = previous_task_vector(previous, module, delta).float()
            error = max(error, float(self._closest_merge_error(tau.double(), delta.double(), handoff[f"{module}.weight"].double()).max()))
        return {"fresh_B_is_zero": fresh_b_residual(init), "handoff_is_ties_merge": error}

    def _trim_choices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` trimmed to its ``density`` largest magnitudes, twice: keeping and dropping
        the entries that tie with the cut-off value, where any top-k may pick either."""
        k = int(self.density * x.numel())
        if k == 0:
            return torch.zeros_like(x), torch.zeros_like(x)
        cut = x.abs().flatten().kthvalue(x.numel() - k + 1).values
        above = torch.where(x.abs() > cut, x, 0.0)
        return torch.where(x.abs() >= cut, x, 0.0), above

    def _closest_merge_error(self, tau: Tensor, delta: Tensor, merged: Tensor) -> Tensor:
        """Per entry, |merged - the TIES merge| for the closest of the trims a top-k may
        make, the merge written out entry by entry in float64."""
        errors = [
            (merged - self._merge_trimmed(t, d)).abs()
            for t in self._trim_choices(tau)
            for d in self._trim_choices(delta)
        ]
        return torch.stack(errors).min(dim=0).values

    def _merge_trimmed(self, tau: Tensor, delta: Tensor) -> Tensor:
        if self.settings["majority_sign_method"] == "total":
            elected = torch.where(tau + delta >= 0, 1.0, -1.0)
        else:
            elected = torch.where(tau.sign() + delta.sign() >= 0, 1.0, -1.0)
        agree = [x.sign() == elected for x in (tau, delta)]
        summed = sum(w * x * m for w, x, m in zip(self.weights, (tau, delta), agree))
        return summed / (agree[0].double() + agree[1].double()).clamp_min(1.0)
