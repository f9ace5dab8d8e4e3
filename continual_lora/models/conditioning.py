"""Text conditioning of the UNet, per pipeline family.

Training and scoring call the UNet directly, so they need the family's conditioning
inputs; each family is one class found by the pipeline's class name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline

CONDITIONERS: dict[str, type[Conditioner]] = {}
# Per row: ((original height, original width), (crop top, crop left)).
Geometry = list[tuple[tuple[int, int], tuple[int, int]]]


class Conditioner:
    pipeline_classes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.pipeline_classes:
            CONDITIONERS[name] = cls

    def __init__(self, pipeline: DiffusionPipeline):
        self.pipeline = pipeline

    def encode(self, prompts: list[str], resolution: int, geometry: Geometry | None = None) -> dict[str, Any]:
        """Keyword arguments of ``unet(sample, timestep, **kwargs)``, one row per prompt.

        ``geometry`` gives each row's image its (height, width) before resizing and its
        crop's (top, left), for families conditioned on them; None: square images of
        side ``resolution``, uncropped.
        """
        raise NotImplementedError


class StableDiffusionConditioner(Conditioner):
    pipeline_classes = ("StableDiffusionPipeline",)

    @torch.no_grad()
    def encode(self, prompts: list[str], resolution: int, geometry: Geometry | None = None) -> dict[str, Any]:
        embeds, _ = self.pipeline.encode_prompt(
            prompts, self.pipeline.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"encoder_hidden_states": embeds}


class StableDiffusionXLConditioner(Conditioner):
    """SDXL: both text encoders' hidden states, the second one's pooled embedding, and
    the micro-conditioning "time ids" (original size, crop top-left, target size) of
    each row's image, as the diffusers SDXL DreamBooth script computes them."""

    pipeline_classes = ("StableDiffusionXLPipeline",)

    @torch.no_grad()
    def encode(self, prompts: list[str], resolution: int, geometry: Geometry | None = None) -> dict[str, Any]:
        pipeline = self.pipeline
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompts, device=pipeline.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        target = (resolution, resolution)
        geometry = geometry if geometry is not None else [(target, (0, 0))] * len(prompts)
        if len(geometry) != len(prompts):
            raise ValueError(f"{len(geometry)} image geometries for {len(prompts)} prompts")
        time_ids = torch.tensor(
            [[*size, *crop, *target] for size, crop in geometry], dtype=embeds.dtype, device=embeds.device
        )
        return {
            "encoder_hidden_states": embeds,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids},
        }


def condition_rows(condition: Any, index: torch.Tensor | slice) -> Any:
    """The rows ``index`` of every tensor in a (possibly nested) conditioning dict."""
    if isinstance(condition, torch.Tensor):
        return condition[index.to(condition.device) if isinstance(index, torch.Tensor) else index]
    if isinstance(condition, dict):
        return {k: condition_rows(v, index) for k, v in condition.items()}
    return condition


def conditioner_for(pipeline: DiffusionPipeline) -> Conditioner:
    name = type(pipeline).__name__
    try:
        return CONDITIONERS[name](pipeline)
    except KeyError:
        raise ValueError(
            f"base_model: pipelines of class {name} are not supported; supported: {', '.join(sorted(CONDITIONERS))}"
        ) from None
