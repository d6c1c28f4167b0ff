"""ToyFlowers: a procedural stand-in for Oxford-102 with ground-truth petal and centre attributes.

102 classes (82 train / 20 test classes, as in the Oxford-102 split used by StackGAN and S2IGAN). A class
fixes petal count, petal colour, petal shape, centre colour, size and the number of blooms; its images
vary the layout of the blooms, the viewing angle, stems and leaves, background and the shade of every colour.

    >>> cls = class_table()[0]
    >>> img, masks = render(cls, index=0, size=64, seed=0, with_masks=True)
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from .toy_common import (
    SUPERSAMPLE,
    LabelCanvas,
    ToyClass,
    bezier,
    ellipse_points,
    jitter_color,
    make_rng,
    mix,
    rotate,
    shade,
    soft_background,
)

__all__ = ["ATTRIBUTES", "COLOR_PARTS", "N_CLASSES", "N_TRAIN_CLASSES", "PARTS", "ToyClass", "class_table",
           "render"]

PETAL_COLORS = ["red", "orange", "yellow", "blue", "purple", "pink", "white"]
CENTER_COLORS = ["yellow", "orange", "brown", "black", "white", "green", "red", "purple"]
PETAL_COUNTS = {"five": 5, "six": 6, "eight": 8, "twelve": 12}
BLOOM_COUNTS = {"one": 1, "two": 2, "three": 3}

ATTRIBUTES: dict[str, list[str]] = {
    "petal_count": list(PETAL_COUNTS),
    "petal_color": PETAL_COLORS,
    "petal_shape": ["round", "pointed", "long"],
    "center_color": CENTER_COLORS,
    "size": ["small", "large"],
    "bloom_count": list(BLOOM_COUNTS),
}

COLOR_PARTS: dict[str, str] = {"petal_color": "petals", "center_color": "center"}

# Every mask returned by render(..., with_masks=True); "flower" is all blooms including their outlines.
PARTS = ["petals", "center", "stem", "leaves", "flower"]

N_CLASSES = 102
N_TRAIN_CLASSES = 82

_TAG = 0xF10E
_CLASS_TABLE_SEED = 102


@functools.lru_cache(maxsize=1)
def _class_table() -> tuple[ToyClass, ...]:
    rng = make_rng(_CLASS_TABLE_SEED, _TAG)
    combos: list[dict[str, str]] = []
    seen: set[tuple] = set()
    while len(combos) < N_CLASSES:
        a = {k: str(rng.choice(v)) for k, v in ATTRIBUTES.items()}
        if a["center_color"] == a["petal_color"]:  # the centre must stand out from the petals
            continue
        key = tuple(a[k] for k in ATTRIBUTES)
        if key in seen:
            continue
        seen.add(key)
        combos.append(a)
    while True:
        test = set(rng.choice(N_CLASSES, N_CLASSES - N_TRAIN_CLASSES, replace=False).tolist())
        train_values = {(k, a[k]) for i, a in enumerate(combos) if i not in test for k in a}
        if all((k, combos[i][k]) in train_values for i in test for k in ATTRIBUTES):
            break
    return tuple(ToyClass(id=i, name=f"class_{i + 1:05d}", split="test" if i in test else "train", attributes=a)
                 for i, a in enumerate(combos))


def class_table() -> list[ToyClass]:
    """The 102 ToyFlowers classes, ids 0..101; independent of any user seed."""
    return list(_class_table())


# ---------------------------------------------------------------------------------------------------------
# rendering

_GREENS = [(58, 120, 48), (78, 140, 56), (40, 96, 52), (96, 146, 64), (52, 112, 80), (70, 110, 40)]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.choice(["foliage", "bokeh", "sky", "soil", "dark"], p=[0.3, 0.25, 0.15, 0.12, 0.18])
    blobs = []
    if kind in ("foliage", "bokeh"):
        g = _GREENS[rng.integers(len(_GREENS))]
        top, bottom = shade(g, rng.uniform(0.6, 0.9)), shade(g, rng.uniform(0.9, 1.2))
        for _ in range(12):
            col = shade(_GREENS[rng.integers(len(_GREENS))], rng.uniform(0.6, 1.3))
            blobs.append((rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1), rng.uniform(0.08, 0.2), col))
        if kind == "bokeh":
            for _ in range(rng.integers(4, 9)):
                col = mix(g, (235, 240, 200), rng.uniform(0.4, 0.7))
                blobs.append((rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.05), col))
        blur = rng.uniform(0.02, 0.035)
    elif kind == "sky":
        top, bottom = (110, 160, 220), (200, 222, 240)
        g = _GREENS[rng.integers(len(_GREENS))]
        for _ in range(10):  # a hedge along the bottom
            blobs.append((rng.uniform(-0.1, 1.1), rng.uniform(0.85, 1.1), rng.uniform(0.08, 0.16),
                          shade(g, rng.uniform(0.7, 1.2))))
        blur = 0.02
    elif kind == "soil":
        top, bottom = (96, 84, 62), (70, 56, 40)
        for _ in range(10):
            blobs.append((rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.08),
                          shade((96, 84, 62), rng.uniform(0.75, 1.25))))
        blur = 0.015
    else:
        top, bottom = (18, 26, 18), (34, 48, 30)
        for _ in range(6):
            blobs.append((rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.06, 0.14),
                          shade(_GREENS[rng.integers(len(_GREENS))], 0.45)))
        blur = 0.03
    return soft_background(size, top, bottom, blobs, blur=blur)


def _petal(shape: str, n: int, radius: float, r_in: float, k: int = 18) -> np.ndarray:
    """A petal pointing along +x from radius r_in to `radius` (canonical frame)."""
    u = np.linspace(0.0, 1.0, k)
    sector = math.sin(math.pi / n)
    if shape == "round":  # broad, widest near the end, rounded tip
        w = min(0.44, 1.3 * sector) * radius
        f = np.sqrt(np.clip(np.sin(np.pi * u), 0, 1)) * (0.45 + 0.55 * u ** 0.7)
        length = 0.93 * radius
    elif shape == "pointed":  # widest in the middle, sharp tip
        w = min(0.36, 1.15 * sector) * radius
        f = np.sin(np.pi * u ** 0.85) ** 0.8
        length = radius
    else:  # long and narrow strap
        w = min(0.13, 0.6 * sector) * radius
        f = np.sqrt(np.clip(np.sin(np.pi * u), 0, 1))
        length = radius
    x = r_in + u * (length - r_in)
    return np.concatenate([np.stack([x, w * f], 1), np.stack([x, -w * f], 1)[::-1][1:]])


def render(cls: ToyClass, index: int, size: int, seed: int, with_masks: bool = False):
    """Render image `index` of flower class `cls` as an RGB image of size x size pixels.

    Deterministic in (seed, cls.id, index, size). With `with_masks`, also returns part name -> boolean
    (size, size) mask of the visible pixels of that part (see PARTS; COLOR_PARTS maps colour attributes
    to masks).
    """
    a = cls.attributes
    rng = make_rng(seed, _TAG, cls.id, index)
    bg_rng, colour_rng, p = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(3))

    n_blooms = BLOOM_COUNTS[a["bloom_count"]]
    n_petals = PETAL_COUNTS[a["petal_count"]]
    S = size * SUPERSAMPLE
    small = a["size"] == "small"
    if n_blooms == 1:
        r_lo, r_hi = (0.13, 0.16) if small else (0.27, 0.32)
    else:
        r_lo, r_hi = (0.11, 0.135) if small else (0.19, 0.23)

    # --- layout: bloom centres that do not overlap too much, the front (lower) ones drawn last
    blooms = []
    for _ in range(n_blooms):
        r = S * p.uniform(r_lo, r_hi)
        best = None
        for _try in range(30):
            c = np.array([p.uniform(r * 0.95, S - r * 0.95), p.uniform(r * 0.95, S - r * 1.1)])
            if n_blooms == 1:
                c = np.array([p.uniform(0.4, 0.6), p.uniform(0.36, 0.52)]) * S
            gap = min([np.linalg.norm(c - b[0]) - 1.15 * (r + b[1]) * 0.75 for b in blooms], default=1.0)
            if best is None or gap > best[0]:
                best = (gap, c)
            if gap > 0:
                break
        blooms.append((best[1], r))
    blooms.sort(key=lambda b: b[0][1])

    ow = max(0.75 * SUPERSAMPLE, 0.009 * S)
    cv = LabelCanvas(size)
    stem_green = shade(_GREENS[p.integers(len(_GREENS))], p.uniform(0.9, 1.1))
    stem_lab = cv.label(stem_green, "stem")
    stem_line = cv.label(shade(stem_green, 0.55), "stem")

    # --- stems and leaves, behind all blooms
    for c, r in blooms:
        end = np.array([c[0] + p.uniform(-0.25, 0.25) * S, S * 1.05])
        ctrl = np.array([(c[0] + end[0]) / 2 + p.uniform(-0.12, 0.12) * S, (c[1] + end[1]) / 2])
        stem = bezier(c, ctrl, end, 20)
        width = S * (0.016 if small else 0.022)
        cv.stroke(stem, stem_line, width + 2 * ow)
        cv.stroke(stem, stem_lab, width)
        for _ in range(p.integers(1, 3)):
            t = p.uniform(0.35, 0.8)
            i = int(t * (len(stem) - 1))
            base = stem[i]
            side = p.choice([-1.0, 1.0])
            ang = -math.pi / 2 + side * p.uniform(0.5, 1.2)  # pointing up and outwards (image y is down)
            length = S * p.uniform(0.13, 0.2) * (0.8 if small else 1.0)
            u = np.linspace(0.0, 1.0, 16)
            half = length * p.uniform(0.14, 0.2) * np.sin(np.pi * u ** 0.8) ** 0.9  # pointed at both ends
            leaf = np.concatenate([np.stack([u * length, half], 1), np.stack([u * length, -half], 1)[::-1]])
            leaf = rotate(leaf, ang) + base
            green = shade(_GREENS[p.integers(len(_GREENS))], p.uniform(0.85, 1.15))
            cv.outlined(leaf, cv.label(green, "leaves"), cv.label(shade(green, 0.5), "leaves"), ow * 1.6)
            rib = rotate(np.array([[0.05 * length, 0.0], [0.85 * length, 0.0]]), ang) + base
            cv.stroke(rib, cv.label(shade(green, 0.7), "leaves"), ow * 0.6)

    # --- blooms
    petal_rgb = [jitter_color(a["petal_color"], colour_rng) for _ in blooms]
    center_rgb = [jitter_color(a["center_color"], colour_rng) for _ in blooms]
    for (c, r), prgb, crgb in zip(blooms, petal_rgb, center_rgb):
        squash = p.uniform(0.7, 1.0)
        axis = p.uniform(0, math.pi)
        start = p.uniform(0, 2 * math.pi)

        def view(pts: np.ndarray) -> np.ndarray:  # tilt the flower head away from the viewer a little
            q = rotate(pts, -axis)
            q[:, 1] *= squash
            return rotate(q, axis) + c

        # small centres are drawn relatively larger so that their colour survives at 64 px
        r_center = r * (0.2 if a["petal_shape"] == "long" else 0.25) + 0.9 * SUPERSAMPLE
        petal = _petal(a["petal_shape"], n_petals, r, r_center * 0.5)
        p_lab = cv.label(prgb, "petals")
        p_line = cv.label(shade(prgb, 0.55) if sum(prgb) > 200 else mix(prgb, (200, 200, 210), 0.4), "_edge")
        vein = cv.label(shade(prgb, 0.82) if sum(prgb) > 200 else mix(prgb, (200, 200, 210), 0.2), "_edge")
        for i in range(n_petals):
            ang = start + 2 * math.pi * i / n_petals + p.normal(0, 0.04)
            pts = view(rotate(petal * p.uniform(0.95, 1.05), ang))
            cv.outlined(pts, p_lab, p_line, ow * 1.3)
            vein_pts = view(rotate(np.array([[r_center, 0.0], [0.6 * r, 0.0]]), ang))
            cv.stroke(vein_pts, vein, ow * 0.5)
        disc = view(ellipse_points(0, 0, r_center, r_center, 32))
        c_lab = cv.label(crgb, "center")
        c_line = cv.label(shade(crgb, 0.5) if sum(crgb) > 200 else mix(crgb, (200, 200, 200), 0.35), "_edge")
        cv.outlined(disc, c_lab, c_line, ow)
        if r_center > 5 * SUPERSAMPLE:  # stamens: a ring of dots, where there is room for them
            dot = cv.label(shade(crgb, 0.7) if sum(crgb) > 200 else mix(crgb, (160, 160, 160), 0.3), "_edge")
            for j in range(7):
                ang = start + 2 * math.pi * j / 7
                d = view(np.array([[0.55 * r_center * math.cos(ang), 0.55 * r_center * math.sin(ang)]]))[0]
                cv.disc(*d, 0.1 * r_center, dot)

    img = cv.compose(_background(bg_rng, size))
    if not with_masks:
        return img
    masks = cv.masks({"flower": ["petals", "center", "_edge"]})
    return img, {k: masks[k] for k in PARTS}
