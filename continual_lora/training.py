"""DreamBooth-LoRA training of one task of the continual chain.

The method decides what the task starts from (an update fused into the frozen base,
and the adapter's initial factors) and what it hands on; this module trains the
adapter in between with the noise-prediction loss, on the task's images only.

A job runs in phases (``TaskTrainer``: load, start, cache, step, save) that
``train_task`` calls in order and the benchmarks time one by one, so that what they
measure is the code a job runs.
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
from continual_lora.data.concepts import PreparedConcept, read_concept
from continual_lora.images import training_images
from continual_lora.lora import (
    Factors,
    LoraSpec,
    Tensors,
    attach_adapter,
    fresh_factors,
    linear_shapes,
    live_factors,
    read_factors,
)
from continual_lora.matmul_precision import tf32_matmuls
from continual_lora.methods import ContinualMethod, Penalty, get_method
from continual_lora.model_update import apply_update
from continual_lora.models.conditioning import condition_rows, conditioner_for
from continual_lora.models.loading import ModelSource, load_pipeline, resolve_device
from continual_lora.models.noising import min_snr_weights, noisy_batch

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
    # Min-SNR loss weighting (diffusers' --snr_gamma); None: the plain mean, as the paper.
    snr_gamma: float | None = None
    # TF32 float32 matrix products on the GPU (continual_lora.matmul_precision); the
    # paper's runs leave them in float32.
    allow_tf32: bool = False

    @classmethod
    def from_config(cls, training: dict, **changes) -> TrainingSettings:
        """The settings a config's ``training:`` section gives (what the schema does not
        fill in keeps the defaults here), with ``changes`` over them."""
        return cls(**training | changes)

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
    def encode(cls, pipeline, prepared, settings: TrainingSettings, device, generator: torch.Generator) -> CachedTask:
        images = training_images(prepared.load_train_images(), settings.resolution, settings.crop, generator)
        geometry = list(zip(images.original_sizes, images.crop_top_lefts))
        prompts = [prepared.concept.prompt] * len(geometry)
        with torch.no_grad():
            condition = conditioner_for(pipeline).encode(prompts, settings.resolution, geometry)
        return cls.of_pixels(pipeline.vae, images.pixels, condition, device)

    @classmethod
    @torch.no_grad()
    def of_pixels(cls, vae, pixels: torch.Tensor, condition: dict, device) -> CachedTask:
        """Training images (``pixels``, in [-1, 1]) through ``vae``, with their
        conditioning rows."""
        # One image at a time: a float32 VAE at 1024 px needs several GB per image.
        posteriors = [vae.encode(image[None].to(device, vae.dtype)).latent_dist for image in pixels]
        return cls(
            latent_mean=torch.cat([posterior.mean for posterior in posteriors]).float(),
            latent_std=torch.cat([posterior.std for posterior in posteriors]).float(),
            condition=condition,
            scaling=vae.config.scaling_factor,
            shift=getattr(vae.config, "shift_factor", None) or 0.0,
        )

    @property
    def n_images(self) -> int:
        return self.latent_mean.shape[0]


def denoising_loss(
    unet,
    noise_scheduler,
    task: CachedTask,
    index: torch.Tensor,
    generator: torch.Generator,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """The DreamBooth noise-prediction loss on the images ``index``, noised by the
    scheduler itself (``noisy_batch``); with ``snr_gamma``, each image's error weighted
    as diffusers' training scripts weight it (``min_snr_weights``)."""
    mean, std = task.latent_mean[index], task.latent_std[index]
    batch = noisy_batch(noise_scheduler, mean, std, generator, scaling=task.scaling, shift=task.shift)
    prediction = unet(batch.noisy, batch.timesteps, **condition_rows(task.condition, index)).sample
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), batch.target.float())
    per_image = F.mse_loss(prediction.float(), batch.target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_image * min_snr_weights(noise_scheduler, batch.timesteps, snr_gamma)).mean()


