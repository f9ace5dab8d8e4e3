"""DINO: self-supervised ViT features of samples against references.

PROTOCOL.md's DINO score (both domains) uses DINO ViT-S/16 (facebook/dino-vits16): the
CLS token of the last layer, after the final layer norm, which is the image
descriptor DINO itself was trained and evaluated with. DINO is not trained on
captions, so unlike CLIP it rewards the same instance over the same category.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from continual_lora.scoring.base import EmbeddingMetric
from continual_lora.scoring.hf import load_hf_model, pixel_values


class DinoMetric(EmbeddingMetric):
    name = "dino"
    higher_is_better = True
    defaults: ClassVar[dict[str, Any]] = {**EmbeddingMetric.defaults, "model": "facebook/dino-vits16"}

    def __init__(self, settings, device):
        from transformers import ViTModel

        super().__init__(settings, device)
        # DINO checkpoints have no pooler; asking for none avoids a randomly initialised
        # one (and the warning about it) that the CLS feature would never use anyway.
        self.model, self.processor = load_hf_model(
            ViTModel, self.settings["model"], self.device, add_pooling_layer=False
        )

    def embed_batch(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = pixel_values(self.processor, images, self.device, self.model.dtype)
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]
