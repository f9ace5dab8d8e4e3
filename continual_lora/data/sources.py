"""Dataset sources: where an experiment's concepts come from, found through a registry.

A source lists its concepts cheaply (the workflow needs their names to build the
graph) and prepares one concept into the layout of ``continual_lora.data.concepts``.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from continual_lora.data import synthetic
from continual_lora.data.concepts import Concept, write_concept

# The paper's tokens, in order; the synthetic world continues with more rare
# three-letter strings when it has more than ten objects.
RARE_TOKENS = (
    "sks", "zwz", "sbu", "uwu", "pdw", "twt", "zsn", "ofl", "psq", "cws",
    "qxv", "jvk", "wqz", "xpf", "vbj", "kzq", "gxw", "fqh", "yzv", "hjx",
    "zqk", "vxw", "bqj", "xkz", "jqf", "wvx", "qzb", "kxj", "fzv", "xqw",
)  # fmt: skip

# The paper draws ten concepts per domain with seed 42 (docs/reproduction.md). The sources on
# disk draw ``dataset.selection_size`` (default ten) whatever the number of tasks, so
# that a shorter experiment runs a prefix of the paper's task list, not another draw.
PROTOCOL_SELECTION = 10
PROTOCOL_SELECTION_SEED = 42
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# A concept name is a folder name and a workflow wildcard (common.smk's constraint).
CONCEPT_NAME = re.compile(r"[a-z0-9_]+")
# Images are checked by decoding them at about this size: JPEG decodes at 1/2, 1/4 or
# 1/8 scale for it, so a truncated or corrupt file is found without decoding it whole.
CHECK_DECODE_SIZE = 64

SOURCES: dict[str, type[DatasetSource]] = {}


class DatasetError(ValueError):
    """A problem with an experiment's dataset, tied to the config key (relative to the
    experiment, e.g. ``dataset.path``) that it comes from, so that the workflow can
    name the key: ``str()`` is the key followed by ``detail``."""

    def __init__(self, key: str, detail: str):
        super().__init__(f"{key} {detail}")
        self.key = key
        self.detail = detail


class DatasetMissing(DatasetError):
    """The dataset's folder is not there (absent or empty): not yet downloaded. A dry
    run goes on without it; anything else stops."""

    def __init__(self, key: str, detail: str, path: Path):
        super().__init__(key, detail)
        self.path = path


class DatasetSource(ABC):
    name: ClassVar[str]
    # The ``dataset`` keys this source reads, besides ``source``; others are refused.
    settings_keys: ClassVar[tuple[str, ...]] = ()
    # What belongs at ``dataset.path``, for the warning of a dry run without it.
    expected_content: ClassVar[str] = ""

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

    def placeholder_concepts(self, n: int) -> list[Concept]:
        """Stand-ins for ``n`` concepts whose names only the missing dataset knows, for a
        dry run: named ``{source}_missing_{i}`` so that every job name says so."""
        return [
            Concept(
                name=f"{self.name}_missing_{i:02d}",
                domain=self.domain,
                prompt=f"(concept {i} of the missing {self.name} dataset)",
                subject=f"(concept {i})",
                class_word="(unknown)",
            )
            for i in range(1, n + 1)
        ]

    def check(self, n: int) -> list[Concept]:
        """Find now what would fail a job later: the first ``n`` concepts exist and are
        distinct (sources on disk also open every image they will read). Raises
        DatasetError; cheap enough to run whenever the workflow loads."""
        unknown = sorted(set(self.settings) - {"source", *self.settings_keys})
        if unknown:
            raise DatasetError(
                f"dataset.{unknown[0]}",
                f"is not read by dataset source {self.name!r} (it reads {', '.join(self.settings_keys)}); remove it",
            )
        concepts = self.concepts(n)
        check_distinct(concepts)
        return concepts


class SyntheticSource(DatasetSource):
    """The embedded world of ``continual_lora.data.synthetic``: made, not downloaded."""

    name = "synthetic"
    settings_keys = ("seed", "resolution", "n_reference", "pattern_scale")

    @property
    def resolution(self) -> int:
        """Side in pixels of the rendered images (``dataset.resolution``)."""
        return int(self.settings.get("resolution", synthetic.IMAGE_SIZE))

    @property
    def seed(self) -> int:
        return int(self.settings.get("seed", 0))

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

    def check(self, n: int) -> list[Concept]:
        if n > len(self._world):
            raise DatasetError(
                "n_tasks", f"{n} exceeds the {len(self._world)} concepts of the synthetic {self.domain} dataset"
            )
        return super().check(n)

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
            return synthetic.object_concepts(len(RARE_TOKENS), self.seed, float(self.settings.get("pattern_scale", 1.0)))
        return synthetic.style_concepts(synthetic.MAX_STYLE_CONCEPTS, self.seed)


def dataset_root(settings: dict[str, Any]) -> Path:
    """The existing folder that ``dataset.path`` names."""
    if not settings.get("path"):
        raise DatasetError("dataset.path", f"is required for dataset.source {settings.get('source')!r}")
    root = Path(settings["path"]).expanduser()
    if not root.exists():
        raise DatasetMissing("dataset.path", f"{str(root)!r} is not a directory", root)
    if not root.is_dir():
        raise DatasetError("dataset.path", f"{str(root)!r} is not a directory")
    check_readable(root)
    if next(root.iterdir(), None) is None:
        source = SOURCES.get(settings.get("source"))
        expected = source.expected_content if source else f"the {settings.get('source')} dataset"
        raise DatasetMissing("dataset.path", f"{str(root)!r} is empty; expected {expected}", root)
    return root


def selection_size(settings: dict[str, Any], n: int) -> int:
    """How many concepts the seeded selection draws; the experiment takes the first ``n``."""
    size = int(settings.get("selection_size", PROTOCOL_SELECTION))
    if n > size:
        raise DatasetError("n_tasks", f"{n} exceeds dataset.selection_size {size}, the concepts the selection draws")
    return size


def check_domain(source: DatasetSource, domain: str) -> None:
    if source.domain != domain:
        raise DatasetError("domain", f"{source.domain!r} does not match dataset.source {source.name!r}, which holds {domain}")


def check_distinct(concepts: list[Concept]) -> None:
    """Concept names are folder names and wildcards, and tokens tell concepts apart in
    prompts: each must be usable and unique."""
    for concept in concepts:
        if not CONCEPT_NAME.fullmatch(concept.name):
            raise DatasetError(
                "dataset",
                f"concept name {concept.name!r} is not usable as a folder name and wildcard "
                "(expected lower-case letters, digits and '_'); rename its folder",
            )
    for attribute in ("name", "token"):
        seen: dict[str, int] = {}
        for position, concept in enumerate(concepts, start=1):
            value = getattr(concept, attribute)
            if value is None:
                continue
            if value in seen:
                raise DatasetError(
                    "dataset",
                    f"has two concepts with the {attribute} {value!r} (concepts {seen[value]} and {position}); "
                    f"each concept needs its own {attribute}",
                )
            seen[value] = position


def check_readable(folder: Path) -> None:
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DatasetError("dataset.path", f"folder {str(folder)!r} cannot be read by this user (permission denied)")


def check_image(path: Path) -> None:
    """Open ``path`` as the preparation will, on a small scale: a file that is not an
    image, truncated or corrupt fails here, named, instead of in a job."""
    try:
        with Image.open(path) as image:
            image.verify()  # the container: chunk structure and checksums
        with Image.open(path) as image:
            image.draft("RGB", (CHECK_DECODE_SIZE, CHECK_DECODE_SIZE))
            image.load()  # the pixel stream, which verify() does not decode
    except Exception as error:  # noqa: BLE001 -- PIL signals a bad file with many exception types
        raise DatasetError(
            "dataset.path", f"file {str(path)!r} cannot be read as an image ({error}); replace or remove it"
        ) from None


def check_image_folder(folder: Path, minimum: int = 1) -> list[Path]:
    """The images of one concept folder, each opened: every entry that is not hidden
    must be an image, and there must be at least ``minimum`` of them."""
    check_readable(folder)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    strays = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
    if strays:
        raise DatasetError(
            "dataset.path",
            f"folder {str(folder)!r} holds {strays[0]!r}, which is not an image (expected only "
            f"{', '.join(IMAGE_SUFFIXES)} files); move it out of the dataset",
        )
    images = image_files(folder)
    if len(images) < minimum:
        count = "no images" if not images else f"{len(images)} images, fewer than the {minimum} needed"
        raise DatasetError("dataset.path", f"folder {str(folder)!r} holds {count}")
    for path in images:
        check_image(path)
    return images


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


def make_source(domain: str, settings: dict[str, Any]) -> DatasetSource:
    kind = settings.get("source")
    if kind not in SOURCES:
        raise ValueError(f"dataset.source {kind!r} is unknown; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[kind](domain, settings)
