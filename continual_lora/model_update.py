"""A model's update W - W0, held inside the UNet it updates.

In float32 the update is added to the weights in place, as the reference code fuses
its adapters (no copy of the model). In 16-bit weights that would lose much of it: a
merged update is small next to W0, and rounding W0 + update to bfloat16's 8
significant bits drops every element smaller than half a unit of W0's last place
(19 % of them for a merge_and_init update 1 % of W0's size, measured on the tiny
model; float16: 2.5 %). So a 16-bit layer keeps W0 as it is and the update beside it
in float32 (what checkpoints are made of, exactly), and adds ``update @ x`` to its
output, computed in bfloat16: every element of the update reaches the output with its
own 8 significant bits, none rounded away against W0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from continual_lora.lora import Tensors, base_layer

# The attribute of a 16-bit layer that holds its float32 update (None: switched off);
# a layer that has it has the forward hook that adds it.
UPDATE = "continual_lora_update"


def apply_update(unet: nn.Module, deltas: Tensors) -> None:
    """Add ``deltas`` ({module: W - W0}) to the UNet: into float32 weights in place, and
    beside 16-bit weights in float32. One module at a time, so a GPU never holds a
    second copy of them all."""
    layers = _layers(unet, deltas)
    with torch.no_grad():
        for name, delta in deltas.items():
            layer = layers[name]
            delta = delta.to(device=layer.weight.device, dtype=torch.float32)
            if layer.weight.dtype == torch.float32:
                layer.weight += delta
            else:
                hold_beside(layer, delta)


def hold_beside(layer: nn.Module, delta: torch.Tensor) -> None:
    """Keep ``delta`` beside ``layer``'s weight in float32 and add ``delta @ x`` to its
    output (the 16-bit path of ``apply_update``, on any layer)."""
    if not hasattr(layer, UPDATE):
        setattr(layer, UPDATE, None)
        layer.register_forward_hook(_add_update)
    held = getattr(layer, UPDATE)
    setattr(layer, UPDATE, delta.float().clone() if held is None else held + delta.float())


def held_update(layer: nn.Module) -> torch.Tensor | None:
    """The float32 update a 16-bit layer holds beside its weight, if any."""
    return getattr(base_layer(layer), UPDATE, None)


def _add_update(layer: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    update = getattr(layer, UPDATE)
    if update is None:
        return output
    x = args[0]
    if torch.is_autocast_enabled(x.device.type):
        # Autocast casts the update to its own precision.
        return output + F.linear(x, update.to(x.device))
    # The product in bfloat16, as autocast would take it: each element of the update
    # keeps its 8 significant bits, since it is not rounded against W0, and none is
    # flushed to zero (bfloat16 has float32's range; float16 would lose the smallest),
    # and the product runs on the 16-bit kernels. In float32 it made float16 sampling
    # of SDXL 3 times slower than a model with the update added in (benchmarks/README.md).
    # A float32 layer (hold_beside on any layer) keeps its float32 product.
    compute = torch.float32 if x.dtype == torch.float32 else torch.bfloat16
    product = F.linear(x.to(compute), update.to(device=x.device, dtype=compute))
    return output + product.to(output.dtype)


@contextmanager
def base_model(unet: nn.Module, deltas: Tensors) -> Iterator[nn.Module]:
    """Within the block the UNet computes W0: ``deltas`` subtracted from float32 weights
    in place (restored afterwards from a copy of those layers only, bit-exact, unlike
    adding them again), and 16-bit layers' updates switched off. Also after an error."""
    layers = _layers(unet, deltas)
    restore: list[tuple[nn.Module, torch.Tensor | None, torch.Tensor | None]] = []
    try:
        with torch.no_grad():
            for name, layer in layers.items():
                held = getattr(layer, UPDATE, None)
                if held is not None:
                    restore.append((layer, None, held))
                    setattr(layer, UPDATE, None)
                else:
                    restore.append((layer, layer.weight.detach().clone(), None))
                    layer.weight -= deltas[name].to(device=layer.weight.device, dtype=layer.weight.dtype)
        yield unet
    finally:
        with torch.no_grad():
            for layer, weight, held in restore:
                if held is not None:
                    setattr(layer, UPDATE, held)
                else:
                    layer.weight.copy_(weight)


def _layers(unet: nn.Module, deltas: Tensors) -> dict[str, nn.Module]:
    modules = dict(unet.named_modules())
    missing = [name for name in deltas if name not in modules]
    if missing:
        raise KeyError(f"the checkpoint names module {missing[0]!r}, which this UNet does not have")
    return {name: base_layer(modules[name]) for name in deltas}
