"""The embedding metrics compute what the paper's reference code computes.

The reference (github luk-st/continual-lora, eval/metrics.py and eval/csd/tf.py) scores
with torchvision transforms and transformers 4.x processors. Neither runs here, so each
test spells out the reference's preprocessing from scratch (PIL for the resampling,
numpy and torch for the rest, nothing from continual_lora.scoring), calls the model
directly, and averages cosines as the reference does: over references, then over
samples, in float32. The backend's ``score()`` must agree to 1e-5. What this checks is
our reading of those libraries' documented steps, written a second time on its own;
torchvision itself is not installed here to compare with.

The images are not square, wider and taller, with sizes picked so that the centre
crop's offset rounds differently under torchvision (round half to even) and
transformers (floor), and so that some are smaller than the crop before resizing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from continual_lora.data.concepts import Concept
from continual_lora.scoring import ScoringInput, get_metric

import tiny_metric_models

CONCEPT = Concept("striped_ball", "objects", "a photo of sks ball", "sks ball", "ball", "sks")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

# (width, height). 302x306 resizes to 256x259 for DINO: the crop offset (259 - 224) / 2
# = 17.5 rounds to 18, not 17. 220x200 resizes to 35x32 for CSD (offset 1.5 -> 2) and
# 39x36 for the tiny CLIP (offset 3.5: transformers floors to 3). 213x200 at DINO's
# resize 200 is padded by 11 columns to the crop of 224: 5 before, 6 after. 100x60 is
# smaller than every crop and is scaled up.
SAMPLE_SIZES = [(300, 200), (180, 260), (220, 200)]
REFERENCE_SIZES = [(302, 306), (100, 60), (213, 200)]


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth colour field with some texture: resampling changes it the way it changes photos."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    channels = [np.sin(2 * np.pi * (f[0] * x + f[1] * y) + f[2]) for f in rng.uniform(0.5, 4, (3, 3))]
    field = (np.stack(channels, -1) + 1) * 100 + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def _images():
    samples = [_photo(size, seed) for seed, size in enumerate(SAMPLE_SIZES)]
    references = [_photo(size, 10 + seed) for seed, size in enumerate(REFERENCE_SIZES)]
    return samples, references


def _resized_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(int) and transformers' shortest_edge resize: the longer side truncated."""
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return image if new == (w, h) else image.resize(new, Image.Resampling.BICUBIC)


def _torchvision_transform(image: Image.Image, resize: int, crop: int, mean, std) -> torch.Tensor:
    """Compose([Resize(resize, BICUBIC), CenterCrop(crop), ToTensor(), Normalize(mean, std)]) on a PIL image."""
    pixels = np.array(_resized_shorter_side(image.convert("RGB"), resize))
    h, w, _ = pixels.shape
    # CenterCrop first pads a too-small image with zeros: floor of the shortfall before, the rest after.
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    h, w, _ = pixels.shape
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    pixels = pixels[top : top + crop, left : left + crop]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).to(torch.float32).div(255)
    return (tensor - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def _clip_processor_pixels(image: Image.Image, shortest_edge: int, crop: int) -> torch.Tensor:
    """transformers 4.x's CLIPImageProcessor (PIL and numpy): resize the shorter side
    (bicubic), centre crop with floored offsets, rescale in float64, normalise."""
    assert shortest_edge >= crop  # so no padding
    pixels = np.array(_resized_shorter_side(image.convert("RGB"), shortest_edge))
    h, w, _ = pixels.shape
    top, left = (h - crop) // 2, (w - crop) // 2
    pixels = pixels[top : top + crop, left : left + crop]
    pixels = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean, std = (np.array(v, dtype=np.float32) for v in OPENAI_CLIP)
    return torch.from_numpy((pixels - mean) / std).permute(2, 0, 1)


def _reference_score(sample_features: torch.Tensor, reference_features: torch.Tensor) -> float:
    """eval/metrics.py: F.cosine_similarity of [n, 1, d] against [1, m, d], mean over refs, then samples."""
    similarities = F.cosine_similarity(
        sample_features.float().unsqueeze(1), reference_features.float().unsqueeze(0), dim=-1
    )
    return similarities.mean(dim=1).mean().item()


def _our_score(metric) -> float:
    samples, references = _images()
    job = ScoringInput(samples, [CONCEPT.prompt] * len(samples), references, CONCEPT)
    return metric.score(job)


def _print_agreement(name: str, ours: float, reference: float) -> None:
    print(f"{name}: ours {ours:.8f}, reference {reference:.8f}, |diff| {abs(ours - reference):.2e}")


# --------------------------------------------------------------------------- DINO


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the paper's Resize(256), CenterCrop(224)
        {"resize": 200, "crop": 224},  # shorter than the crop: CenterCrop pads
        {"resize": 241, "crop": 224},
    ],
    ids=["paper", "padded", "other_resize"],
)
def test_dino_matches_the_reference_transform_and_cls_token(dino_dir, settings):
    from transformers import ViTModel

    resize, crop = settings.get("resize", 256), settings.get("crop", 224)
    model = ViTModel.from_pretrained(dino_dir, add_pooling_layer=False).eval()
    samples, references = _images()

    @torch.no_grad()
    def features(images):
        pixels = torch.stack([_torchvision_transform(im, resize, crop, *IMAGENET) for im in images])
        return model(pixels).last_hidden_state[:, 0, :]

    reference = _reference_score(features(samples), features(references))
    ours = _our_score(get_metric("dino", {"model": str(dino_dir), **settings}, "cpu"))
    _print_agreement(f"dino {settings}", ours, reference)
    assert ours == pytest.approx(reference, abs=1e-5)


