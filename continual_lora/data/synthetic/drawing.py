"""Drawing the synthetic world: geometry, colours, scenes and the plain renderers.

A scene is drawn as a part-label map in the object's own frame, placed under a
random pose, then coloured and shaded at a supersampled resolution.
``render_class_image`` colours it generically, ``render_object`` with a
concept's fixed pattern, and ``pretraining_examples`` pairs generic renders with
class-level prompts.  ``styles`` reinterprets the same scenes, which is why
``Scene`` and the helpers that build and finish one are public.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from continual_lora.data.synthetic.catalogue import (
    GENERIC_CLASSES,
    OBJECT_PATTERNS,
    NAMED_COLOURS,
    ObjectConcept,
    patterned_instance,
    sample_shape,
)

__all__ = [
    "IMAGE_SIZE",
    "render_class_image",
    "render_object",
    "pretraining_examples",
    # What ``styles`` builds its looks from.
    "OUTLINE",
    "Scene",
    "background",
    "composite",
    "downsample",
    "finish",
    "generic_scene",
    "pixel_grid",
    "to_image",
]

IMAGE_SIZE = 64


# ---------------------------------------------------------------------------
# Part labels.  Shapes are drawn as a label map rather than as colours so that
# the same geometry can be coloured generically, patterned for a concept, or
# reinterpreted by a style (e.g. only the outline strokes for a sketch).
_EMPTY, OUTLINE, _BODY, _SECOND, _DET_A, _DET_B, _DET_C, _FACE_L, _FACE_R = range(9)
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
            outline=OUTLINE if outline else None,
            width=self.width,
        )

    def ellipse(self, cx, cy, rx, ry, label: int, outline: bool = True) -> None:
        x0, y0 = self.pt(cx - rx, cy - ry)
        x1, y1 = self.pt(cx + rx, cy + ry)
        self.draw.ellipse(
            (x0, y0, x1, y1),
            fill=label,
            outline=OUTLINE if outline else None,
            width=self.width,
        )

    def blob(self, circles, label: int) -> None:
        # Union of circles with a single outer outline: drawing inflated dark
        # discs first and the fills on top avoids internal arcs.
        grow = self.width / self.half
        for cx, cy, r in circles:
            self.ellipse(cx, cy, r + grow, r + grow, OUTLINE, outline=False)
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
        p.draw.line([p.pt(x, 0.08), p.pt(x, 0.34)], fill=OUTLINE, width=p.width)
        p.draw.line([p.pt(x - 0.13, 0.21), p.pt(x + 0.13, 0.21)], fill=OUTLINE, width=p.width)


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
    p.draw.arc((*p.pt(0.2, -bh * 0.75), *p.pt(0.5, bh * 0.75)), 125, 235, fill=OUTLINE, width=p.width)
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
    lut[OUTLINE] = _OUTLINE_RGB
    for lab in (_BODY, _FACE_L, _FACE_R, _DET_A, _DET_B, _DET_C):
        lut[lab] = body
    lut[_SECOND] = second
    for lab, c in det.items():
        jitter = rng.uniform(0.92, 1.06)
        lut[lab] = np.clip(np.asarray(c) * jitter, 0.0, 1.0)
    return lut


# ---------------------------------------------------------------------------
# Scene assembly.


def _supersample(size: int) -> int:
    # 4x gives clean anti-aliased edges at 64 px; larger images need less.
    return 4 if size <= 128 else 2


@lru_cache(maxsize=8)
def pixel_grid(h: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel centre of an ``h`` x ``h`` image; cached, so never written to."""
    centres = np.arange(h, dtype=np.float32) + 0.5
    return np.meshgrid(centres, centres)