@dataclass
class TrainingStep:
    """One optimisation step of the adapter on a batch of a cached task: the step a
    job repeats, and the one the benchmarks time."""

    unet: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    precision: MixedPrecision
    noise_scheduler: DDPMScheduler
    max_grad_norm: float
    generator: torch.Generator
    snr_gamma: float | None = None
    # The method's term added to the loss (TaskStart.penalty), on the adapter's factors.
    penalty: Penalty | None = None
    factors: Factors | None = None
    last_penalty: float | None = None

    @classmethod
    def on_new_adapter(
        cls,
        unet: torch.nn.Module,
        spec: LoraSpec,
        init: Factors,
        settings: TrainingSettings,
        *,
        precision: MixedPrecision,
        noise_scheduler: DDPMScheduler,
        generator: torch.Generator,
        optimizer_for: Callable[[list, TrainingSettings], torch.optim.Optimizer] = make_optimizer,
        penalty: Penalty | None = None,
    ) -> TrainingStep:
        """The adapter attached to ``unet`` at its initial factors ``init`` (after the
        method's update is fused in), and the step that trains it (its loss plus the
        method's ``penalty``, where it has one)."""
        params = attach_adapter(unet, spec, init)
        if settings.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        return cls(
            unet=unet,
            params=params,
            optimizer=optimizer_for(params, settings),
            precision=precision,
            noise_scheduler=noise_scheduler,
            max_grad_norm=settings.max_grad_norm,
            generator=generator,
            snr_gamma=settings.snr_gamma,
            penalty=penalty.to(params[0].device) if penalty is not None else None,
            factors=live_factors(unet) if penalty is not None else None,
        )

    def __call__(self, task: CachedTask, index: torch.Tensor) -> float:
        """The denoising loss on the images ``index``, after the update it (and the
        method's penalty, kept in ``last_penalty``) drove; a loss that is not finite
        raises before it can corrupt the adapter."""
        with self.precision.autocast():
            loss = denoising_loss(self.unet, self.noise_scheduler, task, index, self.generator, self.snr_gamma)
        total = loss
        if self.penalty is not None:
            # In float32, outside autocast: the factors are float32 whatever the precision.
            penalty = self.penalty(self.factors)
            self.last_penalty = penalty.item()
            total = loss + penalty
        if not torch.isfinite(total):
            penalty = f" (the method's penalty {self.last_penalty})" if self.penalty is not None else ""
            raise FloatingPointError(f"the loss is {loss.item()}{penalty}")
        self.precision.step(total, self.params, self.optimizer, self.max_grad_norm)
        return loss.item()


class TaskTrainer:
    """One task's training, in the phases a job runs, in this order (start, cache and
    step draw from the task's generator, so the order is part of what a seed means):

    - ``load``: the base model in the training precision, every weight frozen;
    - ``start``: the method's update fused in, the adapter attached at its initial
      factors, the optimizer made;
    - ``cache``: the task's images encoded and its prompt embedded, once;
    - ``step``: one training step on the next batch, ``settings.steps`` times;
    - ``save``: the trained adapter, the handoff and the initial adapter written.
    """

    def __init__(
        self,
        *,
        base_model: ModelSource | str | Path | dict,
        continual: ContinualMethod,
        previous: Tensors | None,
        spec: LoraSpec,
        settings: TrainingSettings,
        seed: int,
        task: int,
        device: str | torch.device = "auto",
    ):
        self.base_model = ModelSource.of(base_model)
        self.continual, self.previous, self.task = continual, previous, task
        self.spec, self.settings = spec, settings
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)
        # The global generator too, for whatever draws from it (peft's initial adapter,
        # which attach_adapter overwrites; a model with dropout).
        torch.manual_seed(seed)
        self.precision = MixedPrecision(settings.weight_dtype, self.device)

    def load(self) -> None:
        # The reference keeps the VAE in float32 whatever the precision, against NaN latents.
        self.pipeline = load_pipeline(
            self.base_model, device=self.device, dtype=self.settings.weight_dtype, vae_dtype=torch.float32
        )
        for component in self.pipeline.components.values():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False)

    def start(self) -> None:
        unet = self.pipeline.unet
        fresh = fresh_factors(linear_shapes(unet, self.spec), self.spec.rank, self.generator)
        self.task_start = self.continual.start(self.previous, fresh, self.spec)
        apply_update(unet, self.task_start.frozen_delta)
        self.train_step = TrainingStep.on_new_adapter(
            unet,
            self.spec,
            self.task_start.init,
            self.settings,
            precision=self.precision,
            noise_scheduler=DDPMScheduler.from_config(self.pipeline.scheduler.config),
            generator=self.generator,
            penalty=self.task_start.penalty,
        )

    def cache(self, prepared: PreparedConcept) -> CachedTask:
        self.cached = CachedTask.encode(self.pipeline, prepared, self.settings, self.device, self.generator)
        self.order = EpochOrder(self.cached.n_images, self.generator)
        return self.cached

    def step(self) -> float:
        """One step on the next batch; its loss."""
        return self.train_step(self.cached, self.order.next_batch(self.settings.batch_size))

    def save(self, out_dir: Path, **tags: str) -> Factors:
        """Write the task's checkpoint files into ``out_dir``; the trained factors."""
        trained = read_factors(self.pipeline.unet)
        handoff = self.continual.hand_on(self.previous, trained, self.spec, task=self.task)
        scale = self.spec.scale
        checkpoint.save_tensors(out_dir / checkpoint.HANDOFF, handoff, self.continual.handoff_format, scale, **tags)
        checkpoint.save_adapter(out_dir / checkpoint.TASK_LORA, trained, scale, **tags)
        checkpoint.save_adapter(out_dir / checkpoint.INIT_LORA, self.task_start.init, scale, **tags)
        return trained


