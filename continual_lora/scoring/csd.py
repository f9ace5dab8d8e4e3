"""CSD: the published Contrastive Style Descriptor (Somepalli et al., "Measuring Style
Similarity in Diffusion Models", github learn2phoenix/CSD), the paper's style metric.

The model (CSD/model.py, ``CSD_CLIP`` with ``name='vit_large'``) is the vision tower of
OpenAI CLIP ViT-L/14 (the ``clip`` package's ``model.visual``) with its ``proj`` removed,
plus two (1024 x 768) matrices cloned from that ``proj`` and trained: the style head
``last_layer_style`` and the content head ``last_layer_content``. The style descriptor
(``eval_embed='head'`` in the CSD code) is

    normalize(ln_post(CLS token) @ last_layer_style)

The published checkpoint (``checkpoint.pth``) is a training snapshot saved from
``DistributedDataParallel``: ``{"model_state_dict", "opt_bb", "opt_proj", "iter",
"args" (an argparse.Namespace), ...}``, the state dict's keys prefixed ``module.``:
``module.backbone.{conv1.weight, class_embedding, positional_embedding, ln_pre.*,
transformer.resblocks.{i}.{ln_1, attn.in_proj_weight, attn.in_proj_bias,
attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}.*, ln_post.*}``, ``module.last_layer_style``,
``module.last_layer_content``; there is no ``backbone.proj``. The Hugging Face copy
(PyTorchModelHubMixin) holds the same state dict bare. Both load here.

The backbone is rebuilt as a transformers ``CLIPVisionModel`` (its ``pooler_output`` is
``ln_post`` of the CLS token, as in OpenAI's ``VisionTransformer``): the fused
``in_proj`` attention weights split into q, k, v, and the MLP keeps CLIP's quick-GELU.
The architecture is read off the weights; only the head count is not in them, and
follows OpenAI's rule ``width // 64`` (16 for ViT-L/14) unless ``num_heads`` is set.
Preprocessing is CSD's evaluation transform (``transforms_branch0``): bicubic resize
of the shorter side to 224, centre crop, CLIP's mean and std (``continual_lora.images.resize_crop_normalize``).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from PIL import Image
from torch import nn

from continual_lora.scoring.base import REQUIRED, EmbeddingMetric
from continual_lora.images import CLIP_MEAN, CLIP_STD, resize_crop_normalize

if TYPE_CHECKING:
    from transformers import CLIPVisionConfig

_BLOCK = re.compile(r"^backbone\.transformer\.resblocks\.(\d+)\.")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The CSD state dict of a published checkpoint, with any ``module.`` prefix removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        payload: Any = load_file(str(path))
    else:
        # The training snapshot pickles its argparse arguments next to the tensors;
        # allowing exactly that class keeps loading on the safe (weights-only) path.
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model_state_dict", "state_dict"):
        if isinstance(payload, dict) and isinstance(payload.get(wrapper), dict):
            payload = payload[wrapper]
            break
    state = {}
    for key, value in payload.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        state[key] = value
    if "last_layer_style" not in state or "backbone.conv1.weight" not in state:
        raise ValueError(
            f"{path} is not a CSD checkpoint: it lacks backbone.conv1.weight or last_layer_style "
            f"(keys start {sorted(state)[:4]})"
        )
    return state


def vision_config(state: dict[str, torch.Tensor], num_heads: int | None = None) -> CLIPVisionConfig:
    """The CLIP vision architecture that the checkpoint's tensors imply."""
    from transformers import CLIPVisionConfig

    width, _, patch, _ = state["backbone.conv1.weight"].shape
    grid = math.isqrt(state["backbone.positional_embedding"].shape[0] - 1)
    layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=state["backbone.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=num_heads or max(1, width // 64),
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,  # torch.nn.LayerNorm's default, which OpenAI's CLIP uses
        projection_dim=state["last_layer_style"].shape[1],
    )


def backbone_state(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """OpenAI ``visual.*`` names mapped to a transformers ``CLIPVisionModel``'s (unprefixed)."""
    src = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    out = {
        "embeddings.patch_embedding.weight": src["conv1.weight"],
        "embeddings.class_embedding": src["class_embedding"],
        "embeddings.position_embedding.weight": src["positional_embedding"],
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = src[f"{theirs}.{p}"]
    for i in range(n_layers):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        # nn.MultiheadAttention stacks q, k and v along the output dimension.
        for p in ("weight", "bias"):
            q, k, v = src[f"{a}attn.in_proj_{p}"].chunk(3, dim=0)
            out.update({f"{b}self_attn.q_proj.{p}": q, f"{b}self_attn.k_proj.{p}": k, f"{b}self_attn.v_proj.{p}": v})
        for ours, theirs in (
            ("self_attn.out_proj", "attn.out_proj"),
            ("layer_norm1", "ln_1"),
            ("layer_norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
        ):
            for p in ("weight", "bias"):
                out[f"{b}{ours}.{p}"] = src[f"{a}{theirs}.{p}"]
    return out


class CSDStyleEncoder(nn.Module):
    """CSD's style branch on a transformers CLIP vision backbone."""

    def __init__(self, config: CLIPVisionConfig):
        from transformers import CLIPVisionModel

        super().__init__()
        self.backbone = CLIPVisionModel(config)
        self.style_projection = nn.Parameter(torch.zeros(config.hidden_size, config.projection_dim))

    @classmethod
    def from_checkpoint(cls, path: str | Path, num_heads: int | None = None) -> CSDStyleEncoder:
        state = read_checkpoint(path)
        config = vision_config(state, num_heads)
        model = cls(config)
        mapped = backbone_state(state, config.num_hidden_layers)
        # transformers 4.x nests the tower under `vision_model.`, 5.x does not.
        own = model.backbone.state_dict()
        prefix = "vision_model." if any(k.startswith("vision_model.") for k in own) else ""
        missing, unexpected = model.backbone.load_state_dict({prefix + k: v for k, v in mapped.items()}, strict=False)
        # position_ids is a non-persistent buffer in some versions and a key in others.
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(f"{path}: the CSD backbone did not load (missing {missing}, unexpected {unexpected})")
        with torch.no_grad():
            model.style_projection.copy_(state["last_layer_style"])
        return model.eval()

    @property
    def image_size(self) -> int:
        return self.backbone.config.image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feature = self.backbone(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(feature @ self.style_projection, dim=1)


def csd_preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """CSD's ``transforms_branch0``: Resize(size, bicubic), CenterCrop(size), ToTensor, Normalize."""
    return resize_crop_normalize(image, size, size, CLIP_MEAN, CLIP_STD)


class CsdMetric(EmbeddingMetric):
    name = "csd"
    higher_is_better = True
    domains = ("styles",)  # a style descriptor, trained to ignore content
    defaults: ClassVar[dict[str, Any]] = {**EmbeddingMetric.defaults, "checkpoint": REQUIRED, "num_heads": None}

    def __init__(self, settings, device):
        super().__init__(settings, device)
        heads = self.settings["num_heads"]
        self.model = CSDStyleEncoder.from_checkpoint(self.settings["checkpoint"], int(heads) if heads else None)
        self.model.requires_grad_(False)
        self.model.to(self.device)

    def embed_batch(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([csd_preprocess(im, self.model.image_size) for im in images]).to(self.device)
        return self.model(pixels)
