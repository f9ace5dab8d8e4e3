"""Loading a base model, optionally with a checkpoint's update fused in place.

The one loader that training, generation and scoring share: a diffusers pipeline
from a hub id or a local diffusers folder (the embedded tiny model is one), with
``W - W0`` of every targeted module added to its weights without copying the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from continual_lora.checkpoint import load_tensors
from continual_lora.lora import Tensors, apply_deltas


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def load_pipeline(
    model: str | Path,
    deltas: Tensors | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DiffusionPipeline:
    """The pipeline of ``model`` with ``deltas`` ({module: W - W0}) fused into its UNet."""
    # Loading bars would drown a job's log, which is meant for its progress lines.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    pipeline = DiffusionPipeline.from_pretrained(str(model), dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    if deltas:
        apply_deltas(pipeline.unet, deltas)
    return pipeline.to(device)


def checkpoint_deltas(handoff: str | Path) -> Tensors:
    """The update of the model after a task, from its ``handoff.safetensors``."""
    return load_tensors(handoff).model_delta()
