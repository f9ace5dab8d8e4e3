"""Tiny, randomly initialised stand-ins for the paper's metric networks, saved in the
layouts their loaders read: DINO (a transformers ViT folder), CLIP (a CLIPModel folder
with its processor) and CSD (a training snapshot as CSD's train_csd.py saves it)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from continual_lora.models.tiny import build_tokenizer


def build_dino(root: Path) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=16
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(root)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root)
    return Path(root)


def build_clip(root: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    root = Path(root)
    tokenizer = build_tokenizer(["a photo of a ball", "neon image of a house"], root / "tok", extra_words=["sks"])
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
        ),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(root / "model")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root / "model")
    return root / "model"


def openai_visual_state(width=128, layers=2, patch=8, grid=4, mlp=256, style_dim=16, seed=0):
    """Random weights in the layout of OpenAI CLIP's `model.visual` inside CSD_CLIP."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    state = {
        "backbone.conv1.weight": r(width, 3, patch, patch),
        "backbone.class_embedding": r(width, std=0.5),
        "backbone.positional_embedding": r(grid * grid + 1, width, std=0.5),
        "backbone.ln_pre.weight": 1 + r(width), "backbone.ln_pre.bias": r(width),
        "backbone.ln_post.weight": 1 + r(width), "backbone.ln_post.bias": r(width),
        "last_layer_style": r(width, style_dim, std=0.2),
        "last_layer_content": r(width, style_dim, std=0.2),
    }  # fmt: skip
    for i in range(layers):
        b = f"backbone.transformer.resblocks.{i}."
        state.update({
            b + "ln_1.weight": 1 + r(width), b + "ln_1.bias": r(width),
            b + "attn.in_proj_weight": r(3 * width, width, std=0.1), b + "attn.in_proj_bias": r(3 * width),
            b + "attn.out_proj.weight": r(width, width, std=0.1), b + "attn.out_proj.bias": r(width),
            b + "ln_2.weight": 1 + r(width), b + "ln_2.bias": r(width),
            b + "mlp.c_fc.weight": r(mlp, width, std=0.1), b + "mlp.c_fc.bias": r(mlp),
            b + "mlp.c_proj.weight": r(width, mlp, std=0.1), b + "mlp.c_proj.bias": r(width),
        })  # fmt: skip
    return state


def build_csd_checkpoint(root: Path) -> tuple[Path, dict]:
    """A training snapshot exactly as CSD's train_csd.py saves it from DDP, and its
    weights without the DDP prefix."""
    state = openai_visual_state()
    path = Path(root) / "checkpoint.pth"
    torch.save(
        {
            "model_state_dict": {f"module.{k}": v for k, v in state.items()},
            "opt_bb": {"state": {}, "param_groups": []},
            "iter": 3,
            "args": argparse.Namespace(arch="vit_large", lambda_s=1.0, eval_embed="head"),
        },
        path,
    )
    return path, state
