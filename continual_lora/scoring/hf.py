"""Loading transformers models and their image processors for the embedding metrics.

One loader for DINO, CLIP-I and CLIP-T, so every backend gets the model in eval mode
on its device. CLIP's pixels come from the image processor saved with the model,
always its PIL/numpy implementation: the paper's reference code ran on transformers
4.x, whose default CLIP processor was that one, while transformers 5 picks a
torchvision implementation whenever torchvision happens to be installed, and its
pixels differ (up to 0.03). Asking for the PIL one keeps a score independent of
what else is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image


def _quiet_transformers() -> None:
    from transformers.utils import logging as transformers_logging

    # Loading bars would drown a scoring job's log.
    transformers_logging.disable_progress_bar()


def load_hf_model(model_cls: type, name_or_path: str | Path, device: torch.device, **model_kwargs: Any) -> torch.nn.Module:
    """``model_cls.from_pretrained(name_or_path)``, frozen, in eval mode on ``device``."""
    _quiet_transformers()
    model = model_cls.from_pretrained(str(name_or_path), **model_kwargs)
    model.requires_grad_(False)
    return model.to(device).eval()


def load_pil_image_processor(name_or_path: str | Path) -> Any:
    """The image processor saved with a model, in its PIL/numpy implementation on any
    transformers version (5.x: ``backend="pil"``; 4.x: ``use_fast=False``)."""
    import transformers
    from transformers import AutoImageProcessor

    _quiet_transformers()
    source = str(name_or_path)
    if int(transformers.__version__.split(".")[0]) >= 5:
        processor = AutoImageProcessor.from_pretrained(source, backend="pil")
    else:
        processor = AutoImageProcessor.from_pretrained(source, use_fast=False)
    # transformers falls back to another implementation when a model has no PIL one.
    if getattr(processor, "backend", "pil") != "pil" or type(processor).__name__.endswith("Fast"):
        raise ValueError(
            f"{source}: transformers has no PIL image processor for this model (got {type(processor).__name__}), "
            "so its pixels would depend on whether torchvision is installed"
        )
    return processor


def pixel_values(processor: Any, images: list[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return processor(images=images, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)


def pooled(output: Any) -> torch.Tensor:
    """The pooled features of a ``get_*_features`` call.

    transformers 4.x returns the tensor itself, 5.x an output whose ``pooler_output``
    holds it.
    """
    return output if isinstance(output, torch.Tensor) else output.pooler_output
