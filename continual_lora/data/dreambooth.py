"""The DreamBooth dataset (Ruiz et al. 2023): the paper's object tasks.

``dataset.path`` is the dataset in its upstream layout: a folder holding
``prompts_and_classes.txt`` and one folder of photos per subject (``<subject>/*.jpg``),
or the repository folder above it that holds that folder as ``dataset/``.

The selection is the paper's (docs/reproduction.md), read literally: the classes and their subjects come
from the ``subject_name,class`` table of ``prompts_and_classes.txt``; then, after
``random.seed(42)``, ``random.sample(sorted(classes), 10)`` picks the classes and one
``random.choice`` per sampled class, in the sampled order, picks its subject among
that class's subjects sorted by name (the upstream table lists them in that order, so
this is also what a choice over the table's order gives). The i-th selected subject
gets the i-th of the paper's rare tokens, and an experiment of n tasks takes the
first n. ``dataset.selection_size`` replaces the 10 (a larger one is another draw).

Each subject trains on all of its photos, as DreamBooth does, and its reference set
(what CLIP-I and DINO compare samples with) is the same photos: the paper scores a
subject against its own images, and a subject has only 4-6 photos, too few to hold
any out without starving training. The photos are copied as they are: the training
step resizes and crops them, and the metrics read them as the paper's code does
(``continual_lora.data.concepts``).
"""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path

from continual_lora.data.concepts import Concept, copy_concept
from continual_lora.data.sources import (
    PROTOCOL_SELECTION_SEED,
    RARE_TOKENS,
    DatasetError,
    DatasetSource,
    check_domain,
    check_image_folder,
    dataset_root,
    image_files,
    path_safe,
    selection_size,
)

CLASSES_FILE = "prompts_and_classes.txt"
TABLE_HEADER = "subject_name,class"


def read_classes(classes_file: Path) -> dict[str, list[str]]:
    """Class -> its subjects sorted by name, from the table that opens ``prompts_and_classes.txt``."""
    lines = [line.strip() for line in classes_file.read_text().splitlines()]
    if TABLE_HEADER not in lines:
        raise DatasetError("dataset.path", f"file {str(classes_file)!r} has no {TABLE_HEADER!r} table")
    classes: dict[str, list[str]] = {}
    for line in lines[lines.index(TABLE_HEADER) + 1 :]:
        if not line:  # the table ends at the first blank line; prompt lists follow
            break
        subject, _, class_word = line.partition(",")
        classes.setdefault(class_word.strip(), []).append(subject.strip())
    return {class_word: sorted(subjects) for class_word, subjects in classes.items()}


def select_subjects(
    classes: dict[str, list[str]], k: int, seed: int = PROTOCOL_SELECTION_SEED
) -> list[tuple[str, str]]:
    """(class, subject) of the ``k`` selected subjects, in selection order.

    A private generator seeded like ``random.seed(seed)`` makes exactly the draws of
    the global one, without disturbing anyone else's random state.
    """
    rng = random.Random(seed)
    sampled = rng.sample(sorted(classes), k)
    return [(class_word, rng.choice(classes[class_word])) for class_word in sampled]


class DreamBoothSource(DatasetSource):
    name = "dreambooth"
    settings_keys = ("path", "selection_size")
    expected_content = (
        "the DreamBooth dataset (the dataset/ folder of github.com/google/dreambooth: prompts_and_classes.txt "
        "and one folder of photos per subject)"
    )

    @cached_property
    def root(self) -> Path:
        """The folder with ``prompts_and_classes.txt`` and the subject folders."""
        given = dataset_root(self.settings)
        for root in (given, given / "dataset"):
            if (root / CLASSES_FILE).is_file():
                return root
        raise DatasetError("dataset.path", f"{str(given)!r} holds no {CLASSES_FILE}, neither itself nor in dataset/")

    def concepts(self, n: int) -> list[Concept]:
        check_domain(self, "objects")
        classes = read_classes(self.root / CLASSES_FILE)
        k = selection_size(self.settings, n)
        if k > len(classes):
            raise DatasetError(
                "dataset.path",
                f"{str(self.root)!r} lists {len(classes)} classes in {CLASSES_FILE}, "
                f"fewer than the {k} the selection samples",
            )
        concepts = []
        for (class_word, subject), token in zip(select_subjects(classes, k)[:n], RARE_TOKENS):
            if not (self.root / subject).is_dir():
                raise DatasetError("dataset.path", f"{str(self.root)!r} has no folder for subject {subject!r}")
            concepts.append(
                Concept(
                    name=path_safe(subject),
                    domain="objects",
                    prompt=f"a photo of {token} {class_word}",
                    subject=f"{token} {class_word}",
                    class_word=class_word,
                    token=token,
                )
            )
        return concepts

    def check(self, n: int) -> list[Concept]:
        concepts = super().check(n)
        for concept in concepts:
            folders = [p.name for p in self.root.iterdir() if p.is_dir() and path_safe(p.name) == concept.name]
            if len(folders) > 1:
                # Which of them a job would read is up to the file system's listing order.
                raise DatasetError(
                    "dataset.path",
                    f"{str(self.root)!r} has folders {folders} that all give the concept name {concept.name!r}; "
                    "rename all but one",
                )
            check_image_folder(self._subject_folder(concept))
        return concepts

    def prepare(self, concept: Concept, out_dir: str | Path) -> None:
        folder = self._subject_folder(concept)
        files = image_files(folder)
        if not files:
            raise DatasetError("dataset.path", f"subject folder {str(folder)!r} holds no images")
        copy_concept(out_dir, concept, train=files, reference=files)

    def _subject_folder(self, concept: Concept) -> Path:
        for subject in (p.name for p in self.root.iterdir() if p.is_dir()):
            if path_safe(subject) == concept.name:
                return self.root / subject
        raise DatasetError("dataset.path", f"{str(self.root)!r} has no folder for concept {concept.name!r}")
