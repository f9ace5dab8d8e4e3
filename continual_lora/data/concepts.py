"""The prepared-data contract: one folder per concept, whatever the dataset.

``{concept}/concept.json`` describes the concept and lists its images, which lie
beside it under ``train/`` (what the task trains on) and ``reference/`` (held-out
images that metrics compare generated samples with). Every dataset source (the
embedded synthetic world, DreamBooth, UnlearnCanvas) prepares into this layout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

CONCEPT_FILE = "concept.json"
DOMAINS = ("objects", "styles")


@dataclass(frozen=True)
class Concept:
    name: str  # path-safe and unique within a dataset
    domain: str  # "objects" or "styles"
    prompt: str  # the training prompt
    subject: str  # what fills "{}" in the evaluation templates
    class_word: str  # the object class (for styles: the class of the training images)
    token: str | None = None  # the rare token bound to an object; None for styles

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"concept {self.name!r}: domain must be one of {DOMAINS}, not {self.domain!r}")


@dataclass(frozen=True)
class PreparedConcept:
    concept: Concept
    train_images: list[Path]
    reference_images: list[Path]

    def load_train_images(self) -> list[Image.Image]:
        return _load_rgb(self.train_images)

    def load_reference_images(self) -> list[Image.Image]:
        return _load_rgb(self.reference_images)


def _load_rgb(paths: list[Path]) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in paths]


def write_concept(
    out_dir: str | Path, concept: Concept, train: list[Image.Image], reference: list[Image.Image]
) -> Path:
    out_dir = Path(out_dir)
    files = {}
    for split, images in (("train", train), ("reference", reference)):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        files[split] = []
        for i, image in enumerate(images):
            relative = f"{split}/{i:02d}.png"
            image.save(out_dir / relative)
            files[split].append(relative)
    payload = {"concept": asdict(concept), "train": files["train"], "reference": files["reference"]}
    (out_dir / CONCEPT_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return out_dir


def read_concept(concept_dir: str | Path) -> PreparedConcept:
    concept_dir = Path(concept_dir)
    payload = json.loads((concept_dir / CONCEPT_FILE).read_text())
    return PreparedConcept(
        concept=Concept(**payload["concept"]),
        train_images=[concept_dir / p for p in payload["train"]],
        reference_images=[concept_dir / p for p in payload["reference"]],
    )
