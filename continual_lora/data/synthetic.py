"""Procedural, offline synthetic world standing in for the paper's datasets.

The paper personalises a pretrained text-to-image model with DreamBooth objects
and UnlearnCanvas styles.  Neither dataset (nor a large pretrained model) fits
this project, so this module draws a small world that keeps the properties the
experiments rely on:

* generic class images (``render_class_image``) teach a tiny model what a
  "ball" or a "house" looks like; they are always plainly coloured, so that a
  patterned instance is something the pretrained model cannot already draw;
* object concepts (``render_object``) are one fixed, patterned instance of a
  class whose look survives changes of pose and background, which is what a
  rare token has to bind to;
* style concepts (``render_styled``) are global looks that can be recognised on
  any subject, so a style learnt on one class can be checked on the others.

Everything is pure PIL + numpy and fully determined by the numpy Generator
passed in, so the same seed always gives identical pixels.
"""

from __future__ import annotations

import colorsys
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "IMAGE_SIZE",
    "GENERIC_CLASSES",
    "OBJECT_PATTERNS",
    "STYLE_NAMES",
    "MAX_OBJECT_CONCEPTS",
    "MAX_STYLE_CONCEPTS",
    "ObjectConcept",
    "StyleConcept",
    "object_concepts",
    "style_concepts",
    "render_class_image",
    "render_object",
    "render_styled",
    "pretraining_examples",
    "style_subjects",
]

IMAGE_SIZE = 64

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

