"""Shared pieces of the procedural ToyBirds / ToyFlowers datasets.

Both renderers draw a *label map* at 4x the output resolution (every pixel holds the id of the part that
covers it), colour it through a lookup table, paste it over a soft background and downscale with LANCZOS.
The same label map gives the part masks at the output resolution, so masks and pixels always agree.

Colours are named from an 11-word vocabulary. Every image jitters the shade of each named colour a little,
but never so far that the jittered (and shaded) colour stops being nearest to its own base colour.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

SUPERSAMPLE = 4

# Base colours are spread out in RGB so that a nearest-base-colour rule separates the look-alike pairs
# (orange / brown / red, pink / purple, white / grey) with a wide margin.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (210, 25, 30),
    "orange": (250, 125, 10),
    "yellow": (245, 225, 35),
    "green": (50, 165, 55),
    "blue": (35, 85, 220),
    "purple": (125, 45, 170),
    "pink": (245, 115, 195),
    "brown": (115, 70, 35),
    "black": (25, 25, 25),
    "white": (248, 248, 248),
    "grey": (128, 128, 128),
}
COLOR_NAMES: list[str] = list(COLORS)
_BASE = np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float64)

# The renderers darken or lighten parts by at most these factors (light from above).
SHADE_RANGE = (0.9, 1.06)
# Jittered colours must keep their name even when scaled by these factors: the shading above plus a margin
# for anti-aliasing against dark outlines. Colours that lose their name early when darkened (yellow, white,
# pink) therefore get less dark jitter.
_SAFE_RANGE = (0.8, 1.08)

# A pixel belongs to a part's mask if the part covers more than this fraction of it (so masks of different
# parts never overlap).
MASK_COVERAGE = 0.5


@dataclass(frozen=True)
class ToyClass:
    """One class (species) of a toy dataset: the class fixes the attributes, images vary the rest."""

    id: int  # 0-based
    name: str  # CUB style "001.Yellow_Bellied_Brown_Wing_Finch" or Oxford style "class_00001"
    split: str  # "train" or "test"
    attributes: dict[str, str]

    def __hash__(self) -> int:  # attributes is a dict, so hash on the identity fields only
        return hash((self.id, self.name, self.split))


def nearest_color(rgb) -> str:
    """Name of the base colour nearest (Euclidean RGB) to `rgb`."""
    d = ((_BASE - np.asarray(rgb, dtype=np.float64)) ** 2).sum(axis=1)
    return COLOR_NAMES[int(np.argmin(d))]


def make_rng(*keys: int) -> np.random.Generator:
    """A generator determined by integer keys (seed, dataset tag, class id, image index, ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))


def _scale(rgb, f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(c * f)))) for c in rgb)


def jitter_color(name: str, rng: np.random.Generator, strength: float = 1.0) -> tuple[int, int, int]:
    """A per-image shade of the named colour: moderate hue / lightness / saturation jitter.

    The result, and its darkest and lightest shaded versions, are guaranteed to stay nearest to the base
    colour of `name`; if a draw strays, the jitter is halved and tried again.
    """
    base = COLORS[name]
    h, l, s = colorsys.rgb_to_hls(*(c / 255.0 for c in base))
    dh = rng.uniform(-0.022, 0.022) * strength
    dl = rng.uniform(-0.07, 0.07) * strength
    ds = rng.uniform(-0.12, 0.08) * strength
    for _ in range(5):
        r, g, b = colorsys.hls_to_rgb((h + dh) % 1.0, min(1, max(0, l + dl)), min(1, max(0, s * (1 + ds))))
        rgb = (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))
        if all(nearest_color(_scale(rgb, f)) == name for f in (_SAFE_RANGE[0], 1.0, _SAFE_RANGE[1])):
            return rgb
        dh, dl, ds = dh / 2, dl / 2, ds / 2
    return base


