"""Dataset sources: where an experiment's concepts come from, found through a registry.

A source lists its concepts cheaply (the workflow needs their names to build the
graph) and prepares one concept into the layout of ``continual_lora.data.concepts``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageOps

from continual_lora.data import synthetic
from continual_lora.data.concepts import Concept, write_concept

# PROTOCOL.md's tokens, in order; the synthetic world continues with more rare
# three-letter strings when it has more than ten objects.
RARE_TOKENS = (
    "sks", "zwz", "sbu", "uwu", "pdw", "twt", "zsn", "ofl", "psq", "cws",
    "qxv", "jvk", "wqz", "xpf", "vbj", "kzq", "gxw", "fqh", "yzv", "hjx",
    "zqk", "vxw", "bqj", "xkz", "jqf", "wvx", "qzb", "kxj", "fzv", "xqw",
)  # fmt: skip

# The paper draws ten concepts per domain with seed 42 (PROTOCOL.md). The sources on
# disk draw ``dataset.selection_size`` (default ten) whatever the number of tasks, so
# that a shorter experiment runs a prefix of the paper's task list, not another draw.
PROTOCOL_SELECTION = 10
PROTOCOL_SELECTION_SEED = 42
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

SOURCES: dict[str, type[DatasetSource]] = {}


class DatasetSource(ABC):
    name: ClassVar[str]

    def __init__(self, domain: str, settings: dict[str, Any]):
        self.domain = domain
        self.settings = settings

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        SOURCES[cls.name] = cls

    @abstractmethod
    def concepts(self, n: int) -> list[Concept]:
        """The first ``n`` concepts of the dataset, in its canonical order."""

    @abstractmethod
    def prepare(self, concept: Concept, out_dir: str | Path) -> None:
        """Write ``concept``'s images and ``concept.json`` under ``out_dir``."""


class SyntheticSource(DatasetSource):
    """The embedded world of ``continual_lora.data.synthetic``: made, not downloaded."""

    name = "synthetic"

    @property
    def seed(self) -> int:
        return int(self.settings.get("seed", 0))

    @property
    def resolution(self) -> int:
        return int(self.settings.get("resolution", synthetic.IMAGE_SIZE))

    def concepts(self, n: int) -> list[Concept]:
        if self.domain == "objects":
            if n > len(RARE_TOKENS):
                raise ValueError(f"the synthetic objects dataset has at most {len(RARE_TOKENS)} concepts, not {n}")
            return [
                Concept(
                    name=obj.name,
                    domain="objects",
                    prompt=f"a photo of {token} {obj.class_word}",
                    subject=f"{token} {obj.class_word}",
                    class_word=obj.class_word,
                    token=token,
                )
                for obj, token in zip(self._world[:n], RARE_TOKENS)
            ]
        if n > len(self._world):
            raise ValueError(f"the synthetic styles dataset has at most {len(self._world)} concepts, not {n}")
        concepts = []
        for style in self._world[:n]:
            train_class, _ = synthetic.style_subjects(style, self.seed)
            concepts.append(
                Concept(
                    name=style.name,
                    domain="styles",
                    prompt=f"{style.name} image of {train_class}",
                    subject=style.name,
                    class_word=train_class,
                )
            )
        return concepts

    def prepare(self, concept: Concept, out_dir: str | Path) -> None:
        world = self._world
        index = [c.name for c in world].index(concept.name)
        # One random stream per concept, so preparing a concept alone gives the same
        # images as preparing all of them.
        rng = np.random.default_rng([self.seed, index, 1 if self.domain == "styles" else 0])
        size = self.resolution
        if self.domain == "objects":
            obj = world[index]
            n_train = int(rng.integers(4, 7))
            train = [synthetic.render_object(obj, rng, size) for _ in range(n_train)]
            reference = [synthetic.render_object(obj, rng, size) for _ in range(int(self.settings.get("n_reference", 6)))]
        else:
            style = world[index]
            train_class, reference_classes = synthetic.style_subjects(style, self.seed)
            train = [synthetic.render_styled(style, train_class, rng, size) for _ in range(5)]
            reference = [synthetic.render_styled(style, c, rng, size) for c in reference_classes]
        write_concept(out_dir, concept, train, reference)

    @cached_property
    def _world(self) -> list:
        """Every object or style the synthetic world can make, in canonical order."""
        if self.domain == "objects":
            return synthetic.object_concepts(len(RARE_TOKENS), self.seed)
        return synthetic.style_concepts(synthetic.MAX_STYLE_CONCEPTS, self.seed)


def dataset_root(settings: dict[str, Any]) -> Path:
    """The existing folder that ``dataset.path`` names."""
    if not settings.get("path"):
        raise ValueError(f"dataset.path is required for dataset.source {settings.get('source')!r}")
    root = Path(settings["path"]).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset.path {str(root)!r} is not a directory")
    return root


def selection_size(settings: dict[str, Any], n: int) -> int:
    """How many concepts the seeded selection draws; the experiment takes the first ``n``."""
    size = int(settings.get("selection_size", PROTOCOL_SELECTION))
    if n > size:
        raise ValueError(f"n_tasks {n} exceeds dataset.selection_size {size}, the concepts the selection draws")
    return size


def check_domain(source: DatasetSource, domain: str) -> None:
    if source.domain != domain:
        raise ValueError(
            f"domain {source.domain!r} does not match dataset.source {source.name!r}, which holds {domain}"
        )


def path_safe(name: str) -> str:
    """A dataset's own name for a concept, as a concept name (a path component and a
    workflow wildcard: lower-case letters, digits and '_')."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def image_files(folder: Path) -> list[Path]:
    """The images in ``folder``, sorted by file name (hidden files such as .DS_Store skipped)."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def square_rgb(path: str | Path, resolution: int) -> Image.Image:
    """An image file as an upright RGB square of side ``resolution``, centre-cropped.

    Phone photos store their pixels sideways with an EXIF orientation tag; without
    the transpose a model would learn the subject lying on its side.
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent pixels carry arbitrary colours; show them as a white background.
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
    return ImageOps.fit(image, (resolution, resolution), Image.Resampling.LANCZOS)


def make_source(domain: str, settings: dict[str, Any]) -> DatasetSource:
    kind = settings.get("source")
    if kind not in SOURCES:
        raise ValueError(f"dataset.source {kind!r} is unknown; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[kind](domain, settings)
