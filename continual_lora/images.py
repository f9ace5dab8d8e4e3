"""Reading images and bringing them to a model's input size, as the reference code does.

The paper's code reads images with PIL and transforms them with torchvision; the
numbers depend on those exact steps, so they are written here with PIL alone
(torchvision is optional and must not change results):

- ``Resize(s)`` of a PIL image: the shorter side becomes ``s``, the longer one
  ``int(s * long / short)`` (truncated), resampled by PIL itself (which returns an
  unchanged copy when the size already matches, as torchvision skips the call);
- ``CenterCrop(c)``: an image smaller than the crop is first padded with black (left
  and top get the floor of half the shortfall), then the offsets are
  ``int(round((side - c) / 2))`` with Python's round-half-to-even;
- ``RandomCrop(c)``: offsets drawn uniformly, top first, from a torch generator;
- ``ToTensor``: uint8 HWC to float32 CHW divided by 255;
- ``Normalize``: ``(x - mean) / std`` in float32.

Training images are read upright (EXIF orientation applied) and their crops
recorded, because SDXL is conditioned on each image's original size and crop
(its "time ids"); evaluation reference images are read as the files store them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# How a training image is cropped to a square after its shorter side is resized:
# "random" (the reference's RandomCrop, one crop per image for the whole task) or "center".
CROPS = ("random", "center")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def read_upright(path: str | Path) -> Image.Image:
    """An image file as RGB, turned upright by its EXIF orientation.

    Phone photos store their pixels sideways with an orientation tag; without the
    transpose a model would learn the subject lying on its side. Transparent pixels
    carry arbitrary colours, so they are shown on a white background.
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return image.convert("RGB")


def read_as_stored(path: str | Path) -> Image.Image:
    """An image file as RGB, pixels as the file stores them (no EXIF rotation): how
    the reference code reads the images its metrics compare samples with."""
    with Image.open(path) as image:
        return image.convert("RGB")


def resize_shorter_side(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's ``Resize(size)`` on a PIL image."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, resample)


def center_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)`` on an image at least that large."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's ``CenterCrop(size)`` on a PIL image, padding a smaller one first."""
    width, height = image.size
    if width < size or height < size:
        padded = Image.new("RGB", (max(width, size), max(height, size)))
        padded.paste(image, (max(size - width, 0) // 2, max(size - height, 0) // 2))
        image = padded
    top, left = center_offsets(image.height, image.width, size)
    return image.crop((left, top, left + size, top + size))


def random_offsets(height: int, width: int, size: int, generator: torch.Generator) -> tuple[int, int]:
    """(top, left) of torchvision's ``RandomCrop(size)``: uniform, the top drawn first,
    nothing drawn when the image is exactly the crop."""
    if (height, width) == (size, size):
        return 0, 0
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return top, left


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ``ToTensor``: float32, channels first, in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def resize_crop_normalize(
    image: Image.Image, resize: int, crop: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``(3, crop, crop)`` pixels of ``Compose([Resize(resize, BICUBIC), CenterCrop(crop),
    ToTensor(), Normalize(mean, std)])``: the evaluation transform of the paper's DINO
    score and of CSD's style descriptor."""
    square = center_crop(resize_shorter_side(image.convert("RGB"), resize, Image.Resampling.BICUBIC), crop)
    return (to_tensor(square) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@dataclass(frozen=True)
class TrainingImages:
    """Training images at the model's resolution, in [-1, 1], with what SDXL's
    micro-conditioning needs of each: its size before resizing and its crop."""

    pixels: torch.Tensor  # (n, 3, resolution, resolution)
    original_sizes: list[tuple[int, int]]  # (height, width) of the upright image
    crop_top_lefts: list[tuple[int, int]]  # (top, left) in the resized image


def training_images(
    images: list[Image.Image], resolution: int, crop: str = "random", generator: torch.Generator | None = None
) -> TrainingImages:
    """The reference's DreamBooth preprocessing: bilinear ``Resize`` of the shorter side
    to ``resolution``, a square crop (``crop``: "random", drawn once per image from
    ``generator``, or "center"), then scaled to [-1, 1]."""
    if crop not in CROPS:
        raise ValueError(f"training.crop: {crop!r} is not one of {', '.join(CROPS)}")
    if crop == "random" and generator is None:
        raise ValueError("a random crop needs a generator")
    pixels, sizes, offsets = [], [], []
    for image in images:
        sizes.append((image.height, image.width))
        resized = resize_shorter_side(image, resolution, Image.Resampling.BILINEAR)
        if crop == "random":
            top, left = random_offsets(resized.height, resized.width, resolution, generator)
        else:
            top, left = center_offsets(resized.height, resized.width, resolution)
        offsets.append((top, left))
        square = resized.crop((left, top, left + resolution, top + resolution))
        pixels.append(to_tensor(square) * 2.0 - 1.0)
    return TrainingImages(torch.stack(pixels), sizes, offsets)
