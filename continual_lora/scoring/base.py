"""The interface every metric backend implements, what it is given, and its registry.

A metric scores ONE task for ONE model: the samples that model generated for the
task's evaluation prompts, against the task's held-out reference images
(the paper: "a score is the mean cosine similarity of every generated image to every
reference image of that task"; docs/reproduction.md). A backend loads its network once in
``__init__``, because a scoring job scores many tasks with the same metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from continual_lora.data.concepts import DOMAINS, Concept, read_concept
from continual_lora.lora import Tensors

METRICS: dict[str, type[Metric]] = {}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


# The default of a setting that has none: leaving it out of the config is an error.
REQUIRED: Any = _Required()


@dataclass
class ModelHandle:
    """The checkpoint under evaluation, for metrics that query the model itself.

    ``deltas`` is exactly what is fused into ``pipeline.unet`` now ({module: W - W0};
    empty for the base model), so a metric can take the model back to W0 in place
    and return, without a second copy of the model.
    """

    pipeline: Any  # a diffusers pipeline
    deltas: Tensors = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        base_model: Any,  # a ModelSource, or what ModelSource.of takes
        handoff: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = torch.float32,
        method: Any = None,  # the ContinualMethod that wrote the handoff, with its settings
        task_lora: str | Path | None = None,
    ) -> ModelHandle:
        """The model evaluated after a task (its ``handoff.safetensors``, and its
        ``task_lora`` where the method evaluates another model than it hands on), or the
        base model for None."""
        # Deferred: diffusers is heavy, and most metrics never need a pipeline.
        from continual_lora.models.loading import checkpoint_deltas, load_pipeline

        deltas = checkpoint_deltas(handoff, device, method, task_lora) if handoff is not None else {}
        pipeline = load_pipeline(base_model, deltas, device, dtype)
        # Kept in host memory for the whole job: a metric moves them one module at a time.
        return cls(pipeline, {name: delta.cpu() for name, delta in deltas.items()})


@dataclass
class ScoringInput:
    samples: list[Image.Image]  # images generated for this task
    prompts: list[str]  # the prompt of each sample
    references: list[Image.Image]  # the task's held-out reference images
    concept: Concept
    concept_dir: Path | None = None
    model: ModelHandle | None = None

    def __post_init__(self):
        if len(self.samples) != len(self.prompts):
            raise ValueError(
                f"task {self.concept.name!r}: {len(self.samples)} samples but {len(self.prompts)} prompts"
            )
        if not self.references:
            raise ValueError(f"task {self.concept.name!r} has no reference images to score against")

    @classmethod
    def from_concept_dir(
        cls,
        concept_dir: str | Path,
        samples: list[Image.Image],
        prompts: list[str],
        model: ModelHandle | None = None,
    ) -> ScoringInput:
        prepared = read_concept(concept_dir)
        return cls(samples, prompts, prepared.load_reference_images(), prepared.concept, Path(concept_dir), model)


class Metric(ABC):
    """One backend. Subclasses set ``name`` (which registers them), ``higher_is_better``
    and ``defaults``: every setting the backend reads, with its default (``REQUIRED``
    where there is none). Unknown settings are refused, so a typo in the config fails
    loudly instead of silently scoring with a default."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    # False where the score needs no generated images (the workflow may skip sampling).
    uses_samples: ClassVar[bool] = True
    # True where the score queries the evaluated model itself (ScoringInput.model).
    uses_model: ClassVar[bool] = False
    # False where the score ignores the task's reference images (CLIP-T reads the prompts).
    uses_references: ClassVar[bool] = True
    # The task domains whose scores mean something (a style descriptor says nothing
    # about an object's identity); the workflow refuses the others when it loads.
    domains: ClassVar[tuple[str, ...]] = DOMAINS
    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Only concrete backends define `name`; shared intermediate bases do not.
        if "name" in cls.__dict__:
            if cls.name in METRICS:
                raise ValueError(f"two metrics are named {cls.name!r}")
            METRICS[cls.name] = cls

    @classmethod
    def unknown_settings(cls, settings: dict[str, Any] | None) -> list[str]:
        """The names in ``settings`` that the backend does not read."""
        return sorted(set(settings or {}) - set(cls.defaults))

    @classmethod
    def missing_settings(cls, settings: dict[str, Any] | None) -> list[str]:
        """The settings without a default that ``settings`` leaves unset."""
        return sorted(k for k, v in cls.defaults.items() if v is REQUIRED and k not in (settings or {}))

    def __init__(self, settings: dict[str, Any] | None, device: str | torch.device):
        settings = dict(settings or {})
        unknown = self.unknown_settings(settings)
        if unknown:
            raise ValueError(
                f"metric {self.name!r}: unknown settings {unknown}; it reads {sorted(self.defaults)}"
            )
        missing = self.missing_settings(settings)
        if missing:
            raise ValueError(f"metric {self.name!r}: settings {missing} are required")
        self.settings = {**self.defaults, **settings}
        self.device = torch.device(device)

    @abstractmethod
    def score(self, job: ScoringInput) -> float:
        """The task's score for the model that made ``job.samples``."""

    # Whether ``retention`` is implemented: the metric can say how far a model's
    # samples of general prompts drifted from the base model's (continual_lora.retention).
    scores_retention: ClassVar[bool] = False

    def retention(self, samples: list[Image.Image], base_samples: list[Image.Image], prompts: list[str]) -> float:
        """How much of the base model's behaviour ``samples`` keep, 1.0 for the base
        model's own ``base_samples``: sample i and base sample i share their prompt
        and their initial noise."""
        raise NotImplementedError(f"metric {self.name!r} does not score retention")


