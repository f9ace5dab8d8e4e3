"""The synthetic world's concept catalogue, with no drawing code.

It names everything there is to draw: the generic class words, the object
patterns and the named colours concepts pick from, the object and style
concepts, and which classes a style is trained and checked on.  That is all the
workflow's DAG and the config checks read to list concepts; ``drawing`` and
``styles`` render what is described here.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GENERIC_CLASSES",
    "OBJECT_PATTERNS",
    "STYLE_NAMES",
    "MAX_OBJECT_CONCEPTS",
    "MAX_STYLE_CONCEPTS",
    "ObjectConcept",
    "StyleConcept",
    "object_concepts",
    "style_concepts",
    "style_subjects",
    "sample_shape",
    "patterned_instance",
]

# Every word starts with a consonant so that "a {class}" is always grammatical.
GENERIC_CLASSES: tuple[str, ...] = (
    "ball",
    "mug",
    "house",
    "tree",
    "fish",
    "flower",
    "star",
    "cube",
)

OBJECT_PATTERNS: tuple[str, ...] = (
    "striped",
    "dotted",
    "checkered",
    "ringed",
    "zigzag",
    "spotted",
)

# One concept per (class, pattern) pair keeps every concept visibly different
# from every other one, which colour changes alone would not guarantee.
MAX_OBJECT_CONCEPTS = len(GENERIC_CLASSES) * len(OBJECT_PATTERNS)


def sample_shape(class_word: str, rng: np.random.Generator) -> tuple[float, ...]:
    """Random geometry of one ``class_word``, in the order its drawer in ``drawing`` reads it.

    It is sampled here rather than in ``drawing`` because an object concept
    fixes its shape when it is listed, and listing needs no drawing code.
    """
    u = rng.uniform
    if class_word == "ball":
        return (float(u(0.93, 1.0)),)
    if class_word == "mug":
        return (float(u(0.45, 0.58)), float(u(0.55, 0.75)), float(u(0.85, 1.1)))
    if class_word == "house":
        return (float(u(0.5, 0.75)), float(rng.choice([-0.3, 0.0, 0.3]) + u(-0.05, 0.05)), float(u(0, 1)))
    if class_word == "tree":
        return (float(u(0, 1)), float(u(0.9, 1.15)), float(u(0.09, 0.14)))
    if class_word == "fish":
        return (float(u(0.3, 0.44)), float(u(0.8, 1.1)))
    if class_word == "flower":
        return (float(rng.integers(5, 9)), float(u(0.5, 0.62)), float(u(0.13, 0.19)))
    if class_word == "star":
        return (float(5 if rng.random() < 0.8 else 6), float(u(0.38, 0.5)))
    if class_word == "cube":
        return (float(u(0.72, 0.95)),)
    raise ValueError(f"Unknown class word {class_word!r}; expected one of {GENERIC_CLASSES}.")


# Vivid, well separated colours for concept instances; the names make concept
# descriptions readable in logs.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (247, 140, 22),
    "yellow": (250, 218, 30),
    "lime": (150, 225, 40),
    "green": (28, 140, 58),
    "teal": (18, 160, 150),
    "cyan": (60, 205, 240),
    "blue": (35, 70, 210),
    "purple": (128, 48, 190),
    "magenta": (228, 40, 170),
    "pink": (252, 155, 195),
    "white": (246, 246, 246),
    "black": (24, 24, 28),
    "brown": (125, 74, 36),
}
# Colours a generic render of the class already uses for its main part would
# make a pattern blend into the class look, so concepts avoid them.
_TYPICAL_COLOURS = {
    "tree": {"green", "lime", "brown"},
    "star": {"yellow", "orange"},
    "house": {"white", "brown"},
    "fish": {"orange"},
}


def _colour_distance(a: str, b: str) -> float:
    return float(np.linalg.norm(np.subtract(NAMED_COLOURS[a], NAMED_COLOURS[b])))


# ---------------------------------------------------------------------------
# Concepts.


@dataclass(frozen=True)
class ObjectConcept:
    """One specific, patterned instance of a generic class."""

    name: str
    class_word: str
    pattern: str  # one of OBJECT_PATTERNS
    colour_names: tuple[str, str, str]  # pattern ground, pattern figure, secondary part
    colors: tuple[tuple[int, int, int], ...]  # RGB 0-255 for colour_names
    shape: tuple[float, ...]  # class geometry, fixed so the silhouette never changes
    pattern_angle: float  # radians, in the object's own frame
    pattern_period: float  # in canonical units (object spans ~2)
    pattern_seed: int  # fixes the blob layout of the "spotted" pattern

    @property
    def description(self) -> str:
        a, b, c = self.colour_names
        return f"{self.class_word} with {a} and {b} {self.pattern} pattern, {c} details"


@dataclass(frozen=True)
class StyleConcept:
    """A global look that can be applied to a scene of any class."""

    name: str
    description: str


def object_concepts(n: int, seed: int, pattern_scale: float = 1.0) -> list[ObjectConcept]:
    """Return ``n`` distinct object concepts; a prefix of the list for larger ``n``.

    ``pattern_scale`` multiplies every pattern's period: 2 gives stripes and dots twice
    as coarse, which a 32-pixel model's VAE keeps (the default's 1 it blurs).

    Classes are visited round-robin (in a seeded order) so the first
    ``len(GENERIC_CLASSES)`` concepts all have different classes; later rounds
    reuse classes with a pattern that class has not had yet.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    if n > MAX_OBJECT_CONCEPTS:
        raise ValueError(
            f"Cannot make {n} distinct object concepts: at most {MAX_OBJECT_CONCEPTS} "
            f"({len(GENERIC_CLASSES)} classes x {len(OBJECT_PATTERNS)} patterns) are available."
        )
    if not pattern_scale > 0:
        raise ValueError(f"pattern_scale must be positive, got {pattern_scale!r}.")
    order_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0B1EC7]))
    class_order = [GENERIC_CLASSES[i] for i in order_rng.permutation(len(GENERIC_CLASSES))]
    pattern_orders = {
        c: [OBJECT_PATTERNS[i] for i in order_rng.permutation(len(OBJECT_PATTERNS))]
        for c in class_order
    }
    out: list[ObjectConcept] = []
    for k in range(n):
        class_word = class_order[k % len(class_order)]
        pattern = pattern_orders[class_word][k // len(class_order)]
        # Per-concept generator: concept k does not depend on how many
        # concepts were requested.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0C0, k]))
        colour_names = _concept_colours(class_word, rng)
        period = _PATTERN_PERIODS.get(pattern, _DEFAULT_PERIOD) * pattern_scale
        shape = sample_shape(class_word, rng)
        if class_word == "flower":
            # Thin petals cannot carry a pattern at 64 px: this instance has
            # few, broad petals and a finer pattern.
            shape = (float(rng.integers(5, 7)), 0.64, 0.25)
            period *= 0.7
        out.append(_instance(f"{pattern}_{class_word}", class_word, pattern, colour_names, shape, period, rng))
    return out


def patterned_instance(class_word: str, rng: np.random.Generator, pattern_scale: float = 1.0) -> ObjectConcept:
    """A patterned instance of ``class_word`` in random named colours, drawn by the
    rules an object concept's are (``object_concepts``): a pretraining corpus can show
    what "a teal and pink dotted cube" looks like without holding any concept."""
    colour_names = _concept_colours(class_word, rng)
    pattern = OBJECT_PATTERNS[int(rng.integers(len(OBJECT_PATTERNS)))]
    period = _PATTERN_PERIODS.get(pattern, _DEFAULT_PERIOD) * pattern_scale
    shape = sample_shape(class_word, rng)
    return _instance(f"{pattern}_{class_word}", class_word, pattern, colour_names, shape, period, rng)


# Pattern periods in canonical units (an object spans about 2).
_PATTERN_PERIODS = {"ringed": 0.3, "zigzag": 0.42, "spotted": 1.0}
_DEFAULT_PERIOD = 0.36


def _concept_colours(class_word: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """Pattern ground, pattern figure (far from the ground) and a third colour for details."""
    names = list(NAMED_COLOURS)
    # Black pattern areas would merge with the outline strokes.
    banned = _TYPICAL_COLOURS.get(class_word, set()) | {"black"}
    allowed = [c for c in names if c not in banned]
    a = allowed[int(rng.integers(len(allowed)))]
    contrast = [c for c in allowed if c != a and _colour_distance(a, c) > 190]
    b = contrast[int(rng.integers(len(contrast)))]
    third = [c for c in names if _colour_distance(a, c) > 120 and _colour_distance(b, c) > 120]
    return a, b, third[int(rng.integers(len(third)))]


def _instance(name, class_word, pattern, colour_names, shape, period, rng) -> ObjectConcept:
    return ObjectConcept(
        name=name,
        class_word=class_word,
        pattern=pattern,
        colour_names=colour_names,
        colors=tuple(NAMED_COLOURS[c] for c in colour_names),
        shape=shape,
        pattern_angle=float(rng.choice([0.0, 0.25, 0.5, 0.75]) * math.pi),
        pattern_period=float(period * rng.uniform(0.9, 1.1)),
        pattern_seed=int(rng.integers(0, 2**31 - 1)),
    )


_STYLE_CATALOGUE: tuple[StyleConcept, ...] = (
    StyleConcept("neon", "glowing pink-to-cyan outlines on a near-black background"),
    StyleConcept("sepia", "brown monochrome old photograph with vignette and grain"),
    StyleConcept("pastel", "washed-out light colours on a soft pastel background"),
    StyleConcept("mosaic", "coarse square tiles separated by dark grout"),
    StyleConcept("sketch", "dark pencil outlines and hatching on white paper"),
    StyleConcept("halftone", "grid of coloured print dots on cream paper"),
    StyleConcept("negative", "photographic negative with inverted colours"),
    StyleConcept("scanline", "green phosphor monochrome with dark horizontal scanlines"),
    StyleConcept("blueprint", "white outlines on blue paper with a light grid"),
    StyleConcept("popart", "flat bold colours, thick black outlines, dotted yellow background"),
    StyleConcept("glitch", "shifted colour channels and displaced horizontal bands"),
    StyleConcept("thermal", "heat-camera false colours from dark blue to yellow"),
    StyleConcept("emboss", "jade-green stone relief with raised edges"),
)
STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in _STYLE_CATALOGUE)
MAX_STYLE_CONCEPTS = len(_STYLE_CATALOGUE)


def style_concepts(n: int, seed: int) -> list[StyleConcept]:
    """Return ``n`` distinct styles in a seeded order (a prefix for larger ``n``)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    if n > MAX_STYLE_CONCEPTS:
        raise ValueError(
            f"Cannot make {n} distinct style concepts: only {MAX_STYLE_CONCEPTS} styles are defined."
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x57E1E]))
    return [_STYLE_CATALOGUE[i] for i in rng.permutation(MAX_STYLE_CONCEPTS)[:n]]


def style_subjects(style: StyleConcept, seed: int) -> tuple[str, list[str]]:
    """(class the style trains on, held-out classes for its reference set)."""
    # crc32 rather than hash(): str hashes are salted per process.
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(style.name.encode())]))
    train = GENERIC_CLASSES[int(rng.integers(len(GENERIC_CLASSES)))]
    return train, [c for c in GENERIC_CLASSES if c != train]
