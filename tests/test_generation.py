"""Evaluation samples from fixed latents, on a tiny random SD model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from continual_lora.data.concepts import Concept
from continual_lora.generation import (
    INDEX_COLUMNS,
    GenerationSettings,
    evaluation_prompts,
    fixed_latents,
    generate_samples,
    read_index,
    use_scheduler,
)
from continual_lora.models.loading import load_pipeline

SETTINGS = GenerationSettings(
    templates=("a photo of {}", "a {} in a jail"), samples_per_prompt=2, inference_steps=2,
    guidance_scale=3.0, latent_seed=42, batch_size=3, resolution=32,
)  # fmt: skip


def concept(name, token="sks", class_word="ball"):
    return Concept(name=name, domain="objects", prompt=f"a photo of {token} {class_word}", subject=f"{token} {class_word}",
                   class_word=class_word, token=token)  # fmt: skip


def test_templates_take_the_subject():
    assert evaluation_prompts(concept("x"), SETTINGS.templates) == ["a photo of sks ball", "a sks ball in a jail"]


def test_fixed_latents_depend_only_on_the_seed(tiny_model_dir):
    pipeline = load_pipeline(tiny_model_dir)
    a, b = fixed_latents(pipeline, 3, 42, 32), fixed_latents(pipeline, 3, 42, 32)
    assert a.shape == (3, pipeline.unet.config.in_channels, 32 // pipeline.vae_scale_factor, 32 // pipeline.vae_scale_factor)
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), fixed_latents(pipeline, 3, 0, 32).numpy())


def test_every_task_template_and_sample_is_written_and_indexed(tmp_path, tiny_model_dir):
    pipeline = load_pipeline(tiny_model_dir)
    # Two tasks with the same subject: with the same noise per sample index, their
    # images must agree whichever batch they fell in (up to the rounding that a
    # different batch composition may bring on several threads).
    tasks = [(1, concept("first")), (2, concept("second")), (3, concept("third", "zwz", "house"))]
    rows = generate_samples(pipeline, tasks, SETTINGS, tmp_path)
    index = read_index(tmp_path)
    assert len(rows) == len(index) == 3 * 2 * 2
    assert tuple(index[0]) == INDEX_COLUMNS
    assert {(r["task"], r["concept"]) for r in index} == {("1", "first"), ("2", "second"), ("3", "third")}
    pixels = {(r["task"], r["template"], r["sample"]): np.asarray(Image.open(tmp_path / r["file"])) for r in index}
    assert all(p.shape == (32, 32, 3) for p in pixels.values())
    def difference(a, b):
        return np.abs(pixels[a].astype(int) - pixels[b].astype(int))

    for template in ("0", "1"):
        for sample in ("0", "1"):
            assert difference(("1", template, sample), ("2", template, sample)).max() <= 2
        assert difference(("1", template, "0"), ("1", template, "1")).mean() > 5


def test_a_configured_scheduler_replaces_the_models_own(tiny_model_dir):
    pipeline = load_pipeline(tiny_model_dir)
    use_scheduler(pipeline, "DDIMScheduler")
    assert type(pipeline.scheduler).__name__ == "DDIMScheduler"
    with pytest.raises(ValueError, match="evaluation.scheduler: 'UNet2DModel' is not a diffusers scheduler"):
        use_scheduler(pipeline, "UNet2DModel")


def test_an_unset_guidance_scale_is_the_pipelines_own_default(tmp_path, tiny_model_dir):
    # The paper samples with the pipeline's default guidance (5.0 for SDXL, 7.5 for SD).
    pipeline = load_pipeline(tiny_model_dir)
    tasks = [(1, concept("first"))]
    one = dict(templates=("a photo of {}",), samples_per_prompt=1)
    generate_samples(pipeline, tasks, GenerationSettings(**{**SETTINGS.__dict__, **one, "guidance_scale": None}), tmp_path / "a")
    generate_samples(pipeline, tasks, GenerationSettings(**{**SETTINGS.__dict__, **one, "guidance_scale": 7.5}), tmp_path / "b")
    generate_samples(pipeline, tasks, GenerationSettings(**{**SETTINGS.__dict__, **one, "guidance_scale": 1.0}), tmp_path / "c")
    a, b, c = (np.asarray(Image.open(tmp_path / d / "task1_first" / "t0_s0.png")) for d in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_noise_device_is_checked(tiny_model_dir):
    pipeline = load_pipeline(tiny_model_dir)
    assert np.array_equal(fixed_latents(pipeline, 2, 42, 32, "model").numpy(), fixed_latents(pipeline, 2, 42, 32).numpy())
    with pytest.raises(ValueError, match="evaluation.noise_device: 'gpu' is not one of cpu, model"):
        fixed_latents(pipeline, 2, 42, 32, "gpu")