def pairwise_mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity over every (row of a, row of b) pair.

    The mean of u_i . v_j over all pairs of unit vectors equals (mean_i u_i) . (mean_j v_j),
    so the full n x m matrix is never built.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(
            f"need two non-empty (n, d) feature matrices of equal d, not {tuple(a.shape)} and {tuple(b.shape)}"
        )
    u = torch.nn.functional.normalize(a.double(), dim=1)
    v = torch.nn.functional.normalize(b.double(), dim=1)
    return float(u.mean(0) @ v.mean(0))


def paired_mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over i of cos(a_i, b_i): row i of ``a`` against row i of ``b`` only."""
    if a.ndim != 2 or a.shape != b.shape or not len(a):
        raise ValueError(f"need two non-empty (n, d) feature matrices of one shape, not {tuple(a.shape)} and {tuple(b.shape)}")
    u = torch.nn.functional.normalize(a.double(), dim=1)
    v = torch.nn.functional.normalize(b.double(), dim=1)
    return float((u * v).sum(1).mean())


class EmbeddingMetric(Metric):
    """A metric that embeds images one by one and scores the pairwise-mean cosine of
    samples against references (the paper's CLIP-I, DINO and CSD scores)."""

    defaults: ClassVar[dict[str, Any]] = {"batch_size": 32}

    @abstractmethod
    def embed_batch(self, images: list[Image.Image]) -> torch.Tensor:
        """(len(images), d) features of one batch."""

    @torch.no_grad()
    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        size = int(self.settings["batch_size"])
        batches = [images[i : i + size] for i in range(0, len(images), size)]
        parts = [self.embed_batch([im.convert("RGB") for im in batch]) for batch in batches]
        return torch.cat([p.cpu().double() for p in parts])

    def score(self, job: ScoringInput) -> float:
        if not job.samples:
            raise ValueError(f"metric {self.name!r}: task {job.concept.name!r} has no samples to score")
        return pairwise_mean_cosine(self.embed(job.samples), self.embed(job.references))

    scores_retention: ClassVar[bool] = True

    def retention(self, samples: list[Image.Image], base_samples: list[Image.Image], prompts: list[str]) -> float:
        """Mean cosine of each sample to the base model's sample of the same prompt and
        noise (paired, not every pair: the base model scores exactly 1)."""
        return paired_mean_cosine(self.embed(samples), self.embed(base_samples))


def get_metric(name: str, settings: dict[str, Any] | None, device: str | torch.device) -> Metric:
    try:
        cls = METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}") from None
    return cls(settings, device)
