"""LoRA factors on the UNet's attention projections, in diffusers' module naming.

Factors are held as ``{module: (A, B)}`` with ``A`` of shape (r, in) and ``B`` of
shape (out, r); the update they make is ``scale * B @ A`` with ``scale = alpha / r``.
On disk they use the keys ``{module}.lora_A.weight`` and ``{module}.lora_B.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "task"

Factors = dict[str, tuple[Tensor, Tensor]]
Tensors = dict[str, Tensor]


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES

    @classmethod
    def from_config(cls, lora: dict) -> LoraSpec:
        """The adapter a config's ``lora:`` section describes."""
        return cls(lora["rank"], lora["alpha"], tuple(lora.get("target_modules", DEFAULT_TARGET_MODULES)))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def is_target(name: str, targets: tuple[str, ...] | list[str]) -> bool:
    """Whether module ``name`` is one of ``targets``: the same suffix rule peft applies
    to ``target_modules``, so both agree on the set."""
    return any(name == t or name.endswith("." + t) for t in targets)


def targeted_linears(unet: nn.Module, spec: LoraSpec) -> dict[str, nn.Linear]:
    """The plain (not yet adapted) linear layers that the LoRA adapter will wrap."""
    found = {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, nn.Linear) and is_target(name, spec.target_modules)
    }
    if not found:
        raise ValueError(
            f"lora.target_modules {list(spec.target_modules)} matches no linear layer of the UNet."
        )
    return found


def fresh_factors(shapes: dict[str, tuple[int, int]], rank: int, generator: torch.Generator) -> Factors:
    """A new adapter as the paper's code draws it (peft's gaussian init): A ~ N(0, (1/r)^2), B = 0.

    ``shapes`` maps a module to its (out_features, in_features). Modules are drawn in
    sorted order so the same generator state always gives the same factors.
    """
    factors: Factors = {}
    for name in sorted(shapes):
        out_features, in_features = shapes[name]
        a = torch.randn(rank, in_features, generator=generator) / rank
        factors[name] = (a, torch.zeros(out_features, rank))
    return factors


def linear_shapes(unet: nn.Module, spec: LoraSpec) -> dict[str, tuple[int, int]]:
    return {name: (m.out_features, m.in_features) for name, m in targeted_linears(unet, spec).items()}


def factor_deltas(factors: Factors, scale: float, device: str | torch.device | None = None) -> Tensors:
    """The weight update ``scale * B @ A`` of every module, as float32.

    The product is taken in float64 and rounded to float32, so a device's order of
    summation is far below float32's precision; ``device`` (default: where the factors
    are) is where it is taken and where the deltas stay, so a model on a GPU gets its
    update without a CPU product of every module.
    """
    device = torch.device(device) if device is not None else None
    # Apple's MPS has no float64; there the product is float32 (error ~1e-9 of deltas ~1e-2).
    wide = torch.float32 if device is not None and device.type == "mps" else torch.float64
    return {
        name: scale * (b.to(device, wide) @ a.to(device, wide)).float()
        for name, (a, b) in factors.items()
    }


def stack_factors(adapters: list[Factors]) -> Factors:
    """One adapter whose update is the sum of ``adapters``' updates at their common
    scale: per module, A's rows stacked and B's columns side by side, since
    B_1 A_1 + ... + B_n A_n = [B_1 ... B_n] [A_1; ...; A_n]. Its rank is the sum of theirs."""
    modules = set(adapters[0])
    if any(set(adapter) != modules for adapter in adapters):
        raise ValueError("adapters to stack must cover the same modules")
    return {
        m: (torch.cat([adapter[m][0] for adapter in adapters]), torch.cat([adapter[m][1] for adapter in adapters], dim=1))
        for m in sorted(modules)
    }


def factors_to_state(factors: Factors) -> Tensors:
    state: Tensors = {}
    for name, (a, b) in factors.items():
        state[f"{name}.lora_A.weight"] = a.contiguous()
        state[f"{name}.lora_B.weight"] = b.contiguous()
    return state


def state_to_factors(state: Tensors) -> Factors:
    modules = sorted({key.rsplit(".lora_", 1)[0] for key in state})
    try:
        return {m: (state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]) for m in modules}
    except KeyError as missing:
        raise ValueError(f"adapter state lacks {missing}: every module needs lora_A and lora_B") from None


_WEIGHT = ".weight"


def deltas_to_state(deltas: Tensors) -> Tensors:
    """Weight updates ``{module: W - W0}`` as a delta file stores them, ``{module}.weight``."""
    return {f"{module}{_WEIGHT}": value.float().contiguous() for module, value in deltas.items()}


def state_to_deltas(state: Tensors | None) -> Tensors:
    """A delta file's ``{module}.weight`` keys back to ``{module}`` (empty for none)."""
    if state is None:
        return {}
    return {key.removesuffix(_WEIGHT): value for key, value in state.items()}


def base_layer(module: nn.Module) -> nn.Module:
    """The layer whose weight is W: ``module`` itself, or the layer a peft adapter wraps."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def attach_adapter(unet: nn.Module, spec: LoraSpec, init: Factors) -> list[nn.Parameter]:
    """Wrap the targeted projections in a trainable peft LoRA adapter set to ``init``.

    Everything else in the UNet is frozen; the adapter's parameters are returned.
    """
    # Deferred, like peft's other use below: peft imports transformers, which costs a
    # job that only reads or applies factors seconds of start-up.
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(spec.target_modules),
        init_lora_weights=True,
    )
    unet.add_adapter(config, adapter_name=ADAPTER_NAME)
    layers = _lora_layers(unet)
    if set(layers) != set(init):
        raise ValueError("the initial adapter does not cover exactly the targeted modules")
    params: list[nn.Parameter] = []
    with torch.no_grad():
        for name, layer in layers.items():
            a, b = init[name]
            lora_a = layer.lora_A[ADAPTER_NAME].weight
            lora_b = layer.lora_B[ADAPTER_NAME].weight
            # Trainable factors stay in float32 whatever the UNet's precision.
            lora_a.data = a.to(device=lora_a.device, dtype=torch.float32).clone()
            lora_b.data = b.to(device=lora_b.device, dtype=torch.float32).clone()
            lora_a.requires_grad_(True)
            lora_b.requires_grad_(True)
            params += [lora_a, lora_b]
    return params


def read_factors(unet: nn.Module) -> Factors:
    """The current adapter factors, detached, on the CPU, in float32."""
    return {
        name: (
            layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu().clone(),
            layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu().clone(),
        )
        for name, layer in _lora_layers(unet).items()
    }


def live_factors(unet: nn.Module) -> Factors:
    """The adapter's trainable factors themselves (not copies), for a loss term on them."""
    return {
        name: (layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight)
        for name, layer in _lora_layers(unet).items()
    }


def _lora_layers(unet: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A
    }
