"""The UnlearnCanvas dataset (Zhang et al. 2024): the paper's style tasks.

``dataset.path`` is the dataset in its upstream layout: one folder per style holding
one folder per object class (``<Style>/<Object>/<n>.jpg``, n = 1..20), and
``Seed_Images/<Object>/`` with the unstyled photos. Every other entry (files such as
``metadata.jsonl``, hidden folders) is ignored.

The paper says only "with seed 42: 10 train objects, 10 styles; each style trains on
5 images of one object; its metric reference set is one image of each held-out object
in that style". The draws below follow the paper's reference code in order, on one
generator seeded like ``random.seed(42)`` (10 is ``dataset.selection_size``; an
experiment of n tasks takes the first n styles):

1. ``train_objects = random.sample(objects, 10)``, ``objects`` being the sorted folder
   names of ``Seed_Images``; the held-out objects are the other ones, sorted;
2. ``styles = random.sample(sorted(style folders), 10)``;
3. ``random.choices(range(1, m + 1), k=len(held_out))``: one image number per held-out
   object, shared by every style, m being the fewest images any held-out object has in
   ``Seed_Images`` (20 in the real dataset, so ``range(1, 21)`` as in the reference);
4. for the i-th style, in order: ``random.sample(images, 5)`` of ``<style>/<train_objects[i]>``,
   its images sorted by file name.

So style i trains on 5 images of train object i ("{style} image of {object}", names
lower-cased with '_' read as a space), and its reference set is that style's image of
the drawn number of every held-out object: the style seen on subjects it never trained
on, as the synthetic styles source does with its classes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from continual_lora.data.concepts import Concept, copy_concept
from continual_lora.data.sources import (
    PROTOCOL_SELECTION_SEED,
    DatasetError,
    DatasetSource,
    check_domain,
    check_image,
    check_image_folder,
    dataset_root,
    image_files,
    path_safe,
    selection_size,
)

SEED_IMAGES = "Seed_Images"
TRAIN_IMAGES_PER_STYLE = 5


def _folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _words(name: str) -> str:
    return name.lower().replace("_", " ")


@dataclass(frozen=True)
class StyleSelection:
    """The draws of steps 1 and 2: which styles, and which object each trains on."""

    styles: list[str]
    train_objects: list[str]  # train_objects[i] is what styles[i] trains on
    held_out: list[str]


class UnlearnCanvasSource(DatasetSource):
    name = "unlearncanvas"
    settings_keys = ("path", "selection_size")
    expected_content = "the UnlearnCanvas dataset (<Style>/<Object>/<n>.jpg and Seed_Images/)"

    @cached_property
    def root(self) -> Path:
        root = dataset_root(self.settings)
        if not (root / SEED_IMAGES).is_dir():
            raise DatasetError("dataset.path", f"{str(root)!r} has no {SEED_IMAGES} folder, so it is not UnlearnCanvas")
        return root

    def concepts(self, n: int) -> list[Concept]:
        check_domain(self, "styles")
        selection = self._select(selection_size(self.settings, n))
        return [
            Concept(
                name=path_safe(style),
                domain="styles",
                prompt=f"{_words(style)} image of {_words(obj)}",
                subject=_words(style),
                class_word=_words(obj),
            )
            for style, obj in zip(selection.styles[:n], selection.train_objects)
        ]

    def check(self, n: int) -> list[Concept]:
        concepts = super().check(n)
        # The draws of prepare(), replayed to find every file the first n styles read.
        selection, numbers, _ = self._replay(selection_size(self.settings, n))
        for style, obj in zip(selection.styles[:n], selection.train_objects):
            check_image_folder(self.root / style / obj, minimum=TRAIN_IMAGES_PER_STYLE)
            for held, number in zip(selection.held_out, numbers):
                check_image(self._numbered_image(style, held, number))
        return concepts

    def prepare(self, concept: Concept, out_dir: str | Path) -> None:
        # The earlier styles' draws come first on the one generator, so the sequence is
        # replayed up to this style; that lists a few folders and opens no image.
        selection, numbers, rng = self._replay(selection_size(self.settings, 0))
        self._validate(selection)
        names = [path_safe(style) for style in selection.styles]
        if concept.name not in names:
            raise ValueError(f"concept {concept.name!r} is not among the selected UnlearnCanvas styles {names}")
        index = names.index(concept.name)
        for style, obj in zip(selection.styles[: index + 1], selection.train_objects):
            candidates = image_files(self.root / style / obj)
            if len(candidates) < TRAIN_IMAGES_PER_STYLE:
                raise DatasetError(
                    "dataset.path",
                    f"folder {str(self.root / style / obj)!r} holds {len(candidates)} images, "
                    f"fewer than the {TRAIN_IMAGES_PER_STYLE} a style trains on",
                )
            train_files = rng.sample(candidates, TRAIN_IMAGES_PER_STYLE)
        style = selection.styles[index]
        reference_files = [
            self._numbered_image(style, held, number) for held, number in zip(selection.held_out, numbers)
        ]
        copy_concept(out_dir, concept, train=train_files, reference=reference_files)

    def _draw(self, rng: random.Random, k: int) -> StyleSelection:
        objects = _folders(self.root / SEED_IMAGES)
        if len(objects) <= k:
            raise DatasetError(
                "dataset.path",
                f"{str(self.root)!r} has {len(objects)} objects in {SEED_IMAGES}, "
                f"but the selection needs {k} to train on and at least one held out",
            )
        train_objects = rng.sample(objects, k)
        held_out = [obj for obj in objects if obj not in train_objects]
        styles = [name for name in _folders(self.root) if name != SEED_IMAGES]
        if len(styles) < k:
            raise DatasetError(
                "dataset.path", f"{str(self.root)!r} has {len(styles)} style folders, fewer than the {k} selected"
            )
        return StyleSelection(styles=rng.sample(styles, k), train_objects=train_objects, held_out=held_out)

    def _replay(self, k: int) -> tuple[StyleSelection, list[int], random.Random]:
        """The selection, each held-out object's image number, and the generator after
        those draws, where the styles' training-image draws continue."""
        rng = random.Random(PROTOCOL_SELECTION_SEED)
        selection = self._draw(rng, k)
        numbers = rng.choices(range(1, self._images_per_object(selection.held_out) + 1), k=len(selection.held_out))
        return selection, numbers, rng

    def _select(self, k: int) -> StyleSelection:
        selection = self._draw(random.Random(PROTOCOL_SELECTION_SEED), k)
        self._validate(selection)
        return selection

    def _validate(self, selection: StyleSelection) -> None:
        names = [path_safe(style) for style in selection.styles]
        if len(set(names)) < len(names):
            raise DatasetError(
                "dataset.path", f"{str(self.root)!r} has style folders whose names coincide as concept names: {names}"
            )
        for style, obj in zip(selection.styles, selection.train_objects):
            if not (self.root / style / obj).is_dir():
                raise DatasetError("dataset.path", f"{str(self.root)!r} has no folder {style}/{obj}")

    def _images_per_object(self, held_out: list[str]) -> int:
        counts = [len(image_files(self.root / SEED_IMAGES / obj)) for obj in held_out]
        if min(counts) == 0:
            raise DatasetError("dataset.path", f"{str(self.root / SEED_IMAGES)!r} has an object folder without images")
        return min(counts)

    def _numbered_image(self, style: str, obj: str, number: int) -> Path:
        folder = self.root / style / obj
        for path in image_files(folder) if folder.is_dir() else []:
            if path.stem == str(number):
                return path
        raise DatasetError("dataset.path", f"folder {str(folder)!r} has no image {number} for the reference set")