# --------------------------------------------------------------------------- CLIP-I


def test_clip_i_matches_the_reference_processor_and_image_features(clip_dir):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    samples, references = _images()

    @torch.no_grad()
    def features(images):
        pixels = torch.stack(
            [_clip_processor_pixels(im, tiny_metric_models.CLIP_RESIZE, tiny_metric_models.CLIP_CROP) for im in images]
        )
        out = model.get_image_features(pixel_values=pixels)
        # transformers 4.x returns the projected features, 5.x an output holding them.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    reference = _reference_score(features(samples), features(references))
    ours = _our_score(get_metric("clip_i", {"model": str(clip_dir), "batch_size": 2}, "cpu"))
    _print_agreement("clip_i", ours, reference)
    assert ours == pytest.approx(reference, abs=1e-5)


def test_clip_backends_use_the_pil_image_processor_whatever_else_is_installed(clip_dir, monkeypatch):
    """transformers 5 picks the torchvision image processor whenever torchvision is
    importable, and its pixels differ from the PIL one the reference ran with. Here
    torchvision is made to look installed: the backends must still ask for PIL."""
    import transformers.models.auto.image_processing_auto as auto

    requested = []
    if hasattr(auto, "_resolve_backend"):  # transformers 5
        resolve = auto._resolve_backend

        def recording_resolve(*args, **kwargs):
            requested.append(resolve(*args, **kwargs))
            return requested[-1]

        monkeypatch.setattr(auto, "is_torchvision_available", lambda: True)
        monkeypatch.setattr(auto, "_resolve_backend", recording_resolve)

    clip_i = get_metric("clip_i", {"model": str(clip_dir)}, "cpu")
    clip_t = get_metric("clip_t", {"model": str(clip_dir)}, "cpu")
    if hasattr(auto, "_resolve_backend"):
        assert requested and set(requested) == {"pil"}, f"image processor backends requested: {requested}"
    for processor in (clip_i.processor, clip_t.image_processor):
        try:
            from transformers.image_processing_backends import PilBackend
        except ImportError:  # transformers 4.x: the fast processors are the torchvision ones
            assert not type(processor).__name__.endswith("Fast")
        else:
            assert isinstance(processor, PilBackend)


# --------------------------------------------------------------------------- CSD


def test_csd_matches_the_reference_transform_and_style_head(csd_checkpoint):
    path, state = csd_checkpoint
    metric = get_metric("csd", {"checkpoint": str(path)}, "cpu")
    size = 32  # CSD's transforms_branch0 at the tiny model's input size (224 for ViT-L/14)
    samples, references = _images()

    @torch.no_grad()
    def features(images):
        pixels = torch.stack([_torchvision_transform(im, size, size, *OPENAI_CLIP) for im in images])
        return tiny_metric_models.csd_style_reference(state, pixels, heads=2)

    reference = _reference_score(features(samples), features(references))
    ours = _our_score(metric)
    _print_agreement("csd", ours, reference)
    assert ours == pytest.approx(reference, abs=1e-5)
