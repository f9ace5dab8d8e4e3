"""Tiny, randomly initialised models of the paper-scale families, saved as diffusers
folders: the real pipeline classes (SD 1.5's and SDXL's), configured as their hub
models are (schedulers, two text encoders with pooled embeddings and time ids for
SDXL), at a size that runs in a second. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from continual_lora.data.sources import RARE_TOKENS
from continual_lora.data.synthetic import GENERIC_CLASSES
from continual_lora.models.noising import SD_NOISE_SCHEDULE
from continual_lora.models.tiny import build_tokenizer, clip_text_config


def _tokenizer(root: Path):
    corpus = [f"a photo of a {word}" for word in GENERIC_CLASSES] + ["image of a house", "a sks dog in a jail"]
    return build_tokenizer(corpus, root / "tokenizer", extra_words=RARE_TOKENS[:10])


def _text_config(tokenizer, width: int, projection_dim: int) -> CLIPTextConfig:
    return clip_text_config(
        tokenizer, width=width, layers=1, heads=2, intermediate_size=2 * width, projection_dim=projection_dim
    )


def _vae(scaling_factor: float) -> AutoencoderKL:
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=scaling_factor,
    )


def build_sd15(root: Path, seed: int = 0) -> Path:
    """SD 1.5's format: one CLIP text encoder, PNDM scheduler, VAE scale 0.18215."""
    root = Path(root)
    tokenizer = _tokenizer(root)
    torch.manual_seed(seed)
    pipeline = StableDiffusionPipeline(
        vae=_vae(0.18215),
        text_encoder=CLIPTextModel(_text_config(tokenizer, 16, 16)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(
            sample_size=16,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=2,
            norm_num_groups=8,
        ),
        scheduler=PNDMScheduler(**SD_NOISE_SCHEDULE, skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(root / "model")
    return root / "model"


def build_sdxl(root: Path, seed: int = 0) -> Path:
    """SDXL base's format: two text encoders (the second with a projection, whose pooled
    output and the size/crop time ids condition the UNet through ``text_time``), Euler
    scheduler, VAE scale 0.13025."""
    root = Path(root)
    tokenizer = _tokenizer(root)
    widths, projection_dim, time_dim = (16, 16), 16, 8
    torch.manual_seed(seed)
    pipeline = StableDiffusionXLPipeline(
        vae=_vae(0.13025),
        text_encoder=CLIPTextModel(_text_config(tokenizer, widths[0], widths[0])),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, widths[1], projection_dim)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(
            sample_size=16,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=sum(widths),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            norm_num_groups=8,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=6 * time_dim + projection_dim,
        ),
        scheduler=EulerDiscreteScheduler(**SD_NOISE_SCHEDULE, timestep_spacing="leading", steps_offset=1),
    )
    pipeline.save_pretrained(root / "model")
    return root / "model"


def build_vae(root: Path, seed: int = 1) -> Path:
    """A separate VAE folder, standing in for SDXL's fp16-fix VAE."""
    torch.manual_seed(seed)
    _vae(0.13025).save_pretrained(Path(root) / "vae")
    return Path(root) / "vae"
