"""The checkpoint contract of one trained task, and reading it back.

``{task}/checkpoint/`` holds:

- ``handoff.safetensors``: exactly what the method passes to the next task;
- ``task_lora.safetensors``: this task's trained adapter (analysis only);
- ``init_lora.safetensors``: that adapter before its first step;
- ``meta.json``: what was trained, how, and with which software.

Every safetensors file carries ``format`` (``adapter`` or ``delta``) and ``scale``
(alpha / r) in its metadata, so turning a handoff into the model's weight update
needs nothing but the file itself.
"""

from __future__ import annotations

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
    format: str
    scale: float
    metadata: dict[str, str]

    def model_delta(self, device: str | torch.device | None = None) -> Tensors:
        """W - W0 per module for the model this file describes. An adapter's products
        are taken on ``device`` (default: the CPU, where the file was read); a delta
        file's tensors stay on the CPU, since ``apply_update`` moves them one module at
        a time and a copy of them all on a GPU would only raise its peak memory."""
        if self.format == "adapter":
            return factor_deltas(state_to_factors(self.tensors), self.scale, device)
        if self.format == "delta":
            return state_to_deltas(self.tensors)
        raise ValueError(f"unknown tensor-file format {self.format!r}")

    def factors(self) -> Factors:
        if self.format != "adapter":
            raise ValueError("only an adapter file holds LoRA factors")
        return state_to_factors(self.tensors)


def save_tensors(path: str | Path, tensors: Tensors, fmt: str, scale: float, **metadata: str) -> None:
    meta = {"format": fmt, "scale": repr(float(scale)), **{k: str(v) for k, v in metadata.items()}}
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}, str(tmp), metadata=meta)


def save_adapter(path: str | Path, factors: Factors, scale: float, **metadata: str) -> None:
    save_tensors(path, factors_to_state(factors), "adapter", scale, **metadata)


def load_tensors(path: str | Path) -> StoredTensors:
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if "format" not in metadata or "scale" not in metadata:
        raise ValueError(f"{path} is not a checkpoint file of this pipeline (no format/scale metadata)")
    return StoredTensors(tensors, metadata["format"], float(metadata["scale"]), metadata)