def read_handoff(path: str | Path, continual: ContinualMethod) -> Tensors:
    """The previous task's handoff, refused where its format is not the method's."""
    stored = checkpoint.load_tensors(path)
    if stored.kind != continual.handoff_format:
        raise ValueError(
            f"{path} holds a {stored.kind} handoff, but {continual.name} hands on {continual.handoff_format}"
        )
    return stored.tensors


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
    # The whole job, so that the flag is what it was asked to be from the first product.
    with tf32_matmuls(settings.allow_tf32):
        return _train_task(**locals())


def _train_task(
    *, base_model, method, task_index, concept_dir, previous_handoff, spec, settings, training_seed, out_dir,
    device, method_settings, log,
) -> dict:  # fmt: skip
    started = time.perf_counter()
    check_optimizer(settings)
    out_dir = Path(out_dir)
    continual = get_method(method, method_settings)
    previous = read_handoff(previous_handoff, continual) if previous_handoff is not None else None
    prepared = read_concept(concept_dir)
    seed = task_seed(training_seed, task_index, settings.seeding)
    trainer = TaskTrainer(
        base_model=base_model,
        continual=continual,
        previous=previous,
        spec=spec,
        settings=settings,
        seed=seed,
        task=task_index,
        device=device,
    )
    trainer.load()
    trainer.start()
    cached = trainer.cache(prepared)
    log(
        f"task {task_index} ({prepared.concept.name!r}, {method}): "
        f"{cached.n_images} images, prompt {prepared.concept.prompt!r}"
    )

    losses: list[float] = []
    loss_curve: list[tuple[int, float]] = []  # (step, mean loss since the previous line)
    penalties: list[float] = []  # the method's penalty at each step (before its update)
    penalty_curve: list[tuple[int, float]] = []  # (step, mean penalty since the previous line)
    for step in range(1, settings.steps + 1):
        try:
            losses.append(trainer.step())
            if trainer.train_step.last_penalty is not None:
                penalties.append(trainer.train_step.last_penalty)
        except FloatingPointError as error:
            raise FloatingPointError(f"task {task_index}, method {method}: {error} at step {step}") from None
        except torch.OutOfMemoryError as error:
            raise torch.OutOfMemoryError(
                f"task {task_index}, method {method}: out of GPU memory at step {step}; set "
                "training.gradient_checkpointing: true, a smaller training.batch_size, or "
                "training.mixed_precision: bf16 (or fp16) to fit"
            ) from error
        if step % settings.log_every == 0 or step == settings.steps:
            since = loss_curve[-1][0] if loss_curve else 0
            loss_curve.append((step, sum(losses[since:]) / (step - since)))
            line = f"step {step}/{settings.steps} loss {loss_curve[-1][1]:.4f}"
            if penalties:
                penalty_curve.append((step, sum(penalties[since:]) / (step - since)))
                line += f" penalty {penalty_curve[-1][1]:.4g}"
            log(line)

    trainer.save(out_dir, method=method, task=str(task_index), concept=prepared.concept.name)
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
        "base_model": asdict(trainer.base_model),
        "method_settings": continual.settings,
        "previous_handoff": str(previous_handoff) if previous_handoff else None,
        "settings": asdict(settings),
        "device": str(trainer.device),
        "loss_curve": loss_curve,
        "penalty_curve": penalty_curve,
        "packages": package_versions(),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    atomic.write_json(out_dir / checkpoint.META, meta)
    log(f"done in {meta['wall_time_s']:.1f} s")
    return meta
