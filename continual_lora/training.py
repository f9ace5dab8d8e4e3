"""DreamBooth-LoRA training of one task of the continual chain.

The method decides what the task starts from (an update fused into the frozen base,
and the adapter's initial factors) and what it hands on; this module trains the
adapter in between with the noise-prediction loss, on the task's images only.
"""

from __future__ import annotations

import importlib.util
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from continual_lora import atomic, checkpoint
from continual_lora.data.concepts import read_concept
from continual_lora.images import training_images
from continual_lora.lora import LoraSpec, attach_adapter, fresh_factors, linear_shapes, read_factors
from continual_lora.model_update import apply_update
from continual_lora.methods import get_method
from continual_lora.models.conditioning import condition_rows, conditioner_for
from continual_lora.models.loading import ModelSource, load_pipeline, resolve_device

PACKAGES = ("torch", "diffusers", "peft", "transformers", "accelerate", "safetensors", "numpy")


@dataclass(frozen=True)
class TrainingSettings:
    steps: int
    learning_rate: float
    batch_size: int
    resolution: int
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-4
    log_every: int = 10
    # "no", "fp16" or "bf16": the frozen model in that precision, the forward pass under
    # autocast, the adapter's factors and optimizer state in float32.
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    # How each training image is cropped to a square (continual_lora.images.CROPS).
    crop: str = "random"
    # "run": every task starts from the run's training seed, as the reference code
    # seeds each task's process; "task": from the training seed and the task index.
    seeding: str = "run"

    @property
    def weight_dtype(self) -> torch.dtype:
        try:
            return WEIGHT_DTYPES[self.mixed_precision]
        except KeyError:
            raise ValueError(
                f"training.mixed_precision: {self.mixed_precision!r} is not one of {', '.join(WEIGHT_DTYPES)}"
            ) from None


WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _adamw(params, settings: TrainingSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def _adamw_8bit(params, settings: TrainingSettings) -> torch.optim.Optimizer:
    import bitsandbytes

    return bitsandbytes.optim.AdamW8bit(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


OPTIMIZERS = {"adamw": _adamw, "adamw_8bit": _adamw_8bit}
# What an optimizer needs besides torch, as (module, how to install it).
OPTIMIZER_PACKAGES = {"adamw_8bit": ("bitsandbytes", "pip install -e '.[gpu]'")}


def check_optimizer(settings: TrainingSettings) -> None:
    """Fail before the model loads, not after, where the optimizer's package is missing.

    Here, in the job, rather than when the workflow loads: jobs may run in another
    environment than Snakemake (a conda environment, a cluster node), and a dry run
    or a rescoring run needs no optimizer at all.
    """
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"training.optimizer: {settings.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    package = OPTIMIZER_PACKAGES.get(settings.optimizer)
    if package and importlib.util.find_spec(package[0]) is None:
        raise ImportError(
            f"training.optimizer: {settings.optimizer} needs {package[0]}, which is not installed in this job's "
            f"environment ({package[1]}); or set training.optimizer: adamw"
        )


class MixedPrecision:
    """torch's automatic mixed precision for one training job: the forward pass under
    autocast, and for fp16 a gradient scaler against underflow.

    This is what accelerate's ``Accelerator`` sets up for a single process, but its
    state is process-wide and refuses a second precision in the same process, which a
    notebook or a test suite that trains in several precisions needs.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.device_type = device.type
        self.dtype = dtype
        self.enabled = dtype != torch.float32
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, params: list[torch.nn.Parameter], optimizer, max_grad_norm: float) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)


def make_optimizer(params, settings: TrainingSettings) -> torch.optim.Optimizer:
    check_optimizer(settings)
    return OPTIMIZERS[settings.optimizer](params, settings)


SEEDINGS = ("run", "task")


def task_seed(training_seed: int, task_index: int, seeding: str = "run") -> int:
    """The seed of one task's randomness (fresh adapter, crops, batches, noise, timesteps).

    ``seeding`` "run" gives every task of a run the training seed itself, as the
    reference code does (``set_seed(seed)`` at the start of every task): every fresh
    adapter of a run is then the same matrix. "task" makes it distinct per task.
    """
    if seeding == "run":
        return training_seed
    if seeding == "task":
        return training_seed * 1_000_003 + task_index
    raise ValueError(f"training.seeding: {seeding!r} is not one of {', '.join(SEEDINGS)}")


class EpochOrder:
    """Which training images each step sees: every image once per epoch, each epoch in
    a new shuffled order (the reference's ``DataLoader(shuffle=True)``); with batches of
    several images, a batch may run on into the next epoch rather than be cut short."""

    def __init__(self, n_images: int, generator: torch.Generator):
        self.n_images, self.generator = n_images, generator
        self.queue = torch.empty(0, dtype=torch.long)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        while len(self.queue) < batch_size:
            self.queue = torch.cat([self.queue, torch.randperm(self.n_images, generator=self.generator)])
        batch, self.queue = self.queue[:batch_size], self.queue[batch_size:]
        return batch


@dataclass
class CachedTask:
    """A task's images as VAE posteriors and its prompt as UNet conditioning (one row
    per image, which carries SDXL's size and crop), computed once per job: the images,
    their crops and the prompt never change during training."""

    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    condition: dict
    scaling: float
    shift: float

    @classmethod
    @torch.no_grad()
    def encode(cls, pipeline, prepared, settings: TrainingSettings, device, generator: torch.Generator) -> CachedTask:
        images = training_images(prepared.load_train_images(), settings.resolution, settings.crop, generator)
        # One image at a time: a float32 VAE at 1024 px needs several GB per image.
        posteriors = [pipeline.vae.encode(pixels[None].to(device, pipeline.vae.dtype)).latent_dist for pixels in images.pixels]
        geometry = list(zip(images.original_sizes, images.crop_top_lefts))
        prompts = [prepared.concept.prompt] * len(geometry)
        return cls(
            latent_mean=torch.cat([posterior.mean for posterior in posteriors]).float(),
            latent_std=torch.cat([posterior.std for posterior in posteriors]).float(),
            condition=conditioner_for(pipeline).encode(prompts, settings.resolution, geometry),
            scaling=pipeline.vae.config.scaling_factor,
            shift=getattr(pipeline.vae.config, "shift_factor", None) or 0.0,
        )

    @property
    def n_images(self) -> int:
        return self.latent_mean.shape[0]

    def sample_latents(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of the images ``index``, each drawn from its image's VAE posterior."""
        eps = torch.randn(self.latent_mean[index].shape, generator=generator).to(self.latent_mean.device)
        return ((self.latent_mean[index] + self.latent_std[index] * eps) - self.shift) * self.scaling


def denoising_loss(unet, noise_scheduler, task: CachedTask, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The DreamBooth noise-prediction loss on the images ``index``, noised by the
    scheduler itself.

    Random draws come from a CPU generator so that a seed means the same batches on
    any device.
    """
    latents = task.sample_latents(index, generator)
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    n_timesteps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, n_timesteps, (len(index),), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    prediction = unet(noisy, timesteps, **condition_rows(task.condition, index)).sample
    return F.mse_loss(prediction.float(), target.float())


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def train_task(
    *,
    base_model: ModelSource | str | Path | dict,
    method: str,
    task_index: int,
    concept_dir: str | Path,
    previous_handoff: str | Path | None,
    spec: LoraSpec,
    settings: TrainingSettings,
    training_seed: int,
    out_dir: str | Path,
    device: str = "auto",
    method_settings: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train task ``task_index`` and write its checkpoint files into ``out_dir``."""
    started = time.perf_counter()
    check_optimizer(settings)
    out_dir = Path(out_dir)
    continual = get_method(method, method_settings)
    seed = task_seed(training_seed, task_index, settings.seeding)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    previous = None
    if previous_handoff is not None:
        stored = checkpoint.load_tensors(previous_handoff)
        if stored.format != continual.handoff_format:
            raise ValueError(
                f"{previous_handoff} holds a {stored.format} handoff, but {method} hands on {continual.handoff_format}"
            )
        previous = stored.tensors

    prepared = read_concept(concept_dir)
    device = resolve_device(device)
    base_model = ModelSource.of(base_model)
    precision = MixedPrecision(settings.weight_dtype, device)
    # The reference keeps the VAE in float32 whatever the precision, against NaN latents.
    pipeline = load_pipeline(base_model, device=device, dtype=settings.weight_dtype, vae_dtype=torch.float32)
    unet = pipeline.unet
    start = continual.start(previous, fresh_factors(linear_shapes(unet, spec), spec.rank, generator), spec)
    apply_update(unet, start.frozen_delta)
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    params = attach_adapter(unet, spec, start.init)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    cached = CachedTask.encode(pipeline, prepared, settings, device, generator)
    order = EpochOrder(cached.n_images, generator)
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    optimizer = make_optimizer(params, settings)
    log(
        f"task {task_index} ({prepared.concept.name!r}, {method}): "
        f"{cached.n_images} images, prompt {prepared.concept.prompt!r}"
    )

    losses: list[float] = []
    loss_curve: list[tuple[int, float]] = []  # (step, mean loss since the previous line)
    for step in range(1, settings.steps + 1):
        try:
            with precision.autocast():
                loss = denoising_loss(unet, noise_scheduler, cached, order.next_batch(settings.batch_size), generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"task {task_index}, method {method}: the loss is {loss.item()} at step {step}"
                )
            precision.step(loss, params, optimizer, settings.max_grad_norm)
        except torch.OutOfMemoryError as error:
            raise torch.OutOfMemoryError(
                f"task {task_index}, method {method}: out of GPU memory at step {step}; set "
                "training.gradient_checkpointing: true, a smaller training.batch_size, or "
                "training.mixed_precision: bf16 (or fp16) to fit"
            ) from error
        losses.append(loss.item())
        if step % settings.log_every == 0 or step == settings.steps:
            since = loss_curve[-1][0] if loss_curve else 0
            loss_curve.append((step, sum(losses[since:]) / (step - since)))
            log(f"step {step}/{settings.steps} loss {loss_curve[-1][1]:.4f}")

    trained = read_factors(unet)
    handoff = continual.hand_on(previous, trained, spec)
    tags = {"method": method, "task": str(task_index), "concept": prepared.concept.name}
    checkpoint.save_tensors(out_dir / checkpoint.HANDOFF, handoff, continual.handoff_format, spec.scale, **tags)
    checkpoint.save_adapter(out_dir / checkpoint.TASK_LORA, trained, spec.scale, **tags)
    checkpoint.save_adapter(out_dir / checkpoint.INIT_LORA, start.init, spec.scale, **tags)
    meta = {
        "method": method,
        "task": task_index,
        "concept": prepared.concept.name,
        "prompt": prepared.concept.prompt,
        "steps": settings.steps,
        "training_seed": training_seed,
        "task_seed": seed,
        "rank": spec.rank,
        "alpha": spec.alpha,
        "scale": spec.scale,
        "target_modules": list(spec.target_modules),
        "base_model": asdict(base_model),
        "previous_handoff": str(previous_handoff) if previous_handoff else None,
        "settings": asdict(settings),
        "device": str(device),
        "loss_curve": loss_curve,
        "packages": package_versions(),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    atomic.write_json(out_dir / checkpoint.META, meta)
    log(f"done in {meta['wall_time_s']:.1f} s")
    return meta
