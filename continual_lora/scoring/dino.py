"""DINO: self-supervised ViT features of samples against references.

The paper's DINO score (both domains) uses DINO ViT-S/16 (facebook/dino-vits16): the
CLS token of the last layer, after the final layer norm, which is the image
descriptor DINO itself was trained and evaluated with. DINO is not trained on
captions, so unlike CLIP it rewards the same instance over the same category.

Preprocessing is the paper's reference code's (eval/metrics.py, ``dino_metric``), not
the image processor saved with the model:

    Compose([Resize(256, interpolation=BICUBIC), CenterCrop(224), ToTensor(),
             Normalize(ImageNet mean, ImageNet std)])

The saved processor stretches the whole image to 224 x 224, which scores 0.05-0.15
higher on the paper's images. ``resize`` and ``crop`` default to the paper's 256 and
224; another DINO, trained at another resolution, sets them (``crop`` must be the
model's ``image_size``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from continual_lora.images import IMAGENET_MEAN, IMAGENET_STD, resize_crop_normalize
from continual_lora.scoring.base import EmbeddingMetric
from continual_lora.scoring.hf import load_hf_model


class DinoMetric(EmbeddingMetric):
    name = "dino"
    higher_is_better = True
    defaults: ClassVar[dict[str, Any]] = {
        **EmbeddingMetric.defaults,
        "model": "facebook/dino-vits16",
        "resize": 256,
        "crop": 224,
    }

    def __init__(self, settings, device):
        from transformers import ViTModel

        super().__init__(settings, device)
        # DINO checkpoints have no pooler; asking for none avoids a randomly initialised
        # one (and the warning about it) that the CLS feature would never use anyway.
        self.model = load_hf_model(ViTModel, self.settings["model"], self.device, add_pooling_layer=False)
        self.resize, self.crop = int(self.settings["resize"]), int(self.settings["crop"])
        # Checked here so a wrong setting fails when the job starts, not at its first batch.
        if self.crop != self.model.config.image_size:
            raise ValueError(
                f"metric 'dino': crop {self.crop} does not match the model's image_size "
                f"{self.model.config.image_size}; set the metric's crop (and resize) for this model"
            )

    def embed_batch(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = torch.stack(
            [resize_crop_normalize(im, self.resize, self.crop, IMAGENET_MEAN, IMAGENET_STD) for im in images]
        )
        return self.model(pixel_values=pixels.to(self.device, self.model.dtype)).last_hidden_state[:, 0]
