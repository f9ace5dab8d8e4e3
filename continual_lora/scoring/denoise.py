"""Denoising fidelity: how much better the model predicts noise on a task's held-out
images than the base model does, with no sampling at all.

For the task's reference images under its training prompt, the error is the
MSE of the training objective (``continual_lora.training``: the noise, or for a
v-prediction model the velocity),
averaged over a fixed grid of timesteps and a fixed, seeded set of noises. The score is

    (err_base - err_model) / err_base

so it is higher when the model has learnt (and kept) the concept, and exactly 0 for
the base model. The references are held out from training, so this measures the
concept rather than memorised training images; every draw is fixed, so two models
are compared on identical noisy inputs and a difference is the models' alone.

The base error comes from the same pipeline, taken back to W0 for the purpose
(``continual_lora.model_update.base_model``) and restored exactly afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image

from continual_lora.model_update import base_model
from continual_lora.models.noising import prediction_target
from continual_lora.scoring.base import Metric, ModelHandle, ScoringInput


def evaluation_timesteps(n: int, n_train_timesteps: int) -> torch.Tensor:
    # Midpoints of n equal strata cover the whole noise range with less variance than
    # n random draws; every model sees the same ones.
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * n_train_timesteps / n).long()


@torch.no_grad()
def noise_prediction_error(
    pipeline,
    images: list[Image.Image],
    prompt: str,
    *,
    resolution: int,
    n_timesteps: int,
    n_noises: int,
    seed: int,
    batch_size: int,
) -> float:
    """Mean MSE of the training objective over images x timesteps x noises (deterministic)."""
    from diffusers import DDPMScheduler

    from continual_lora.images import training_images
    from continual_lora.models.conditioning import conditioner_for

    device = pipeline.unet.device
    dtype = pipeline.unet.dtype
    vae = pipeline.vae
    pixels = training_images(images, resolution, crop="center").pixels.to(device, vae.dtype)
    # The posterior mean, not a sample: the image's latent is part of the fixed input.
    mean = vae.encode(pixels).latent_dist.mean.float().cpu()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = (mean - shift) * vae.config.scaling_factor

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    steps = evaluation_timesteps(n_timesteps, scheduler.config.num_train_timesteps)
    # Every (image, timestep, noise) triple, noise drawn on the CPU so a seed means the
    # same numbers on any device.
    index = torch.arange(len(images)).repeat_interleave(n_timesteps * n_noises)
    t = steps.repeat_interleave(n_noises).repeat(len(images))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(index), *latents.shape[1:]), generator=generator)

    condition = conditioner_for(pipeline).encode([prompt] * min(batch_size, len(index)), resolution)
    was_training = pipeline.unet.training
    pipeline.unet.eval()  # dropout would make the error random
    try:
        total, count = _accumulate(
            pipeline.unet, scheduler, latents, noise, index, t, condition, batch_size, device, dtype
        )
    finally:
        pipeline.unet.train(was_training)
    return total / count


def _accumulate(unet, scheduler, latents, noise, index, t, condition, batch_size, device, dtype) -> tuple[float, int]:
    from continual_lora.models.conditioning import condition_rows

    total, count = 0.0, 0
    for start in range(0, len(index), batch_size):
        sl = slice(start, start + batch_size)
        x0, eps, tt = latents[index[sl]], noise[sl], t[sl]
        noisy = scheduler.add_noise(x0, eps, tt)
        target = prediction_target(scheduler, x0, eps, tt)
        prediction = unet(noisy.to(device, dtype), tt.to(device), **condition_rows(condition, slice(0, len(tt)))).sample
        total += F.mse_loss(prediction.float().cpu(), target.float(), reduction="sum").item()
        count += target.numel()
    return total, count


class DenoiseMetric(Metric):
    name = "denoise"
    higher_is_better = True
    uses_samples = False
    uses_model = True
    defaults: ClassVar[dict[str, Any]] = {
        "n_timesteps": 10,
        "n_noises": 2,
        "seed": 0,
        "batch_size": 16,
        "resolution": None,  # None: the UNet's native resolution
    }

    def errors(self, job: ScoringInput) -> tuple[float, float]:
        """(err_model, err_base) on the task's references under its training prompt."""
        handle: ModelHandle | None = job.model
        if handle is None:
            raise ValueError(f"metric {self.name!r} scores the model itself: ScoringInput.model must be set")
        pipeline = handle.pipeline
        resolution = self.settings["resolution"] or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        kwargs = dict(
            resolution=int(resolution),
            n_timesteps=int(self.settings["n_timesteps"]),
            n_noises=int(self.settings["n_noises"]),
            seed=int(self.settings["seed"]),
            batch_size=int(self.settings["batch_size"]),
        )
        err_model = noise_prediction_error(pipeline, job.references, job.concept.prompt, **kwargs)
        if not handle.deltas:
            return err_model, err_model
        with base_model(pipeline.unet, handle.deltas):
            err_base = noise_prediction_error(pipeline, job.references, job.concept.prompt, **kwargs)
        return err_model, err_base

    def score(self, job: ScoringInput) -> float:
        err_model, err_base = self.errors(job)
        return (err_base - err_model) / err_base
