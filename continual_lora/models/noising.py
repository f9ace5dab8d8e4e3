"""The forward (noising) process Stable Diffusion models are trained with.

SD 1.x and SDXL base share one noise schedule; a model's scheduler config carries it,
and training noises latents with a ``DDPMScheduler`` made from that config, so that a
model's own schedule and prediction type decide the arithmetic. The LoRA training of a
task and the pretraining of the tiny model draw their batches here, alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The betas of SD 1.x and SDXL base (their schedulers' configs on the hub); each
# scheduler adds its own sampling options.
SD_NOISE_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@dataclass(frozen=True)
class NoisyBatch:
    """Noised latents, their timesteps, and what the UNet is trained to predict from
    them: the noise, or for a v-prediction model the velocity."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def noisy_batch(
    noise_scheduler,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    generator: torch.Generator,
    *,
    scaling: float,
    shift: float = 0.0,
) -> NoisyBatch:
    """One batch of the noise-prediction objective, from images' VAE posteriors
    (``latent_mean``, ``latent_std``, one row per image).

    Each latent is drawn from its posterior, shifted and scaled into the UNet's space,
    and noised to a timestep uniform over the schedule. The draws come from
    ``generator``, a CPU generator so that a seed means the same batch on any device,
    in a fixed order: the posterior samples, the noise, the timesteps.
    """
    device = latent_mean.device
    eps = torch.randn(latent_mean.shape, generator=generator).to(device)
    latents = ((latent_mean + latent_std * eps) - shift) * scaling
    noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    n_timesteps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, n_timesteps, (len(latents),), generator=generator).to(device)
    return NoisyBatch(
        noise_scheduler.add_noise(latents, noise, timesteps),
        timesteps,
        prediction_target(noise_scheduler, latents, noise, timesteps),
    )


def prediction_target(noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet predicts from ``latents`` noised by ``noise`` at ``timesteps``: the
    noise, or for a v-prediction model the velocity."""
    if noise_scheduler.config.prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    return noise


def min_snr_weights(noise_scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR loss weights (Hang et al. 2023; diffusers' ``--snr_gamma``) of a batch
    noised at ``timesteps``: min(SNR, gamma) / SNR for a noise-predicting model, and
    min(SNR, gamma) / (SNR + 1) for a velocity-predicting one. They take weight off the
    many nearly clean timesteps, which otherwise dominate the loss while the colours
    and shapes of an image are decided at high noise."""
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    clipped = snr.clamp(max=gamma)
    if noise_scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr
