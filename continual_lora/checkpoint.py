"""The checkpoint contract of one trained task, and reading it back.

``{task}/checkpoint/`` holds:

- ``handoff.safetensors``: exactly what the method passes to the next task;
- ``task_lora.safetensors``: this task's trained adapter (analysis only);
- ``init_lora.safetensors``: that adapter before its first step;
- ``meta.json``: what was trained, how, and with which software.

Every safetensors file carries ``kind`` (``adapter`` or ``delta``) and ``scale``
(alpha / r) in its metadata, so turning a handoff into the model's weight update
needs nothing but the file itself.

An adapter file is a diffusers LoRA file, as ``save_lora_weights`` writes one: keys
``unet.{module}.lora_A.weight`` / ``lora_B.weight``, and the adapter's ``r``,
``lora_alpha`` and target modules in the ``lora_adapter_metadata`` that
``load_lora_weights`` reads, so that diffusers (and what reads its files) loads
exactly the model the pipeline evaluates. A delta file holds ``{module}.weight`` =
W - W0, the keys of the UNet's own state dict: no LoRA loader can take a full-rank
update, which ``continual_lora.export`` fuses into a model folder instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from continual_lora.atomic import atomic_output
from continual_lora import layout
from continual_lora.lora import Factors, Tensors, factor_deltas, factors_to_state, state_to_deltas, state_to_factors

# The folder's file names, as the workflow's layout names them.
HANDOFF, TASK_LORA, INIT_LORA, META = layout.HANDOFF_FILE, layout.TASK_LORA_FILE, layout.INIT_LORA_FILE, layout.META_FILE
CHECKPOINT_FILES = layout.CHECKPOINT_FILES


@dataclass
class StoredTensors:
    tensors: Tensors
    kind: str  # adapter or delta
    scale: float
    metadata: dict[str, str]

    def model_delta(self, device: str | torch.device | None = None) -> Tensors:
        """W - W0 per module for the model this file describes. An adapter's products
        are taken on ``device`` (default: the CPU, where the file was read); a delta
        file's tensors stay on the CPU, since ``apply_update`` moves them one module at
        a time and a copy of them all on a GPU would only raise its peak memory."""
        if self.kind == "adapter":
            return factor_deltas(state_to_factors(self.tensors), self.scale, device)
        if self.kind == "delta":
            return state_to_deltas(self.tensors)
        raise ValueError(f"unknown tensor-file kind {self.kind!r}")

    def factors(self) -> Factors:
        if self.kind != "adapter":
            raise ValueError("only an adapter file holds LoRA factors")
        return state_to_factors(self.tensors)


# diffusers' names: the component an adapter belongs to prefixes its keys, and the
# peft LoraConfig of the adapter is stored, prefixed the same way, under this key.
UNET_PREFIX = "unet."
LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata"
KINDS = ("adapter", "delta")


def adapter_config(factors: Factors, scale: float) -> dict:
    """The peft LoraConfig arguments of ``factors``: their rank, the alpha that gives
    ``scale`` at that rank, and every module by its full path, so that a loader adds
    layers to exactly these modules and no others whose names end alike."""
    ranks = {a.shape[0] for a, _ in factors.values()}
    if len(ranks) != 1:
        raise ValueError(f"an adapter file needs one rank for every module, not {sorted(ranks)}")
    (rank,) = ranks
    return {"r": rank, "lora_alpha": float(scale) * rank, "target_modules": sorted(factors)}


def save_tensors(path: str | Path, tensors: Tensors, kind: str, scale: float, **metadata: str) -> None:
    """Write a handoff-like tensor dict (``kind`` adapter: LoRA keys; delta: ``{module}.weight``)."""
    if kind == "adapter":
        save_adapter(path, state_to_factors(tensors), scale, **metadata)
    elif kind == "delta":
        _write(path, tensors, {"format": "pt", "kind": kind, "scale": repr(float(scale))}, metadata)
    else:
        raise ValueError(f"unknown tensor-file kind {kind!r}; expected one of {KINDS}")


def save_adapter(path: str | Path, factors: Factors, scale: float, **metadata: str) -> None:
    """Write ``factors`` (update ``scale * B @ A``) as a diffusers LoRA file."""
    config = {UNET_PREFIX + key: value for key, value in adapter_config(factors, scale).items()}
    state = {UNET_PREFIX + key: value for key, value in factors_to_state(factors).items()}
    own = {
        "format": "pt",  # safetensors' own convention for PyTorch tensors
        LORA_ADAPTER_METADATA_KEY: json.dumps(config, indent=2, sort_keys=True),
        "kind": "adapter",
        "scale": repr(float(scale)),
    }
    _write(path, state, own, metadata)


def _write(path: str | Path, tensors: Tensors, own: dict[str, str], metadata: dict[str, str]) -> None:
    meta = {**{k: str(v) for k, v in metadata.items()}, **own}
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}, str(tmp), metadata=meta)


def load_tensors(path: str | Path) -> StoredTensors:
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    kind = metadata.get("kind")
    if kind not in KINDS or "scale" not in metadata:
        if metadata.get("format") in KINDS:
            raise ValueError(
                f"{path} was written by an earlier version of this pipeline, before adapters were stored in "
                "diffusers' LoRA format; rerun the jobs that wrote it (snakemake --forcerun train_task)"
            )
        raise ValueError(f"{path} is not a checkpoint file of this pipeline (no kind/scale metadata)")
    if kind == "adapter":
        outside = sorted(key for key in tensors if not key.startswith(UNET_PREFIX))
        if outside:
            raise ValueError(f"{path} holds {outside[0]!r}, not a key of the UNet's adapter ({UNET_PREFIX}...)")
        tensors = {key.removeprefix(UNET_PREFIX): value for key, value in tensors.items()}
    return StoredTensors(tensors, kind, float(metadata["scale"]), metadata)