@dataclass
class Scene:
    """An object placed, coloured and shaded at ``ss`` times the output size, with no background."""

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
    gx, gy = pixel_grid(h)
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
) -> Scene:
    rgb = lut[label]
    if pattern is not None:
        name, angle, period, pseed, ca, cb = pattern
        patt = np.isin(label, _PATTERNED)
        figure = _pattern_mask(name, u, v, angle, period, pseed)
        rgb = np.where((patt & figure)[..., None], np.asarray(cb, np.float32), rgb)
        rgb = np.where((patt & ~figure)[..., None], np.asarray(ca, np.float32), rgb)
    mult, spec = _shade(class_word, u, v)
    mult = mult * _LABEL_SHADE[label]
    outline = label == OUTLINE
    mult = np.where(outline, 1.0, mult)
    rgb = rgb * mult[..., None]
    if spec is not None:
        rgb = rgb + np.where(outline, 0.0, spec)[..., None]
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return Scene(size, ss, label, rgb, label != _EMPTY, u, v)


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


def generic_scene(class_word: str, rng: np.random.Generator, size: int) -> Scene:
    """A random, plainly coloured instance of ``class_word`` for a ``size`` px image."""
    if class_word not in _DRAWERS:
        raise ValueError(f"Unknown class word {class_word!r}; expected one of {GENERIC_CLASSES}.")
    shape = sample_shape(class_word, rng)
    lut = _generic_colours(class_word, rng)
    label, u, v, ss = _place(class_word, shape, rng, size, (0.5, 0.85), 10.0)
    return _colour_scene(class_word, label, u, v, lut, size, ss)


def background(rng: np.random.Generator, h: int) -> np.ndarray:
    """A random soft ``h`` x ``h`` background: plain, a vertical gradient or a floor edge."""
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
    return _shaded_ground(top, bottom, kind == 2, rng, h)


# The colours a named ground comes in (``pretraining_examples``): the concepts' vivid
# named colours and four muted tones that photographs and old prints stand on. Without
# a light warm brown, no word of the base model moved the ground towards sepia's, and
# a sepia adapter missed the base model in 6 of 9 pairs (docs/tiny-model-trials.md,
# trials 18 and 19).
GROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    **NAMED_COLOURS,
    "tan": (196, 148, 92),
    "grey": (140, 140, 140),
    "olive": (120, 120, 40),
    "navy": (30, 40, 100),
}


def named_background(rgb: tuple[int, int, int], rng: np.random.Generator, h: int) -> np.ndarray:
    """A ground of one named colour, of the three kinds ``background`` draws: plain,
    shading down to a darker tone of it, or with a floor edge."""
    top = np.asarray(_rgb255(rgb), np.float32)
    kind = int(rng.integers(3))
    if kind == 0:
        return np.broadcast_to(top, (h, h, 3))
    bottom = top * np.float32(rng.uniform(0.7, 0.95))
    return _shaded_ground(top, bottom, kind == 2, rng, h)


def _shaded_ground(top: np.ndarray, bottom: np.ndarray, floor_edge: bool, rng: np.random.Generator, h: int) -> np.ndarray:
    """An ``h`` x ``h`` ground from ``top`` down to ``bottom``: a vertical gradient, or
    a soft "table/floor" edge, the only structure backgrounds ever have."""
    t = (np.arange(h, dtype=np.float32) + 0.5) / h
    if floor_edge:
        horizon = rng.uniform(0.55, 0.8)
        t = np.clip((t - horizon) / 0.04 + 0.5, 0.0, 1.0)
    col = top[None, :] * (1.0 - t[:, None]) + bottom[None, :] * t[:, None]
    return np.broadcast_to(col[:, None, :], (h, h, 3))


def composite(scene: Scene, bg: np.ndarray) -> np.ndarray:
    """The scene's object over ``bg``, at the scene's supersampled size."""
    return np.where(scene.alpha[..., None], scene.rgb, bg)


def to_image(arr: np.ndarray) -> Image.Image:
    """An 8-bit L or RGB image of a float image in [0, 1]."""
    a = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(a, "L" if a.ndim == 2 else "RGB")


