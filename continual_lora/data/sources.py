"""Dataset sources: where an experiment's concepts come from, found through a registry.

A source lists its concepts cheaply (the workflow needs their names to build the
graph) and prepares one concept into the layout of ``continual_lora.data.concepts``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from continual_lora.data import synthetic
from continual_lora.data.concepts import Concept, write_concept

# PROTOCOL.md's tokens, in order; the synthetic world continues with more rare
# three-letter strings when it has more than ten objects.
RARE_TOKENS = (
    "sks", "zwz", "sbu", "uwu", "pdw", "twt", "zsn", "ofl", "psq", "cws",
    "qxv", "jvk", "wqz", "xpf", "vbj", "kzq", "gxw", "fqh", "yzv", "hjx",
    "zqk", "vxw", "bqj", "xkz", "jqf", "wvx", "qzb", "kxj", "fzv", "xqw",
)  # fmt: skip

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


def make_source(domain: str, settings: dict[str, Any]) -> DatasetSource:
    kind = settings.get("source")
    if kind not in SOURCES:
        raise ValueError(f"dataset.source {kind!r} is unknown; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[kind](domain, settings)
