"""Evaluation samples of one model for the tasks it has seen, as the paper samples them
(docs/reproduction.md).

Every task gets each prompt template x ``samples_per_prompt`` images, from fixed
initial latents: sample k of every prompt, every task and every checkpoint starts
from the same noise (drawn once from ``latent_seed``), so differences between
images are the model's and the prompt's alone. Everything else is the pipeline's
own default unless set: its guidance scale, its scheduler, no negative prompt.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from continual_lora.data.concepts import Concept

INDEX = "index.csv"
INDEX_COLUMNS = ("prompt", "template", "sample", "task", "concept", "file")


@dataclass(frozen=True)
class GenerationSettings:
    templates: tuple[str, ...]
    samples_per_prompt: int
    inference_steps: int
    guidance_scale: float | None  # None: the pipeline's own default
    latent_seed: int
    batch_size: int
    resolution: int
    scheduler: str | None = None  # a diffusers scheduler class name; None: the model's own
    noise_device: str = "cpu"  # "cpu", or "model": drawn where the model runs


def evaluation_prompts(concept: Concept, templates: tuple[str, ...]) -> list[str]:
    """The templates filled with the concept's subject ('{token} {class}' or the style)."""
    return [template.format(concept.subject) for template in templates]


NOISE_DEVICES = ("cpu", "model")


def fixed_latents(pipeline, n: int, seed: int, resolution: int, noise_device: str = "cpu") -> torch.Tensor:
    """``n`` initial latents in float32, drawn once from ``seed``: on the CPU, so a seed
    means the same noise on every device, or (``noise_device`` "model") on the model's
    device, as the paper's code draws them. The pipeline scales them by the
    scheduler's initial sigma."""
    if noise_device not in NOISE_DEVICES:
        raise ValueError(f"evaluation.noise_device: {noise_device!r} is not one of {', '.join(NOISE_DEVICES)}")
    device = pipeline.unet.device if noise_device == "model" else torch.device("cpu")
    factor = pipeline.vae_scale_factor
    shape = (n, pipeline.unet.config.in_channels, resolution // factor, resolution // factor)
    generator = torch.Generator(device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


def scheduler_class(name: str) -> type | None:
    """The diffusers scheduler class called ``name``, or None if there is none."""
    # Here, not at module level: the figure jobs read sample indexes through this module.
    import diffusers

    cls = getattr(diffusers, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin) else None


def use_scheduler(pipeline, name: str) -> None:
    """Sample with the diffusers scheduler class ``name``, on the model's noise schedule."""
    cls = scheduler_class(name)
    if cls is None:
        raise ValueError(f"evaluation.scheduler: {name!r} is not a diffusers scheduler class")
    pipeline.scheduler = cls.from_config(pipeline.scheduler.config)


@torch.no_grad()
def generate_samples(
    pipeline,
    tasks: list[tuple[int | None, Concept]],
    settings: GenerationSettings,
    out_dir: str | Path,
) -> list[dict]:
    """Generate every (task, template, sample) image under ``out_dir`` in batches and
    write ``index.csv``; ``tasks`` pairs each concept with its task index in the run
    (None for the base model, which has no run). Returns the index rows."""
    jobs = []
    for task, concept in tasks:
        folder = concept.name if task is None else f"task{task}_{concept.name}"
        for template, prompt in enumerate(evaluation_prompts(concept, settings.templates)):
            jobs += _sample_jobs(settings, folder, template, prompt, task="" if task is None else task, concept=concept.name)
    return _render(pipeline, jobs, settings, out_dir)


@torch.no_grad()
def generate_prompt_samples(
    pipeline,
    prompts: list[tuple[str, str]],
    settings: GenerationSettings,
    out_dir: str | Path,
) -> list[dict]:
    """Samples of free prompts, not of a task's templates: ``prompts`` pairs a group
    (its folder and ``concept`` column) with a prompt; a group's prompts are numbered
    as templates, in order. The same fixed latents as ``generate_samples``."""
    jobs, numbered = [], {}
    for group, prompt in prompts:
        template = numbered[group] = numbered.get(group, -1) + 1
        jobs += _sample_jobs(settings, group, template, prompt, task="", concept=group)
    return _render(pipeline, jobs, settings, out_dir)


def _sample_jobs(settings: GenerationSettings, folder: str, template: int, prompt: str, **columns) -> list[dict]:
    return [
        {"prompt": prompt, "template": template, "sample": sample, **columns, "file": f"{folder}/t{template}_s{sample}.png"}
        for sample in range(settings.samples_per_prompt)
    ]


def _render(pipeline, jobs: list[dict], settings: GenerationSettings, out_dir: str | Path) -> list[dict]:
    """Draw every job's image in batches, sample k from fixed latent k, and write the index."""
    out_dir = Path(out_dir)
    if settings.scheduler:
        use_scheduler(pipeline, settings.scheduler)
    latents = fixed_latents(
        pipeline, settings.samples_per_prompt, settings.latent_seed, settings.resolution, settings.noise_device
    )
    # Only what is set: the pipeline's own default stands for the rest, as in the paper.
    options = {} if settings.guidance_scale is None else {"guidance_scale": settings.guidance_scale}
    for job in jobs:
        (out_dir / job["file"]).parent.mkdir(parents=True, exist_ok=True)
    device = pipeline.unet.device
    for start in range(0, len(jobs), settings.batch_size):
        batch = jobs[start : start + settings.batch_size]
        images = pipeline(
            prompt=[job["prompt"] for job in batch],
            latents=latents[[job["sample"] for job in batch]].to(device, pipeline.unet.dtype),
            num_inference_steps=settings.inference_steps,
            height=settings.resolution,
            width=settings.resolution,
            generator=torch.Generator(latents.device).manual_seed(settings.latent_seed),
            **options,
        ).images
        for job, image in zip(batch, images):
            image.save(out_dir / job["file"])
    with open(out_dir / INDEX, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(jobs)
    return jobs


def read_index(samples_dir: str | Path) -> list[dict]:
    with open(Path(samples_dir) / INDEX, newline="") as handle:
        return list(csv.DictReader(handle))
