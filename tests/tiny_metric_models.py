"""Tiny, randomly initialised stand-ins for the paper's metric networks, saved in the
layouts their loaders read: DINO (a transformers ViT folder), CLIP (a CLIPModel folder
with its processor) and CSD (a training snapshot as CSD's train_csd.py saves it), and
CSD's forward pass written against OpenAI's layout, to check the loaded model by."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from continual_lora.models.tiny import build_tokenizer


# The DINO metric's default crop is the paper's 224, and callers that pass no settings
# (the presets' end-to-end run) score with the defaults; a 7 x 7 patch grid keeps the
# model tiny at that size.
DINO_IMAGE_SIZE, DINO_PATCH = 224, 32
# CLIP's processor: shorter side resized to 36, then a 32 x 32 centre crop, so both
# steps do something on any aspect ratio.
CLIP_RESIZE, CLIP_CROP = 36, 32


def build_dino(root: Path) -> Path:
    """A ViT folder without an image processor: the DINO metric preprocesses itself."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    # At the default initialisation scale the CLS token barely depends on the pixels
    # (any two images score 0.99); ten times larger, a one-pixel shift of the crop moves
    # the score by 4e-3, so the parity tests see preprocessing mistakes.
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=DINO_IMAGE_SIZE, patch_size=DINO_PATCH, initializer_range=0.2,
    )  # fmt: skip
    ViTModel(config, add_pooling_layer=False).save_pretrained(root)
    return Path(root)


def build_clip(root: Path) -> Path:
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

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
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=CLIP_CROP,
            patch_size=8, initializer_factor=3.0,  # as DINO's initializer_range: pixels must matter
        ),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(root / "model")
    # transformers 5 names the PIL implementation apart (and saves it under the plain name);
    # 4.x's CLIPImageProcessor is that implementation.
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    image_processor = processor_cls(
        size={"shortest_edge": CLIP_RESIZE}, crop_size={"height": CLIP_CROP, "width": CLIP_CROP}
    )
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


def csd_style_reference(state, pixels, heads):
    """CSD_CLIP's style output for weights in ``openai_visual_state``'s layout, written
    against OpenAI's VisionTransformer, independently of the transformers model: conv patches, class token, ln_pre, residual blocks with
    nn.MultiheadAttention and QuickGELU, ln_post of the class token, @ style, normalize."""
    s = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    width = s["conv1.weight"].shape[0]
    x = F.conv2d(pixels, s["conv1.weight"], stride=s["conv1.weight"].shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([s["class_embedding"].expand(len(x), 1, width), x], dim=1) + s["positional_embedding"]
    x = F.layer_norm(x, (width,), s["ln_pre.weight"], s["ln_pre.bias"])
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in s:
        p = f"transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attn.load_state_dict({
            "in_proj_weight": s[p + "attn.in_proj_weight"], "in_proj_bias": s[p + "attn.in_proj_bias"],
            "out_proj.weight": s[p + "attn.out_proj.weight"], "out_proj.bias": s[p + "attn.out_proj.bias"],
        })  # fmt: skip
        h = F.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"])
        h = F.linear(h, s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])
        i += 1
    feature = F.layer_norm(x[:, 0], (width,), s["ln_post.weight"], s["ln_post.bias"])
    return F.normalize(feature @ state["last_layer_style"], dim=1)


def build_csd_checkpoint(root: Path, **sizes) -> tuple[Path, dict]:
    """A training snapshot exactly as CSD's train_csd.py saves it from DDP, and its
    weights without the DDP prefix; ``sizes`` as ``openai_visual_state`` takes them
    (benchmarks/gpu_recipes.py builds CSD's ViT-L/14 this way)."""
    state = openai_visual_state(**sizes)
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
