"""Loading a base model, optionally with a checkpoint's update fused in place.

The one loader that training, generation and scoring share: a diffusers pipeline
from a hub id or a local diffusers folder (the embedded tiny model is one), with
``W - W0`` of every targeted module added to its weights without copying the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from continual_lora.checkpoint import TASK_LORA, load_tensors
from continual_lora.lora import Tensors
from continual_lora.model_update import apply_update


if TYPE_CHECKING:
    from continual_lora.methods import ContinualMethod

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSource:
    """Where the base model W0 comes from: a hub id or a local diffusers folder, and
    optionally a separate VAE (SDXL's fp16-fix VAE) and a weights variant ("fp16")."""

    name: str
    vae: str | None = None
    variant: str | None = None

    @classmethod
    def of(cls, source: ModelSource | str | Path | dict) -> ModelSource:
        if isinstance(source, ModelSource):
            return source
        if isinstance(source, dict):
            return cls(**source)
        return cls(name=str(source))


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}") from None


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def load_pipeline(
    model: ModelSource | str | Path | dict,
    deltas: Tensors | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    vae_dtype: str | torch.dtype | None = None,
) -> DiffusionPipeline:
    """The pipeline of ``model`` on ``device`` with ``deltas`` ({module: W - W0}) added
    to its UNet (``continual_lora.model_update``: in place in float32), in ``dtype``
    but for the VAE, loaded in ``vae_dtype`` where given."""
    source = ModelSource.of(model)
    dtype = resolve_dtype(dtype)
    # Loading bars would drown a job's log, which is meant for its progress lines.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    components = {}
    if source.vae or vae_dtype is not None:
        # Loaded in its own precision, not cast afterwards: weights rounded to 16 bits
        # would stay rounded in a float32 VAE.
        folder = {"pretrained_model_name_or_path": source.vae} if source.vae else {
            "pretrained_model_name_or_path": source.name, "subfolder": "vae", "variant": source.variant
        }  # fmt: skip
        components["vae"] = AutoencoderKL.from_pretrained(**folder, dtype=resolve_dtype(vae_dtype or dtype))
    pipeline = DiffusionPipeline.from_pretrained(source.name, dtype=dtype, variant=source.variant, **components)
    pipeline.set_progress_bar_config(disable=True)
    # SDXL pipelines watermark their images whenever the invisible-watermark package
    # happens to be installed; the paper's environment had none, and results must not
    # depend on what else is installed.
    if getattr(pipeline, "watermark", None) is not None:
        pipeline.watermark = None
    # On the device first: the in-place additions then run there, not on the CPU.
    pipeline.to(device)
    if deltas:
        apply_update(pipeline.unet, deltas)
    return pipeline


def checkpoint_deltas(
    handoff: str | Path,
    device: str | torch.device = "cpu",
    method: ContinualMethod | None = None,
    task_lora: str | Path | None = None,
) -> Tensors:
    """The update of the model evaluated after a task, from its ``handoff.safetensors``
    (and, for a ``method`` that evaluates another model than the one it hands on, the
    task's adapter ``task_lora``, by default the one in the same checkpoint folder),
    computed on ``device`` (the one the model will run on)."""
    stored = load_tensors(handoff)
    if method is None or method.evaluates_handoff:
        return stored.model_delta(device)
    trained = load_tensors(task_lora or Path(handoff).with_name(TASK_LORA)).factors()
    return method.evaluated_update(stored.tensors, trained, stored.scale, device)


def evaluated_pipeline(
    model: ModelSource | str | Path | dict,
    device: str | torch.device,
    dtype: str | torch.dtype,
    method: str,
    method_settings: dict | None = None,
    handoff: str | Path | None = None,
    task_lora: str | Path | None = None,
):
    """The pipeline of the model evaluated after a task (``handoff`` of ``method``, with
    its settings), or the base model where there is no handoff, on ``device``."""
    # Here, not at module level: the registry imports the methods, which do not need diffusers.
    from continual_lora.methods import get_method

    if handoff is None:
        return load_pipeline(model, None, device=device, dtype=dtype)
    deltas = checkpoint_deltas(handoff, device, get_method(method, method_settings or {}), task_lora)
    return load_pipeline(model, deltas, device=device, dtype=dtype)
