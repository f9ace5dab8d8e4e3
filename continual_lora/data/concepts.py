"""The prepared-data contract: one folder per concept, whatever the dataset.

``{concept}/concept.json`` describes the concept and lists its images, which lie
beside it under ``train/`` (what the task trains on) and ``reference/`` (images that
metrics compare generated samples with; a dataset may list training images there
too, as DreamBooth does). Every dataset source (the embedded synthetic world,
DreamBooth, UnlearnCanvas, a folder of one's own concepts) prepares into this layout.

Images of a dataset on disk are copied byte for byte, so that a job reads exactly
the dataset's own files, as the paper's code does: training images are turned
upright by their EXIF orientation and resized and cropped by the training step
(``continual_lora.images``), and reference images are read as stored.
"""

from __future__ import annotations

import json
import shutil
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
        # Deferred: it imports torch, which building the workflow's graph does not need.
        from continual_lora.images import read_upright

        return [read_upright(p) for p in self.train_images]

    def load_reference_images(self) -> list[Image.Image]:
        from continual_lora.images import read_as_stored

        return [read_as_stored(p) for p in self.reference_images]


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
    return _write_description(out_dir, concept, files["train"], files["reference"])


def copy_concept(out_dir: str | Path, concept: Concept, train: list[Path], reference: list[Path]) -> Path:
    """The concept's folder with its dataset's files copied as they are (no decoding),
    each named ``{its folder}_{its name}`` (a dataset's files are unique by both); a
    file in both lists is copied once, into ``train/``."""
    out_dir = Path(out_dir)
    copied: dict[Path, str] = {}
    for split, paths in (("train", train), ("reference", reference)):
        for path in paths:
            if path in copied:
                continue
            relative = f"{split}/{path.parent.name}_{path.name}"
            (out_dir / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out_dir / relative)
            copied[path] = relative
    return _write_description(out_dir, concept, [copied[p] for p in train], [copied[p] for p in reference])


def _write_description(out_dir: Path, concept: Concept, train: list[str], reference: list[str]) -> Path:
    payload = {"concept": asdict(concept), "train": train, "reference": reference}
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
