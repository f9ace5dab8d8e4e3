"""Small conversions that several methods share."""

from __future__ import annotations

from continual_lora.lora import Factors, Tensors

_WEIGHT = ".weight"


def state_deltas(state: Tensors | None) -> Tensors:
    """``{module}.weight`` keys of a delta handoff to ``{module}`` keys (empty for none)."""
    if state is None:
        return {}
    return {key.removesuffix(_WEIGHT): value for key, value in state.items()}


def delta_state(deltas: Tensors) -> Tensors:
    return {f"{module}{_WEIGHT}": value.float().contiguous() for module, value in deltas.items()}


def fresh_b_residual(init: Factors) -> float:
    """A fresh adapter starts with B = 0: its largest |B| entry."""
    return max(float(b.abs().max()) for _, b in init.values())
