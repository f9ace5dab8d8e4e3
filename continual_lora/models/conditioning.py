"""Text conditioning of the UNet, per pipeline family.

Training and scoring call the UNet directly, so they need the family's conditioning
inputs; each family is one class found by the pipeline's class name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline

CONDITIONERS: dict[str, type[Conditioner]] = {}


class Conditioner:
    pipeline_classes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.pipeline_classes:
            CONDITIONERS[name] = cls

    def __init__(self, pipeline: DiffusionPipeline):
        self.pipeline = pipeline

    def encode(self, prompts: list[str], resolution: int) -> dict[str, Any]:
        """Keyword arguments of ``unet(sample, timestep, **kwargs)`` for ``prompts``."""
        raise NotImplementedError


class StableDiffusionConditioner(Conditioner):
    pipeline_classes = ("StableDiffusionPipeline",)

    @torch.no_grad()
    def encode(self, prompts: list[str], resolution: int) -> dict[str, Any]:
        embeds, _ = self.pipeline.encode_prompt(
            prompts, self.pipeline.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"encoder_hidden_states": embeds}


class StableDiffusionXLConditioner(Conditioner):
    """SDXL: both text encoders' hidden states, the second one's pooled embedding, and
    the size/crop "time ids" of a square, uncropped image at the training resolution."""

    pipeline_classes = ("StableDiffusionXLPipeline",)

    @torch.no_grad()
    def encode(self, prompts: list[str], resolution: int) -> dict[str, Any]:
        pipeline = self.pipeline
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompts, device=pipeline.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        size = (resolution, resolution)
        time_ids = pipeline._get_add_time_ids(
            size, (0, 0), size, dtype=embeds.dtype, text_encoder_projection_dim=pipeline.text_encoder_2.config.projection_dim
        )
        return {
            "encoder_hidden_states": embeds,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.to(embeds.device).repeat(len(prompts), 1)},
        }


def conditioner_for(pipeline: DiffusionPipeline) -> Conditioner:
    name = type(pipeline).__name__
    try:
        return CONDITIONERS[name](pipeline)
    except KeyError:
        raise ValueError(
            f"base_model: pipelines of class {name} are not supported; supported: {', '.join(sorted(CONDITIONERS))}"
        ) from None