def downsample(arr: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased downsample of a supersampled float image, back to float."""
    img = to_image(arr).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def finish(arr_hi: np.ndarray, size: int) -> Image.Image:
    """The final ``size`` px RGB image of a float image, supersampled or not."""
    img = to_image(arr_hi)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img.convert("RGB")


# ---------------------------------------------------------------------------
# Public renderers.


def render_class_image(class_word: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """A generic, plainly coloured instance of ``class_word`` on a soft background."""
    scene = generic_scene(class_word, rng, size)
    return finish(composite(scene, background(rng, scene.hi)), size)


def render_object(concept: ObjectConcept, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """The concept's fixed instance under a random pose and background."""
    ca, cb, c3 = (np.asarray(_rgb255(c), np.float32) for c in concept.colors)
    lut = np.zeros((_N_LABELS, 3), dtype=np.float32)
    lut[:] = ca
    lut[OUTLINE] = _OUTLINE_RGB
    lut[_SECOND] = c3
    for lab, c in _DETAIL_DEFAULTS.get(concept.class_word, {}).items():
        lut[lab] = c
    label, u, v, ss = _place(concept.class_word, concept.shape, rng, size, (0.55, 0.82), 15.0)
    pattern = (concept.pattern, concept.pattern_angle, concept.pattern_period, concept.pattern_seed, ca, cb)
    scene = _colour_scene(concept.class_word, label, u, v, lut, size, ss, pattern)
    return finish(composite(scene, background(rng, scene.hi)), size)


def pretraining_examples(
    n: int,
    seed: int,
    size: int = IMAGE_SIZE,
    patterned_fraction: float = 0.0,
    pattern_scale: float = 1.0,
    named_ground_fraction: float = 0.0,
) -> list[tuple[Image.Image, str]]:
    """``n`` generic (image, prompt) pairs cycling evenly through the classes.

    Prompts are class-level only.  A quarter use "image of a {class}" so that
    the "<style> image of <class>" phrasing of style prompts is not foreign.
    With ``patterned_fraction`` > 0 that share of the examples (drawn at random)
    are instead patterned instances of their class in random named colours
    (``patterned_instance``, periods times ``pattern_scale``) under a prompt that
    names what it shows: "a photo of a teal and pink dotted cube", as a large
    model's captions would.  With ``named_ground_fraction`` > 0 that share of the
    plain examples stand on a ground of one of ``GROUND_COLOURS``, named where a style's word
    stands: "black image of a ball".  A style is a look of the whole image, and a base
    model whose prompts never move the ground leaves a style's adapter no word-bound
    ground to re-weight (docs/tiny-model-trials.md, trial 18).  Example ``i`` depends
    only on ``(seed, i)``, and a fraction of 0 gives the examples it gave before it
    existed.
    """
    out = []
    for i in range(n):
        class_word = GENERIC_CLASSES[i % len(GENERIC_CLASSES)]
        if patterned_fraction > 0:
            pick = np.random.default_rng(np.random.SeedSequence([seed, 0x9A77, i]))
            if pick.random() < patterned_fraction:
                instance = patterned_instance(class_word, pick, pattern_scale)
                ground, figure, _ = instance.colour_names
                article = "an" if ground[0] in "aeiou" else "a"
                prompt = f"a photo of {article} {ground} and {figure} {instance.pattern} {class_word}"
                out.append((render_object(instance, pick, size), prompt))
                continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E7, i]))
        if named_ground_fraction > 0:
            ground_pick = np.random.default_rng(np.random.SeedSequence([seed, 0x6A0D, i]))
            if ground_pick.random() < named_ground_fraction:
                names = list(GROUND_COLOURS)
                ground = names[int(ground_pick.integers(len(names)))]
                scene = generic_scene(class_word, rng, size)
                bg = named_background(GROUND_COLOURS[ground], ground_pick, scene.hi)
                out.append((finish(composite(scene, bg), size), f"{ground} image of a {class_word}"))
                continue
        prompt = f"image of a {class_word}" if rng.random() < 0.25 else f"a photo of a {class_word}"
        out.append((render_class_image(class_word, rng, size), prompt))
    return out