def shade(rgb, f: float) -> tuple[int, int, int]:
    """`rgb` scaled by f (darker below 1), clipped."""
    return _scale(rgb, f)


def mix(a, b, t: float) -> tuple[int, int, int]:
    """Linear blend from colour a (t=0) to b (t=1)."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------------
# geometry


def ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 48, rot: float = 0.0,
                   a0: float = 0.0, a1: float = 2 * math.pi) -> np.ndarray:
    """Points (n, 2) on an ellipse arc from angle a0 to a1 (radians), the ellipse rotated by `rot`."""
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-9)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def rotate(points: np.ndarray, angle: float, about=(0.0, 0.0)) -> np.ndarray:
    """Rotate (n, 2) points counter-clockwise (in y-up coordinates) by `angle` radians about a point."""
    c, s = math.cos(angle), math.sin(angle)
    p = np.asarray(points, dtype=np.float64) - about
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + about


def bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    """Quadratic Bezier curve from p0 to p2 with control point p1, as (n, 2) points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


class Placement:
    """Maps canonical shape coordinates (y up, unit scale) to canvas pixels (y down).

    pixel = centre + scale * R(tilt) @ (flip * x, -y)
    """

    def __init__(self, centre, scale: float, tilt: float = 0.0, flip: bool = False):
        self.centre = np.asarray(centre, dtype=np.float64)
        self.scale = float(scale)
        self.fx = -1.0 if flip else 1.0
        c, s = math.cos(tilt), math.sin(tilt)
        self.m = np.array([[c, -s], [s, c]]) * self.scale

    def __call__(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        q = np.stack([self.fx * p[:, 0], -p[:, 1]], axis=1)
        return q @ self.m.T + self.centre


# ---------------------------------------------------------------------------------------------------------
# the supersampled label canvas


class LabelCanvas:
    """A label map drawn at SUPERSAMPLE x the output size; every label has a colour and maybe a part name."""

    def __init__(self, size: int):
        self.size = size
        self.big = size * SUPERSAMPLE
        self.img = Image.new("L", (self.big, self.big), 0)
        self.draw = ImageDraw.Draw(self.img)
        self.colors: list[tuple[int, int, int]] = [(0, 0, 0)]
        self.parts: dict[str, list[int]] = {}

    def label(self, rgb, part: str | None = None) -> int:
        """A new label with colour `rgb`, counted in the mask of `part` (None: in no part mask)."""
        self.colors.append(tuple(int(c) for c in rgb))
        k = len(self.colors) - 1
        if k > 255:
            raise ValueError("too many labels on one canvas")
        if part is not None:
            self.parts.setdefault(part, []).append(k)
        return k

    @staticmethod
    def _flat(points) -> list[float]:
        return np.asarray(points, dtype=np.float64).ravel().tolist()

    def polygon(self, points, lab: int) -> None:
        self.draw.polygon(self._flat(points), fill=lab)

    def stroke(self, points, lab: int, width: float, closed: bool = False) -> None:
        """A polyline of `width` canvas pixels with round joints and caps."""
        p = np.asarray(points, dtype=np.float64)
        if closed:
            p = np.concatenate([p, p[:1]], axis=0)
        w = max(1, int(round(width)))
        self.draw.line(self._flat(p), fill=lab, width=w, joint="curve")
        r = w / 2.0
        for x, y in (p[0], p[-1]):
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=lab)

    def outlined(self, points, fill_lab: int, line_lab: int, width: float) -> None:
        """A filled polygon with an outline centred on its border."""
        self.stroke(points, line_lab, width, closed=True)
        self.polygon(points, fill_lab)

    def disc(self, cx: float, cy: float, r: float, lab: int) -> None:
        self.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=lab)

    def labels(self) -> np.ndarray:
        return np.asarray(self.img)

    def compose(self, background: Image.Image, shading: np.ndarray | None = None) -> Image.Image:
        """Paint the labels over `background` (output size) and downscale with LANCZOS.

        `shading`: optional per-row brightness factors (one per canvas row) for the labelled pixels.
        All per-pixel work is done by PIL in C: this is most of the cost of a 64 px image.
        """
        top = 1.0 if shading is None else float(np.max(shading))
        pal = np.zeros((256, 3), dtype=np.float64)
        pal[: len(self.colors)] = np.array(self.colors, dtype=np.float64) * top
        fg = Image.frombytes("P", self.img.size, self.img.tobytes())
        fg.putpalette(np.clip(np.round(pal), 0, 255).astype(np.uint8).tobytes())
        fg = fg.convert("RGB")
        if shading is not None:  # multiply by shading / top <= 1, one value per row
            rows = np.clip(np.round(np.asarray(shading, dtype=np.float64) / top * 255), 0, 255).astype(np.uint8)
            grad = Image.fromarray(rows[:, None], "L").resize(self.img.size, Image.NEAREST).convert("RGB")
            fg = ImageChops.multiply(fg, grad)
        bg = background.convert("RGB").resize(self.img.size, Image.BILINEAR)
        mask = self.img.point(lambda v: 255 if v else 0)
        return Image.composite(fg, bg, mask).resize((self.size, self.size), Image.LANCZOS)

    def masks(self, groups: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
        """Boolean masks at the output size: a pixel belongs to a part if the part covers > MASK_COVERAGE of it.

        `groups` adds union masks, e.g. {"bird": [...part names...]}; label 1..n without a part count in a
        group only if listed by the special name "_unnamed".
        """
        s, k = self.size, SUPERSAMPLE
        lab = self.labels()
        out: dict[str, np.ndarray] = {}

        def coverage(ids: list[int]) -> np.ndarray:
            if not ids:
                return np.zeros((s, s), dtype=bool)
            hit = np.isin(lab, ids) if len(ids) > 1 else lab == ids[0]
            return hit.reshape(s, k, s, k).sum(axis=(1, 3), dtype=np.uint8) > MASK_COVERAGE * k * k

        for part, ids in self.parts.items():
            out[part] = coverage(ids)
        named = {i for ids in self.parts.values() for i in ids}
        unnamed = [i for i in range(1, len(self.colors)) if i not in named]
        for group, members in (groups or {}).items():
            ids: list[int] = []
            for m in members:
                ids += unnamed if m == "_unnamed" else self.parts.get(m, [])
            out[group] = coverage(ids)
        return out


# ---------------------------------------------------------------------------------------------------------
# backgrounds (drawn at the output size and blurred: they are out of focus behind the subject)


def vertical_gradient(size: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    g = np.asarray(top, dtype=np.float64) * (1 - t) + np.asarray(bottom, dtype=np.float64) * t
    return np.broadcast_to(g, (size, size, 3)).astype(np.uint8)


def soft_background(size: int, top, bottom, blobs: list[tuple[float, float, float, tuple[int, int, int]]],
                    blur: float) -> Image.Image:
    """A vertical gradient with coloured discs (x, y, r in units of size; colour), blurred by `blur`*size."""
    # Draw at a fixed small working size so that the look (and cost) does not depend on the output size.
    w = min(size, 96)
    img = Image.fromarray(vertical_gradient(w, top, bottom), "RGB")
    d = ImageDraw.Draw(img)
    for x, y, r, col in blobs:
        d.ellipse([(x - r) * w, (y - r) * w, (x + r) * w, (y + r) * w], fill=tuple(col))
    img = img.filter(ImageFilter.GaussianBlur(max(0.5, blur * w)))
    if w != size:
        img = img.resize((size, size), Image.BICUBIC)
    return img


def contact_sheet(images: list[Image.Image], cols: int, pad: int = 2) -> Image.Image:
    """Images (all the same size) in a grid; handy in notebooks and for looking at the datasets."""
    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, im in enumerate(images):
        sheet.paste(im, (pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)))
    return sheet
