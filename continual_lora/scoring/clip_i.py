"""CLIP-I: CLIP image features of samples against references.

The paper's CLIP-I score (objects) uses CLIP ViT-B/32 (openai/clip-vit-base-patch32):
the projected image embedding, the space in which CLIP compares images with text.
The whole ``CLIPModel`` is loaded: ``CLIPVisionModelWithProjection`` would be lighter,
but on a full CLIP folder it takes its projection size from the vision config, which
need not carry the model's ``projection_dim``, and then silently reinitialises the
projection.

Pixels come from the image processor saved with the model, as the reference code's
``AutoProcessor(images=...)``, in its PIL implementation (see ``hf``): resize of the
shorter side, centre crop, CLIP's mean and std.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from continual_lora.scoring.base import EmbeddingMetric
from continual_lora.scoring.hf import load_hf_model, load_pil_image_processor, pixel_values, pooled


class ClipImageMetric(EmbeddingMetric):
    name = "clip_i"
    higher_is_better = True
    defaults: ClassVar[dict[str, Any]] = {**EmbeddingMetric.defaults, "model": "openai/clip-vit-base-patch32"}

    def __init__(self, settings, device):
        from transformers import CLIPModel

        super().__init__(settings, device)
        self.model = load_hf_model(CLIPModel, self.settings["model"], self.device)
        self.processor = load_pil_image_processor(self.settings["model"])

    def embed_batch(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = pixel_values(self.processor, images, self.device, self.model.dtype)
        return pooled(self.model.get_image_features(pixel_values=pixels))