# ---------------------------------------------------------------------------
# Part labels.  Shapes are drawn as a label map rather than as colours so that
# the same geometry can be coloured generically, patterned for a concept, or
# reinterpreted by a style (e.g. only the outline strokes for a sketch).
_EMPTY, _OUTLINE, _BODY, _SECOND, _DET_A, _DET_B, _DET_C, _FACE_L, _FACE_R = range(9)
_N_LABELS = 9
_PATTERNED = (_BODY, _FACE_L, _FACE_R)
# Cube side faces reuse the body colour but darker, which is what makes the
# three rhombi read as a solid rather than a flat hexagon.
_LABEL_SHADE = np.ones(_N_LABELS, dtype=np.float32)
_LABEL_SHADE[_FACE_L] = 0.78
_LABEL_SHADE[_FACE_R] = 0.58
_OUTLINE_RGB = (0.11, 0.11, 0.13)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _rgb255(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return (c[0] / 255.0, c[1] / 255.0, c[2] / 255.0)


# ---------------------------------------------------------------------------
# Drawing in the object's canonical frame: unit coordinates in [-1, 1]^2,
# x to the right, y down.  Shapes stay inside radius ~0.95 so that the small
# rotations applied later never clip them.


class _Pen:
    def __init__(self, canvas: int) -> None:
        self.img = Image.new("L", (canvas, canvas), _EMPTY)
        self.draw = ImageDraw.Draw(self.img)
        self.half = canvas / 2.0
        # ~1 output pixel once the object is scaled into the image and
        # supersampling is undone: thick enough to survive, thin enough not to
        # swallow small parts.
        self.width = max(2, round(canvas * 0.022))

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return ((x + 1.0) * self.half, (y + 1.0) * self.half)

    def poly(self, pts, label: int, outline: bool = True) -> None:
        self.draw.polygon(
            [self.pt(x, y) for x, y in pts],
            fill=label,
            outline=_OUTLINE if outline else None,
            width=self.width,
        )

    def ellipse(self, cx, cy, rx, ry, label: int, outline: bool = True) -> None:
        x0, y0 = self.pt(cx - rx, cy - ry)
        x1, y1 = self.pt(cx + rx, cy + ry)
        self.draw.ellipse(
            (x0, y0, x1, y1),
            fill=label,
            outline=_OUTLINE if outline else None,
            width=self.width,
        )

    def blob(self, circles, label: int) -> None:
        # Union of circles with a single outer outline: drawing inflated dark
        # discs first and the fills on top avoids internal arcs.
        grow = self.width / self.half
        for cx, cy, r in circles:
            self.ellipse(cx, cy, r + grow, r + grow, _OUTLINE, outline=False)
        for cx, cy, r in circles:
            self.ellipse(cx, cy, r, r, label, outline=False)


def _ellipse_pts(cx, cy, rx, ry, angle, n=24):
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    for i in range(n):
        t = 2.0 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return out


def _draw_ball(p: _Pen, shape) -> None:
    (squash,) = shape
    p.ellipse(0.0, 0.0, 0.82, 0.82 * squash, _BODY)


def _draw_mug(p: _Pen, shape) -> None:
    w, h, handle = shape
    cx = -0.15
    x0, x1, y0, y1 = cx - w, cx + w, -h + 0.08, h
    hx, hy = x1 - 0.02, 0.0 + 0.05
    p.ellipse(hx, hy, 0.3 * handle, 0.36 * handle, _SECOND)
    p.ellipse(hx, hy, 0.15 * handle, 0.2 * handle, _EMPTY)
    ry = 0.13
    body = [(x0, y0)]
    for i in range(13):
        t = math.pi - math.pi * i / 12.0
        body.append((cx + w * math.cos(t), y1 - ry + ry * math.sin(t)))
    body.append((x1, y0))
    p.poly(body, _BODY)
    p.ellipse(cx, y0, w, ry, _BODY)
    p.ellipse(cx, y0 + 0.01, w * 0.82, ry * 0.62, _DET_A)


def _draw_house(p: _Pen, shape) -> None:
    roof_h, door_x, chimney = shape
    base, ground = -0.12, 0.86
    if chimney > 0.5:
        p.poly([(0.28, base - roof_h * 0.75), (0.46, base - roof_h * 0.75),
                (0.46, base - 0.1), (0.28, base - 0.1)], _DET_C)
    p.poly([(-0.62, base), (0.62, base), (0.62, ground), (-0.62, ground)], _BODY)
    p.poly([(-0.8, base + 0.02), (0.0, base - roof_h), (0.8, base + 0.02)], _SECOND)
    p.poly([(door_x - 0.13, ground - 0.46), (door_x + 0.13, ground - 0.46),
            (door_x + 0.13, ground), (door_x - 0.13, ground)], _DET_A)
    wx = 0.33 if door_x < 0 else -0.33
    for x in (wx,) if abs(door_x) > 0.12 else (-0.36, 0.36):
        p.poly([(x - 0.13, 0.08), (x + 0.13, 0.08), (x + 0.13, 0.34), (x - 0.13, 0.34)], _DET_B)
        p.draw.line([p.pt(x, 0.08), p.pt(x, 0.34)], fill=_OUTLINE, width=p.width)
        p.draw.line([p.pt(x - 0.13, 0.21), p.pt(x + 0.13, 0.21)], fill=_OUTLINE, width=p.width)


def _draw_tree(p: _Pen, shape) -> None:
    kind, crown, trunk = shape
    if kind < 0.5:
        p.poly([(-trunk, 0.1), (trunk, 0.1), (trunk * 1.25, 0.92), (-trunk * 1.25, 0.92)], _SECOND)
        c = crown
        p.blob([(0.0, -0.42, 0.46 * c), (-0.42 * c, -0.1, 0.38 * c),
                (0.42 * c, -0.1, 0.38 * c), (0.0, 0.02, 0.4 * c)], _BODY)
    else:
        p.poly([(-trunk, 0.55), (trunk, 0.55), (trunk, 0.92), (-trunk, 0.92)], _SECOND)
        for i, (top, bottom, half) in enumerate(((-0.92, -0.25, 0.45), (-0.62, 0.2, 0.6), (-0.3, 0.62, 0.75))):
            half *= crown
            p.poly([(0.0, top), (half, bottom), (-half, bottom)], _BODY)


def _draw_fish(p: _Pen, shape) -> None:
    bh, tail = shape
    cx = 0.12
    p.poly([(-0.45, 0.0), (-0.93, -0.42 * tail), (-0.82, 0.0), (-0.93, 0.42 * tail)], _SECOND)
    p.poly([(-0.3, -bh + 0.1), (0.25, -bh + 0.08), (-0.22, -bh - 0.26)], _SECOND)
    p.ellipse(cx, 0.0, 0.72, bh, _BODY)
    p.draw.arc((*p.pt(0.2, -bh * 0.75), *p.pt(0.5, bh * 0.75)), 125, 235, fill=_OUTLINE, width=p.width)
    p.poly(_ellipse_pts(-0.02, 0.3 * bh, 0.2, 0.08, 0.45, 12), _SECOND)
    p.ellipse(0.52, -0.22 * bh, 0.11, 0.11, _DET_A)
    p.ellipse(0.55, -0.22 * bh, 0.05, 0.05, _DET_B, outline=False)


def _draw_flower(p: _Pen, shape) -> None:
    n, plen, pw = shape
    n = int(n)
    cy = -0.3
    p.poly([(-0.045, cy), (0.045, cy), (0.045, 0.94), (-0.045, 0.94)], _DET_A)
    p.poly(_ellipse_pts(0.22, 0.5, 0.22, 0.08, -0.6, 16), _DET_A)
    for i in range(n):
        a = -math.pi / 2 + 2 * math.pi * i / n
        d = plen * 0.55
        p.poly(_ellipse_pts(math.cos(a) * d, cy + math.sin(a) * d, plen * 0.5, pw, a, 18), _BODY)
    p.ellipse(0.0, cy, 0.19, 0.19, _SECOND)


def _draw_star(p: _Pen, shape) -> None:
    n, inner = shape
    n = int(n)
    pts = []
    for i in range(2 * n):
        r = 0.92 if i % 2 == 0 else 0.92 * inner
        a = -math.pi / 2 + math.pi * i / n
        pts.append((r * math.cos(a), 0.06 + r * math.sin(a)))
    p.poly(pts, _BODY)


def _draw_cube(p: _Pen, shape) -> None:
    (height,) = shape
    a, t = 0.78, 0.4
    y0 = -(2 * t + height) / 2.0
    top = [(0.0, y0), (a, y0 + t), (0.0, y0 + 2 * t), (-a, y0 + t)]
    left = [(-a, y0 + t), (0.0, y0 + 2 * t), (0.0, y0 + 2 * t + height), (-a, y0 + t + height)]
    right = [(a, y0 + t), (0.0, y0 + 2 * t), (0.0, y0 + 2 * t + height), (a, y0 + t + height)]
    p.poly(left, _FACE_L)
    p.poly(right, _FACE_R)
    p.poly(top, _BODY)


_DRAWERS = {
    "ball": _draw_ball,
    "mug": _draw_mug,
    "house": _draw_house,
    "tree": _draw_tree,
    "fish": _draw_fish,
    "flower": _draw_flower,
    "star": _draw_star,
    "cube": _draw_cube,
}


def _sample_shape(class_word: str, rng: np.random.Generator) -> tuple[float, ...]:
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


# Concept shapes are fixed and hit this cache; random generic shapes just
# cycle through it cheaply (a 4x canvas is 64 KiB).
@lru_cache(maxsize=128)
def _label_canvas(class_word: str, shape: tuple[float, ...], canvas: int) -> Image.Image:
    pen = _Pen(canvas)
    _DRAWERS[class_word](pen, shape)
    return pen.img


# ---------------------------------------------------------------------------
# Colours.  Generic palettes are broad but class-typical and always solid: the
# absence of two-colour patterns on generic renders is what keeps object
# concepts out of the pretrained model's reach.

_DETAIL_DEFAULTS = {
    "mug": {_DET_A: (0.28, 0.16, 0.08)},
    "house": {_DET_A: (0.45, 0.26, 0.12), _DET_B: (0.68, 0.85, 0.95), _DET_C: (0.62, 0.3, 0.22)},
    "fish": {_DET_A: (0.97, 0.97, 0.97), _DET_B: (0.05, 0.05, 0.05)},
    "flower": {_DET_A: (0.2, 0.58, 0.22)},
}


def _pick(rng: np.random.Generator, options):
    # Options are (h_range, s_range, v_range) triples with relative weights.
    weights = np.array([o[0] for o in options], dtype=float)
    k = int(rng.choice(len(options), p=weights / weights.sum()))
    _, (h0, h1), (s0, s1), (v0, v1) = options[k]
    return _hsv(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


def _generic_colours(class_word: str, rng: np.random.Generator) -> np.ndarray:
    lut = np.zeros((_N_LABELS, 3), dtype=np.float32)
    det = dict(_DETAIL_DEFAULTS.get(class_word, {}))
    if class_word == "ball":
        body = _pick(rng, [(1, (0, 1), (0.55, 0.95), (0.65, 0.95))])
        second = body
    elif class_word == "mug":
        body = _pick(rng, [(2, (0, 1), (0.0, 0.08), (0.85, 0.97)),
                           (3, (0, 1), (0.35, 0.75), (0.5, 0.9))])
        second = body
    elif class_word == "house":
        body = _pick(rng, [(3, (0.07, 0.15), (0.15, 0.5), (0.72, 0.95)),
                           (1, (0, 1), (0.0, 0.05), (0.85, 0.97)),
                           (1, (0.0, 0.04), (0.5, 0.7), (0.55, 0.75))])
        second = _pick(rng, [(3, (0.98, 1.03), (0.6, 0.85), (0.5, 0.8)),
                             (2, (0.05, 0.09), (0.5, 0.75), (0.3, 0.5)),
                             (1, (0.55, 0.65), (0.1, 0.3), (0.3, 0.5))])
    elif class_word == "tree":
        body = _pick(rng, [(8, (0.22, 0.4), (0.5, 0.85), (0.35, 0.72)),
                           (1, (0.05, 0.13), (0.7, 0.9), (0.7, 0.95))])
        second = _pick(rng, [(1, (0.06, 0.1), (0.5, 0.7), (0.3, 0.5))])
    elif class_word == "fish":
        body = _pick(rng, [(3, (0.04, 0.1), (0.75, 1.0), (0.85, 1.0)),
                           (2, (0.12, 0.16), (0.7, 0.95), (0.85, 1.0)),
                           (2, (0.52, 0.65), (0.5, 0.85), (0.6, 0.9)),
                           (1, (0, 1), (0.0, 0.1), (0.65, 0.85)),
                           (1, (0.97, 1.02), (0.7, 0.9), (0.75, 0.95))])
        second = tuple(float(c) * 0.78 for c in body)
    elif class_word == "flower":
        body = _pick(rng, [(2, (0.97, 1.02), (0.7, 0.95), (0.75, 0.95)),
                           (2, (0.88, 0.96), (0.3, 0.6), (0.85, 1.0)),
                           (2, (0.12, 0.16), (0.7, 0.95), (0.9, 1.0)),
                           (2, (0.72, 0.8), (0.45, 0.75), (0.6, 0.9)),
                           (1, (0, 1), (0.0, 0.06), (0.92, 1.0)),
                           (1, (0.05, 0.09), (0.75, 0.95), (0.9, 1.0))])
        second = _pick(rng, [(3, (0.11, 0.15), (0.8, 1.0), (0.85, 1.0)),
                             (1, (0.06, 0.09), (0.6, 0.8), (0.35, 0.55))])
    elif class_word == "star":
        body = _pick(rng, [(6, (0.11, 0.16), (0.65, 0.95), (0.88, 1.0)),
                           (1, (0.04, 0.09), (0.75, 0.95), (0.85, 1.0)),
                           (1, (0.97, 1.02), (0.7, 0.9), (0.8, 0.95)),
                           (1, (0, 1), (0.0, 0.06), (0.78, 0.92))])
        second = body
    elif class_word == "cube":
        body = _pick(rng, [(2, (0.07, 0.1), (0.4, 0.65), (0.55, 0.85)),
                           (1, (0, 1), (0.0, 0.06), (0.6, 0.9)),
                           (2, (0, 1), (0.45, 0.85), (0.6, 0.92))])
        second = body
    else:
        raise ValueError(f"Unknown class word {class_word!r}; expected one of {GENERIC_CLASSES}.")
    lut[_OUTLINE] = _OUTLINE_RGB
    for lab in (_BODY, _FACE_L, _FACE_R, _DET_A, _DET_B, _DET_C):
        lut[lab] = body
    lut[_SECOND] = second
    for lab, c in det.items():
        jitter = rng.uniform(0.92, 1.06)
        lut[lab] = np.clip(np.asarray(c) * jitter, 0.0, 1.0)
    return lut


# Vivid, well separated colours for concept instances; the names make concept
# descriptions readable in logs.
_NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
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
    return float(np.linalg.norm(np.subtract(_NAMED_COLOURS[a], _NAMED_COLOURS[b])))


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


def object_concepts(n: int, seed: int) -> list[ObjectConcept]:
    """Return ``n`` distinct object concepts; a prefix of the list for larger ``n``.

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
    order_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0B1EC7]))
    class_order = [GENERIC_CLASSES[i] for i in order_rng.permutation(len(GENERIC_CLASSES))]
    pattern_orders = {
        c: [OBJECT_PATTERNS[i] for i in order_rng.permutation(len(OBJECT_PATTERNS))]
        for c in class_order
    }
    names = list(_NAMED_COLOURS)
    out: list[ObjectConcept] = []
    for k in range(n):
        class_word = class_order[k % len(class_order)]
        pattern = pattern_orders[class_word][k // len(class_order)]
        # Per-concept generator: concept k does not depend on how many
        # concepts were requested.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0C0, k]))
        # Black pattern areas would merge with the outline strokes.
        banned = _TYPICAL_COLOURS.get(class_word, set()) | {"black"}
        allowed = [c for c in names if c not in banned]
        a = allowed[int(rng.integers(len(allowed)))]
        contrast = [c for c in allowed if c != a and _colour_distance(a, c) > 190]
        b = contrast[int(rng.integers(len(contrast)))]
        third = [c for c in names if _colour_distance(a, c) > 120 and _colour_distance(b, c) > 120]
        c3 = third[int(rng.integers(len(third)))]
        period = {"ringed": 0.3, "zigzag": 0.42, "spotted": 1.0}.get(pattern, 0.36)
        shape = _sample_shape(class_word, rng)
        if class_word == "flower":
            # Thin petals cannot carry a pattern at 64 px: this instance has
            # few, broad petals and a finer pattern.
            shape = (float(rng.integers(5, 7)), 0.64, 0.25)
            period *= 0.7
        out.append(
            ObjectConcept(
                name=f"{pattern}_{class_word}",
                class_word=class_word,
                pattern=pattern,
                colour_names=(a, b, c3),
                colors=(_NAMED_COLOURS[a], _NAMED_COLOURS[b], _NAMED_COLOURS[c3]),
                shape=shape,
                pattern_angle=float(rng.choice([0.0, 0.25, 0.5, 0.75]) * math.pi),
                pattern_period=float(period * rng.uniform(0.9, 1.1)),
                pattern_seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return out


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
    StyleConcept("emboss", "grey stone relief with raised edges"),
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


# ---------------------------------------------------------------------------
# Scene assembly.


def _supersample(size: int) -> int:
    # 4x gives clean anti-aliased edges at 64 px; larger images need less.
    return 4 if size <= 128 else 2


@lru_cache(maxsize=8)
def _pixel_grid(h: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(h, dtype=np.float32) + 0.5
    return np.meshgrid(centres, centres)


@dataclass
class _Scene:
    size: int
    ss: int
    label: np.ndarray  # (H, H) uint8 part labels in image space
    rgb: np.ndarray  # (H, H, 3) float32 shaded object colours (valid where alpha)
    alpha: np.ndarray  # (H, H) bool
    u: np.ndarray  # canonical object coordinates of every image pixel
    v: np.ndarray

    @property
    def hi(self) -> int:
        return self.size * self.ss


def _place(
    class_word: str,
    shape: tuple[float, ...],
    rng: np.random.Generator,
    size: int,
    scale_range: tuple[float, float],
    max_rot_deg: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    ss = _supersample(size)
    h = size * ss
    canvas = h
    s = rng.uniform(*scale_range)
    theta = math.radians(rng.uniform(-max_rot_deg, max_rot_deg))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    k = s * h / 2.0  # image pixels per canonical unit
    slack = max(h / 2.0 - 0.93 * k, 0.0)
    cx = h / 2.0 + rng.uniform(-1, 1) * slack
    cy = h / 2.0 + rng.uniform(-1, 1) * slack
    c, sn = math.cos(theta), math.sin(theta)
    # Image pixel -> canonical unit coordinates (inverse of rotate+scale+flip).
    gx, gy = _pixel_grid(h)
    dx, dy = gx - cx, gy - cy
    u = (flip / k) * (c * dx + sn * dy)
    v = (1.0 / k) * (-sn * dx + c * dy)
    half = canvas / 2.0
    data = (
        half * flip * c / k,
        half * flip * sn / k,
        half - half * flip / k * (c * cx + sn * cy),
        -half * sn / k,
        half * c / k,
        half - half / k * (-sn * cx + c * cy),
    )
    src = _label_canvas(class_word, shape, canvas)
    label = np.asarray(
        src.transform((h, h), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST, fillcolor=_EMPTY)
    )
    return label, u.astype(np.float32), v.astype(np.float32), ss


def _shade(class_word: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if class_word == "ball":
        d = np.sqrt((u + 0.32) ** 2 + (v + 0.32) ** 2)
        mult = 1.18 - 0.42 * d
        spec = np.clip(1.0 - d / 0.26, 0.0, 1.0) ** 2 * 0.55
        return mult, spec
    # Light from the top left, in the object's frame so a pattern keeps its
    # relative shading under rotation.
    return 1.06 - 0.09 * (u + v), None


def _colour_scene(
    class_word: str,
    label: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lut: np.ndarray,
    size: int,
    ss: int,
    pattern: tuple | None = None,
) -> _Scene:
    rgb = lut[label]
    if pattern is not None:
        name, angle, period, pseed, ca, cb = pattern
        patt = np.isin(label, _PATTERNED)
        figure = _pattern_mask(name, u, v, angle, period, pseed)
        rgb = np.where((patt & figure)[..., None], np.asarray(cb, np.float32), rgb)
        rgb = np.where((patt & ~figure)[..., None], np.asarray(ca, np.float32), rgb)
    mult, spec = _shade(class_word, u, v)
    mult = mult * _LABEL_SHADE[label]
    outline = label == _OUTLINE
    mult = np.where(outline, 1.0, mult)
    rgb = rgb * mult[..., None]
    if spec is not None:
        rgb = rgb + np.where(outline, 0.0, spec)[..., None]
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return _Scene(size, ss, label, rgb, label != _EMPTY, u, v)


def _pattern_mask(name: str, u, v, angle: float, period: float, pseed: int) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    ru, rv = c * u + s * v, -s * u + c * v
    if name == "striped":
        return (np.floor(ru / period) % 2) == 1
    if name == "dotted":
        # Offset every other row so the dots read as polka dots, not a grid.
        row = np.floor(rv / period)
        shift = (row % 2) * 0.5
        fx = ru / period + shift
        fx = fx - np.round(fx)
        fy = rv / period - row - 0.5
        return fx * fx + fy * fy < 0.33**2
    if name == "checkered":
        return ((np.floor(ru / period) + np.floor(rv / period)) % 2) == 1
    if name == "ringed":
        return (np.floor(np.sqrt(u * u + v * v) / period) % 2) == 1
    if name == "zigzag":
        tri = np.abs((ru / (period * 0.8)) % 2.0 - 1.0)
        return (np.floor(rv / period + tri * 0.9) % 2) == 1
    if name == "spotted":
        g = np.random.default_rng(pseed)
        mask = np.zeros(u.shape, dtype=bool)
        for _ in range(14):
            x, y = g.uniform(-0.8, 0.8, size=2)
            r = g.uniform(0.14, 0.26) * period
            ax = g.uniform(0.75, 1.3)
            mask |= ((u - x) * ax) ** 2 + ((v - y) / ax) ** 2 < r * r
        return mask
    raise ValueError(f"Unknown pattern {name!r}; expected one of {OBJECT_PATTERNS}.")


def _generic_scene(class_word: str, rng: np.random.Generator, size: int) -> _Scene:
    if class_word not in _DRAWERS:
        raise ValueError(f"Unknown class word {class_word!r}; expected one of {GENERIC_CLASSES}.")
    shape = _sample_shape(class_word, rng)
    lut = _generic_colours(class_word, rng)
    label, u, v, ss = _place(class_word, shape, rng, size, (0.5, 0.85), 10.0)
    return _colour_scene(class_word, label, u, v, lut, size, ss)


def _background(rng: np.random.Generator, h: int) -> np.ndarray:
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.0, 0.3)
    val = rng.uniform(0.55, 0.97)
    top = np.asarray(_hsv(hue, sat, val), np.float32)
    kind = int(rng.integers(3))
    if kind == 0:
        return np.broadcast_to(top, (h, h, 3))
    bottom = np.asarray(
        _hsv(hue + rng.uniform(-0.08, 0.08), sat * rng.uniform(0.5, 1.5), val * rng.uniform(0.7, 1.0)),
        np.float32,
    )
    t = (np.arange(h, dtype=np.float32) + 0.5) / h
    if kind == 2:
        # A soft "table/floor" edge: the only structure backgrounds ever have.
        horizon = rng.uniform(0.55, 0.8)
        t = np.clip((t - horizon) / 0.04 + 0.5, 0.0, 1.0)
    col = top[None, :] * (1.0 - t[:, None]) + bottom[None, :] * t[:, None]
    return np.broadcast_to(col[:, None, :], (h, h, 3))


def _composite(scene: _Scene, bg: np.ndarray) -> np.ndarray:
    return np.where(scene.alpha[..., None], scene.rgb, bg)


def _to_image(arr: np.ndarray) -> Image.Image:
    a = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(a, "L" if a.ndim == 2 else "RGB")


def _down(arr: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased downsample of a supersampled float image, back to float."""
    img = _to_image(arr).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def _finish(arr_hi: np.ndarray, size: int) -> Image.Image:
    img = _to_image(arr_hi)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img.convert("RGB")


# ---------------------------------------------------------------------------
# Public renderers.


def render_class_image(class_word: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """A generic, plainly coloured instance of ``class_word`` on a soft background."""
    scene = _generic_scene(class_word, rng, size)
    return _finish(_composite(scene, _background(rng, scene.hi)), size)


def render_object(concept: ObjectConcept, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """The concept's fixed instance under a random pose and background."""
    ca, cb, c3 = (np.asarray(_rgb255(c), np.float32) for c in concept.colors)
    lut = np.zeros((_N_LABELS, 3), dtype=np.float32)
    lut[:] = ca
    lut[_OUTLINE] = _OUTLINE_RGB
    lut[_SECOND] = c3
    for lab, c in _DETAIL_DEFAULTS.get(concept.class_word, {}).items():
        lut[lab] = c
    label, u, v, ss = _place(concept.class_word, concept.shape, rng, size, (0.55, 0.82), 15.0)
    pattern = (concept.pattern, concept.pattern_angle, concept.pattern_period, concept.pattern_seed, ca, cb)
    scene = _colour_scene(concept.class_word, label, u, v, lut, size, ss, pattern)
    return _finish(_composite(scene, _background(rng, scene.hi)), size)


def render_styled(
    style: StyleConcept, class_word: str, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> Image.Image:
    """A generic scene of ``class_word`` rendered in ``style``."""
    try:
        fn = _STYLE_RENDERERS[style.name]
    except KeyError:
        raise ValueError(f"Unknown style {style.name!r}; expected one of {STYLE_NAMES}.") from None
    scene = _generic_scene(class_word, rng, size)
    out = fn(scene, rng)
    if isinstance(out, Image.Image):
        return out.convert("RGB")
    return _finish(out, size)


def pretraining_examples(n: int, seed: int, size: int = IMAGE_SIZE) -> list[tuple[Image.Image, str]]:
    """``n`` generic (image, prompt) pairs cycling evenly through the classes.

    Prompts are class-level only.  A quarter use "image of a {class}" so that
    the "<style> image of <class>" phrasing of style prompts is not foreign.
    Example ``i`` depends only on ``(seed, i)``.
    """
    out = []
    for i in range(n):
        class_word = GENERIC_CLASSES[i % len(GENERIC_CLASSES)]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E7, i]))
        prompt = f"image of a {class_word}" if rng.random() < 0.25 else f"a photo of a {class_word}"
        out.append((render_class_image(class_word, rng, size), prompt))
    return out


# ---------------------------------------------------------------------------
# Styles.  Each returns either a supersampled float array (finished by
# render_styled) or a final-size array/Image when it works at output
# resolution (effects defined in output pixels, e.g. scanlines, tiles).


def _final(arr: np.ndarray) -> Image.Image:
    return _to_image(np.clip(arr, 0.0, 1.0))


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)


def _blur(arr: np.ndarray, radius: float) -> np.ndarray:
    img = _to_image(np.clip(arr, 0.0, 1.0)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img, dtype=np.float32) / 255.0


@lru_cache(maxsize=16)
def _cell_distance(h: int, period: int) -> np.ndarray:
    """Distance of each pixel to its grid cell centre, in cells (dot screens)."""
    gx, gy = _pixel_grid(h)
    d = np.hypot(gx % period - period / 2.0, gy % period - period / 2.0) / period
    d.flags.writeable = False
    return d


@lru_cache(maxsize=8)
def _popart_background(h: int, ss: int) -> np.ndarray:
    d = _cell_distance(h, 6 * ss)
    bg = np.where((d < 0.28)[..., None], np.asarray([0.95, 0.3, 0.2], np.float32), np.asarray([1.0, 0.88, 0.1], np.float32))
    bg.flags.writeable = False
    return bg


@lru_cache(maxsize=8)
def _blueprint_background(h: int, ss: int) -> np.ndarray:
    gx, gy = _pixel_grid(h)
    period = 8 * ss
    grid = ((gx % period) < ss / 2 + 0.5) | ((gy % period) < ss / 2 + 0.5)
    bg = np.where(grid[..., None], np.asarray([0.3, 0.5, 0.8], np.float32), np.asarray([0.1, 0.3, 0.62], np.float32))
    bg.flags.writeable = False
    return bg


@lru_cache(maxsize=8)
def _hatching(h: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _pixel_grid(h)
    period = 3 * ss
    a, b = (gx + gy) % period < ss, (gx - gy) % period < ss
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def _style_neon(sc: _Scene, rng) -> Image.Image:
    strokes = (sc.label == _OUTLINE).astype(np.float32)
    t = np.clip((sc.v + 1.0) / 2.0, 0.0, 1.0)[..., None]
    col = (1.0 - t) * np.asarray([1.0, 0.15, 0.8], np.float32) + t * np.asarray([0.1, 0.95, 1.0], np.float32)
    lines = _down(strokes[..., None] * col, sc.size)
    fill = _down(sc.alpha[..., None] * col, sc.size)
    glow = _blur(lines, 2.0 * sc.size / 64)
    yy = np.linspace(0.0, 1.0, sc.size, dtype=np.float32)[:, None, None]
    bg = np.asarray([0.02, 0.0, 0.05], np.float32) * (1 - yy) + np.asarray([0.07, 0.01, 0.12], np.float32) * yy
    return _final(bg + 0.1 * fill + 1.5 * lines + 1.6 * glow)


def _style_sepia(sc: _Scene, rng) -> Image.Image:
    bg = np.full((sc.hi, sc.hi, 3), rng.uniform(0.6, 0.85), np.float32)
    lum = _lum(_down(_composite(sc, bg), sc.size))
    lum = np.clip((lum - 0.5) * 1.2 + 0.5, 0.0, 1.0) ** 0.9
    dark = np.asarray([0.2, 0.11, 0.04], np.float32)
    light = np.asarray([1.0, 0.9, 0.72], np.float32)
    out = dark + (light - dark) * lum[..., None]
    g = (np.arange(sc.size, dtype=np.float32) + 0.5) / sc.size * 2 - 1
    r2 = g[None, :] ** 2 + g[:, None] ** 2
    out = out * (1.0 - 0.32 * r2)[..., None]
    out = out + rng.normal(0.0, 0.025, size=(sc.size, sc.size, 1)).astype(np.float32)
    return _final(out)


_PASTEL_BGS = ((1.0, 0.86, 0.9), (0.86, 1.0, 0.92), (0.9, 0.87, 1.0), (1.0, 0.92, 0.82), (0.85, 0.93, 1.0))


def _style_pastel(sc: _Scene, rng) -> np.ndarray:
    bg = np.asarray(_PASTEL_BGS[int(rng.integers(len(_PASTEL_BGS)))], np.float32)
    obj = 0.42 * sc.rgb + 0.58
    obj = np.where((sc.label == _OUTLINE)[..., None], np.asarray([0.72, 0.66, 0.8], np.float32), obj)
    return np.where(sc.alpha[..., None], obj, bg)


def _style_mosaic(sc: _Scene, rng) -> Image.Image:
    base = _down(_composite(sc, _background(rng, sc.hi)), sc.size)
    block = max(3, sc.size // 12)
    n = -(-sc.size // block)
    tiles = np.asarray(_to_image(base).resize((n, n), Image.Resampling.BOX), np.float32) / 255.0
    tiles = tiles * rng.uniform(0.9, 1.1, size=(n, n, 1)).astype(np.float32)
    up = np.repeat(np.repeat(tiles, block, 0), block, 1)[: sc.size, : sc.size]
    idx = np.arange(sc.size) % block == block - 1
    grout = idx[None, :] | idx[:, None]
    up = np.where(grout[..., None], 0.35 * up + 0.1, up)
    return _final(up)


def _style_sketch(sc: _Scene, rng) -> np.ndarray:
    diag1, diag2 = _hatching(sc.hi, sc.ss)
    lum = _lum(sc.rgb)
    hatch1 = diag1 & sc.alpha & (lum < 0.62)
    hatch2 = diag2 & sc.alpha & (lum < 0.35)
    tone = np.maximum((sc.label == _OUTLINE) * 0.9, (hatch1 | hatch2) * 0.38)
    paper = np.asarray([0.97, 0.96, 0.92], np.float32)
    pencil = np.asarray([0.16, 0.16, 0.22], np.float32)
    return paper * (1.0 - tone[..., None]) + pencil * tone[..., None]


def _style_halftone(sc: _Scene, rng) -> np.ndarray:
    # Dots are sized by how much of their cell the object covers and inked with
    # the cell's mean object colour, so small or thin subjects still print.
    period = 3 * sc.ss
    n = -(-sc.hi // period)
    pad = n * period - sc.hi
    a = np.pad(sc.alpha.astype(np.float32), ((0, pad), (0, pad)))
    col = np.pad(sc.rgb * sc.alpha[..., None], ((0, pad), (0, pad), (0, 0)))
    cover = a.reshape(n, period, n, period).mean((1, 3))
    mean = col.reshape(n, period, n, period, 3).sum((1, 3)) / np.maximum(
        a.reshape(n, period, n, period).sum((1, 3)), 1.0
    )[..., None]
    # Pale inks would vanish on the paper; darken them towards a print tone.
    lum = _lum(mean)
    ink = mean * np.where(lum > 0.75, 0.72, 1.0)[..., None]
    radius = np.where(cover > 0.05, 0.22 + 0.3 * np.sqrt(cover), 0.12)
    ink = np.where((cover > 0.05)[..., None], ink, np.asarray([0.72, 0.76, 0.85], np.float32))
    d = _cell_distance(n * period, period)
    big_r = np.repeat(np.repeat(radius.astype(np.float32), period, 0), period, 1)
    big_ink = np.repeat(np.repeat(ink.astype(np.float32), period, 0), period, 1)
    paper = np.asarray([0.98, 0.95, 0.85], np.float32)
    out = np.where((d < big_r)[..., None], big_ink, paper)
    return out[: sc.hi, : sc.hi]


def _style_negative(sc: _Scene, rng) -> np.ndarray:
    return 1.0 - _composite(sc, _background(rng, sc.hi))


def _style_scanline(sc: _Scene, rng) -> Image.Image:
    lum = _lum(_down(_composite(sc, np.full((sc.hi, sc.hi, 3), 0.04, np.float32)), sc.size))
    lum = np.maximum(lum, 0.05) ** 0.8
    out = lum[..., None] * np.asarray([0.3, 1.0, 0.42], np.float32)
    out = out + 0.35 * _blur(out, 1.0)
    rows = (np.arange(sc.size) % 2 == 1)[:, None, None]
    return _final(np.where(rows, out * 0.3, out))


def _style_blueprint(sc: _Scene, rng) -> np.ndarray:
    paper = np.asarray([0.1, 0.3, 0.62], np.float32)
    out = np.where(sc.alpha[..., None], paper + 0.07, _blueprint_background(sc.hi, sc.ss))
    return np.where((sc.label == _OUTLINE)[..., None], np.asarray([0.94, 0.97, 1.0], np.float32), out)


_POP_PALETTE = np.asarray(
    [(0.9, 0.1, 0.15), (0.1, 0.33, 0.85), (0.15, 0.78, 0.92), (1.0, 0.45, 0.72), (1.0, 1.0, 1.0), (0.1, 0.7, 0.3)],
    np.float32,
)


def _style_popart(sc: _Scene, rng) -> np.ndarray:
    bg = _popart_background(sc.hi, sc.ss)
    # |x - p|^2 up to a per-pixel constant, as one matmul (much faster).
    score = sc.rgb @ (-2.0 * _POP_PALETTE.T) + (_POP_PALETTE**2).sum(-1)
    flat = _POP_PALETTE[np.argmin(score, axis=-1)]
    # Thicken the outline: pop art lives on heavy black contours.
    edge = sc.label == _OUTLINE
    thick = edge.copy()
    for sh in range(1, sc.ss + 1):
        thick[sh:] |= edge[:-sh]
        thick[:-sh] |= edge[sh:]
        thick[:, sh:] |= edge[:, :-sh]
        thick[:, :-sh] |= edge[:, sh:]
    out = np.where(sc.alpha[..., None], flat, bg)
    return np.where(thick[..., None], np.float32(0.03), out)


def _style_glitch(sc: _Scene, rng) -> Image.Image:
    bg = np.full((sc.hi, sc.hi, 3), rng.uniform(0.1, 0.2), np.float32)
    base = _down(_composite(sc, bg), sc.size)
    shift = max(2, sc.size // 24)
    out = base.copy()
    out[..., 0] = np.roll(base[..., 0], shift, axis=1)
    out[..., 2] = np.roll(base[..., 2], -shift, axis=1)
    for _ in range(int(rng.integers(3, 6))):
        y0 = int(rng.integers(0, sc.size - 2))
        y1 = min(sc.size, y0 + int(rng.integers(2, max(3, sc.size // 10))))
        off = int(rng.integers(3, max(4, sc.size // 6))) * (1 if rng.random() < 0.5 else -1)
        out[y0:y1] = np.roll(out[y0:y1], off, axis=1)
        out[y0:y1] *= np.asarray([1.2, 0.8, 1.2], np.float32)
    return _final(out)


_THERMAL_STOPS = np.asarray([0.0, 0.25, 0.5, 0.72, 0.88, 1.0], np.float32)
_THERMAL_COLOURS = np.asarray(
    [(0.0, 0.0, 0.15), (0.25, 0.0, 0.6), (0.85, 0.05, 0.45), (1.0, 0.4, 0.0), (1.0, 0.85, 0.05), (1.0, 1.0, 0.85)],
    np.float32,
)


def _style_thermal(sc: _Scene, rng) -> Image.Image:
    heat_hi = np.where(sc.alpha, 0.58 + 0.42 * _lum(sc.rgb), 0.08).astype(np.float32)
    heat = _blur(_down(heat_hi, sc.size), 1.2 * sc.size / 64)
    heat = np.clip(heat + rng.normal(0.0, 0.02, heat.shape).astype(np.float32), 0.0, 1.0)
    out = np.stack([np.interp(heat, _THERMAL_STOPS, _THERMAL_COLOURS[:, c]) for c in range(3)], -1)
    return _final(out.astype(np.float32))


def _style_emboss(sc: _Scene, rng) -> Image.Image:
    lum = _lum(_down(_composite(sc, np.full((sc.hi, sc.hi, 3), 0.5, np.float32)), sc.size))
    relief = np.zeros_like(lum)
    relief[1:, 1:] = lum[1:, 1:] - lum[:-1, :-1]
    grey = np.clip(0.55 + 1.6 * relief, 0.0, 1.0)
    return _final(grey[..., None] * np.asarray([0.95, 0.92, 0.86], np.float32))


_STYLE_RENDERERS = {
    "neon": _style_neon,
    "sepia": _style_sepia,
    "pastel": _style_pastel,
    "mosaic": _style_mosaic,
    "sketch": _style_sketch,
    "halftone": _style_halftone,
    "negative": _style_negative,
    "scanline": _style_scanline,
    "blueprint": _style_blueprint,
    "popart": _style_popart,
    "glitch": _style_glitch,
    "thermal": _style_thermal,
    "emboss": _style_emboss,
}
assert set(_STYLE_RENDERERS) == set(STYLE_NAMES)
