"""Training images as the paper's code prepares them (torchvision's steps, written with
PIL), and the order in which the training steps see them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from continual_lora.images import center_offsets, random_offsets, resize_shorter_side, training_images
from continual_lora.training import EpochOrder, task_seed


def gradient(width: int, height: int) -> Image.Image:
    """Every pixel different, so that any misplaced crop shows."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([x % 256, y % 256, (x * 7 + y * 3) % 256], -1).astype(np.uint8))


def test_resize_makes_the_shorter_side_the_size_and_truncates_the_longer():
    # torchvision: int(size * long / short), whichever side is longer
    assert resize_shorter_side(gradient(300, 200), 64, Image.Resampling.BILINEAR).size == (96, 64)
    assert resize_shorter_side(gradient(199, 301), 64, Image.Resampling.BILINEAR).size == (64, 96)  # 96.8
    same = gradient(64, 64)
    assert np.array_equal(np.asarray(resize_shorter_side(same, 64, Image.Resampling.BILINEAR)), np.asarray(same))


def test_center_offsets_round_half_to_even_as_torchvision():
    assert center_offsets(64, 96, 64) == (0, 16)
    assert center_offsets(64, 97, 64) == (0, 16)  # round(16.5) == 16
    assert center_offsets(99, 64, 64) == (18, 0)  # round(17.5) == 18


def test_random_offsets_are_uniform_inside_the_image_and_draw_nothing_for_an_exact_fit():
    generator = torch.Generator().manual_seed(0)
    offsets = [random_offsets(64, 96, 64, generator) for _ in range(400)]
    assert {top for top, _ in offsets} == {0}
    assert {left for _, left in offsets} == set(range(33))
    state = generator.get_state()
    assert random_offsets(64, 64, 64, generator) == (0, 0)
    assert torch.equal(generator.get_state(), state)


def test_training_images_are_resized_cropped_and_recorded_for_sdxl():
    images = [gradient(300, 200), gradient(180, 260), gradient(64, 64)]
    first = training_images(images, 64, "random", torch.Generator().manual_seed(0))
    again = training_images(images, 64, "random", torch.Generator().manual_seed(0))
    other = training_images(images, 64, "random", torch.Generator().manual_seed(1))
    assert first.pixels.shape == (3, 3, 64, 64)
    assert first.pixels.min() >= -1 and first.pixels.max() <= 1
    assert first.original_sizes == [(200, 300), (260, 180), (64, 64)]
    assert torch.equal(first.pixels, again.pixels) and first.crop_top_lefts == again.crop_top_lefts
    assert first.crop_top_lefts != other.crop_top_lefts
    (top0, left0), (top1, left1), exact = first.crop_top_lefts
    assert top0 == 0 and 0 <= left0 <= 32 and left1 == 0 and 0 <= top1 <= 28 and exact == (0, 0)
    # Each square is that crop of the bilinearly resized image, scaled to [-1, 1].
    for image, pixels, (top, left) in zip(images, first.pixels, first.crop_top_lefts):
        resized = resize_shorter_side(image, 64, Image.Resampling.BILINEAR)
        crop = np.asarray(resized.crop((left, top, left + 64, top + 64)), np.float32) / 255.0
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), crop * 2 - 1)
    centred = training_images(images, 64, "center")
    assert centred.crop_top_lefts == [(0, 16), (14, 0), (0, 0)]  # resized to 96 x 64 and 64 x 92
    with pytest.raises(ValueError, match="training.crop: 'middle' is not one of random, center"):
        training_images(images, 64, "middle")


def test_epoch_order_shows_every_image_once_per_epoch():
    order = EpochOrder(5, torch.Generator().manual_seed(0))
    epochs = [sorted(int(order.next_batch(1)) for _ in range(5)) for _ in range(4)]
    assert epochs == [[0, 1, 2, 3, 4]] * 4
    # Batches of several images run on into the next epoch: equal visits over whole epochs.
    order = EpochOrder(5, torch.Generator().manual_seed(0))
    seen = torch.cat([order.next_batch(2) for _ in range(10)])
    assert torch.bincount(seen, minlength=5).tolist() == [4] * 5


def test_run_seeding_gives_every_task_the_run_seed():
    assert task_seed(5, 1, "run") == task_seed(5, 7, "run") == 5
    assert task_seed(5, 1, "task") != task_seed(5, 2, "task")
    with pytest.raises(ValueError, match="training.seeding: 'each' is not one of run, task"):
        task_seed(5, 1, "each")
