"""Loading transformers models for the embedding metrics, from a hub id or a local folder.

One loader for DINO, CLIP-I and CLIP-T, so every backend gets the model in eval mode
on its device together with the preprocessing that was saved with it (a model's own
processor is what its features were trained under).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image


def load_hf_model(
    model_cls: type,
    name_or_path: str | Path,
    device: torch.device,
    processor_cls: type | None = None,
    **model_kwargs: Any,
) -> tuple[torch.nn.Module, Any]:
    """``model_cls.from_pretrained(name_or_path)`` in eval mode on ``device``, and its
    processor (``processor_cls``, by default ``AutoImageProcessor``)."""
    from transformers import AutoImageProcessor
    from transformers.utils import logging as transformers_logging

    # Loading bars would drown a scoring job's log.
    transformers_logging.disable_progress_bar()
    processor_cls = processor_cls or AutoImageProcessor
    source = str(name_or_path)
    model = model_cls.from_pretrained(source, **model_kwargs)
    model.requires_grad_(False)
    processor = processor_cls.from_pretrained(source)
    return model.to(device).eval(), processor


def pixel_values(processor: Any, images: list[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Image-only processors take `images` as their first argument; multimodal ones
    # (CLIPProcessor) need it by keyword, which both accept.
    return processor(images=images, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)


def pooled(output: Any) -> torch.Tensor:
    """The pooled features of a ``get_*_features`` call.

    transformers 4.x returns the tensor itself, 5.x an output whose ``pooler_output``
    holds it.
    """
    return output if isinstance(output, torch.Tensor) else output.pooler_output
