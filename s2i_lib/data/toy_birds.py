"""ToyBirds: a procedural stand-in for CUB-200-2011 with ground-truth part colours.

200 species (150 train / 50 test classes, as in the CUB zero-shot split used by StackGAN and S2IGAN).
A species is a fixed combination of attributes (crown, belly, wing, beak colours, beak length, size, wing
bars); its images vary pose (facing, tilt), position, scale within the size class, background and the
shade of every colour.

    >>> cls = class_table()[0]
    >>> img, masks = render(cls, index=0, size=64, seed=0, with_masks=True)
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from .toy_common import (
    COLOR_NAMES,
    SUPERSAMPLE,
    LabelCanvas,
    Placement,
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

BEAK_COLORS = ["black", "grey", "brown", "orange", "yellow", "red", "white", "pink"]
WING_BAR_COLORS = ["white", "yellow", "black", "red", "orange", "blue"]

ATTRIBUTES: dict[str, list[str]] = {
    "crown_color": list(COLOR_NAMES),
    "belly_color": list(COLOR_NAMES),
    "wing_color": list(COLOR_NAMES),
    "beak_color": BEAK_COLORS,
    "beak_length": ["short", "long"],
    "size": ["small", "large"],
    "wing_bars": ["none"] + WING_BAR_COLORS,
}

# Colour attribute -> part mask that shows it. "wing_bars" may be "none": then its mask is empty.
COLOR_PARTS: dict[str, str] = {
    "crown_color": "crown",
    "belly_color": "belly",
    "wing_color": "wings",
    "beak_color": "beak",
    "wing_bars": "wing_bars",
}

# Every mask returned by render(..., with_masks=True). back, head (cheeks, nape) and tail have the wing
# colour, the throat has the belly colour; "bird" is the whole silhouette including its outline.
PARTS = ["crown", "belly", "wings", "wing_bars", "beak", "back", "head", "throat", "tail", "eye", "legs",
         "bird", "branch"]

N_CLASSES = 200
N_TRAIN_CLASSES = 150

_TAG = 0xB12D  # keeps bird random streams apart from flower ones
_CLASS_TABLE_SEED = 2011  # fixed: class identities do not depend on the user's seed
_KIND = {("small", "short"): "Finch", ("small", "long"): "Warbler", ("large", "short"): "Grosbeak",
         ("large", "long"): "Thrasher"}


def _class_name(a: dict[str, str], taken: set[str]) -> str:
    """A descriptive CUB-style name, made longer only as needed to be unique."""
    cap = str.capitalize
    kind = _KIND[(a["size"], a["beak_length"])]
    core = f"{cap(a['belly_color'])}_Bellied_{cap(a['wing_color'])}_Wing_{kind}"
    options = [core, f"{cap(a['crown_color'])}_Crowned_{core}"]
    if a["wing_bars"] != "none":
        options.append(f"{cap(a['crown_color'])}_Crowned_{cap(a['wing_bars'])}_Barred_{core}")
    options.append(f"{cap(a['crown_color'])}_Crowned_{cap(a['beak_color'])}_Billed_{core}")
    for name in options:
        if name not in taken:
            return name
    return options[-1] + f"_{cap(a['wing_bars'])}_Bars"


@functools.lru_cache(maxsize=1)
def _class_table() -> tuple[ToyClass, ...]:
    rng = make_rng(_CLASS_TABLE_SEED, _TAG)
    combos: list[dict[str, str]] = []
    seen: set[tuple] = set()
    while len(combos) < N_CLASSES:
        a = {
            "crown_color": str(rng.choice(COLOR_NAMES)),
            "belly_color": str(rng.choice(COLOR_NAMES)),
            "wing_color": str(rng.choice(COLOR_NAMES)),
            "beak_color": str(rng.choice(BEAK_COLORS)),
            "beak_length": str(rng.choice(["short", "long"])),
            "size": str(rng.choice(["small", "large"])),
            "wing_bars": "none" if rng.random() < 0.45 else str(rng.choice(WING_BAR_COLORS)),
        }
        if a["wing_bars"] == a["wing_color"]:  # bars must be visible on the wing
            continue
        if a["crown_color"] == a["belly_color"] == a["wing_color"]:  # a one-colour bird says little
            continue
        key = tuple(a[k] for k in ATTRIBUTES)
        if key in seen:
            continue
        seen.add(key)
        combos.append(a)
    # Test classes are spread over the ids (like CUB's split); every value they use also occurs in training.
    while True:
        test = set(rng.choice(N_CLASSES, N_CLASSES - N_TRAIN_CLASSES, replace=False).tolist())
        train_values = {(k, a[k]) for i, a in enumerate(combos) if i not in test for k in a}
        if all((k, combos[i][k]) in train_values for i in test for k in ATTRIBUTES):
            break
    taken: set[str] = set()
    table = []
    for i, a in enumerate(combos):
        name = _class_name(a, taken)
        taken.add(name)
        table.append(ToyClass(id=i, name=f"{i + 1:03d}.{name}", split="test" if i in test else "train",
                              attributes=a))
    return tuple(table)


def class_table() -> list[ToyClass]:
    """The 200 ToyBirds species, ids 0..199; independent of any user seed."""
    return list(_class_table())


# ---------------------------------------------------------------------------------------------------------
# rendering

_SKIES = [
    ((105, 155, 220), (185, 212, 240)),  # blue sky
    ((150, 190, 232), (226, 236, 246)),  # pale sky
    ((140, 160, 210), (242, 204, 172)),  # dawn
    ((165, 172, 184), (214, 218, 224)),  # overcast
    ((120, 170, 200), (200, 225, 215)),  # hazy
]
_FOLIAGE = [(46, 96, 40), (70, 125, 50), (96, 140, 60), (40, 80, 55), (120, 150, 70), (60, 110, 80)]
_BARK = [(92, 66, 48), (110, 84, 60), (84, 74, 66), (128, 100, 72), (70, 56, 46)]
_OUTLINE = (28, 26, 30)
SCENES = ("natural", "plain")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.choice(["sky", "foliage", "mixed"], p=[0.35, 0.3, 0.35])
    blobs = []
    if kind == "foliage":
        g = _FOLIAGE[rng.integers(len(_FOLIAGE))]
        top, bottom = shade(g, 0.75), shade(g, 1.15)
        for _ in range(14):
            col = shade(_FOLIAGE[rng.integers(len(_FOLIAGE))], rng.uniform(0.7, 1.3))
            blobs.append((rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1), rng.uniform(0.08, 0.22), col))
        for _ in range(rng.integers(0, 4)):  # gaps of sky through the leaves
            blobs.append((rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.04, 0.09), (200, 220, 235)))
    else:
        top, bottom = _SKIES[rng.integers(len(_SKIES))]
        for _ in range(rng.integers(0, 3)):  # clouds
            x, y = rng.uniform(0, 1), rng.uniform(0, 0.5)
            for j in range(3):
                blobs.append((x + 0.07 * j, y + rng.uniform(-0.02, 0.02), rng.uniform(0.05, 0.09),
                              mix(top, (250, 250, 252), 0.75)))
        if kind == "mixed":
            for _ in range(rng.integers(1, 3)):  # leafy clumps from a corner or edge
                cx, cy = rng.choice([-0.05, 1.05]), rng.uniform(0.0, 1.0)
                for _ in range(7):
                    col = shade(_FOLIAGE[rng.integers(len(_FOLIAGE))], rng.uniform(0.75, 1.25))
                    blobs.append((cx + rng.normal(0, 0.12), cy + rng.normal(0, 0.15), rng.uniform(0.06, 0.15), col))
    return soft_background(size, top, bottom, blobs, blur=rng.uniform(0.018, 0.03))


def _plain_background(rng: np.random.Generator, size: int) -> Image.Image:
    """One of the skies as a bare gradient: the background of the plain scene."""
    top, bottom = _SKIES[rng.integers(len(_SKIES))]
    return soft_background(size, top, bottom, [], blur=0.02)


def _wing_outline(shoulder, tip, width: float, bow: float, n: int = 24):
    """Upper and lower edges (n points each, shoulder to tip) of a leaf-shaped folded wing."""
    s, t = np.asarray(shoulder), np.asarray(tip)
    d = t - s
    normal = np.array([-d[1], d[0]]) / np.linalg.norm(d)
    if normal[1] < 0:
        normal = -normal
    u = np.linspace(0.0, 1.0, n)[:, None]
    centre = s + d * u + bow * np.sin(np.pi * u) * normal
    # Round at the shoulder, tapering to a point at the tip.
    w = np.where(u < 0.3, np.sqrt(np.clip(u / 0.3, 0, 1)), ((1 - u) / 0.7) ** 0.9) * width
    w[0] = 0.0
    return centre + w * normal, centre - 0.85 * w * normal, u[:, 0]


def render(cls: ToyClass, index: int, size: int, seed: int, with_masks: bool = False, scene: str = "natural"):
    """Render image `index` of species `cls` as an RGB image of size x size pixels.

    Deterministic in (seed, cls.id, index, size). With `with_masks`, also returns part name -> boolean
    (size, size) mask of the visible pixels of that part (see PARTS; COLOR_PARTS maps colour attributes
    to masks).

    ``scene="plain"`` draws the same species (same attributes, same captions) in an easier scene: a sky
    without clouds or leaves, a bare branch, the bird centred, upright, facing right, in a narrower range
    of sizes and with half the colour jitter. It is the CPU-sized default (dataset ``toybirds_plain``;
    notebook 01 says why).
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; expected one of {SCENES}")
    plain = scene == "plain"
    a = cls.attributes
    rng = make_rng(seed, _TAG, cls.id, index)
    bg_rng, colour_rng, pose_rng = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(3))

    # --- colours of this image
    j = 0.5 if plain else 1.0
    wing = jitter_color(a["wing_color"], colour_rng, j)
    cols = {
        "crown": jitter_color(a["crown_color"], colour_rng, j),
        "belly": jitter_color(a["belly_color"], colour_rng, j),
        "wings": wing,
        "back": jitter_color(a["wing_color"], colour_rng, 0.4 * j),
        "beak": jitter_color(a["beak_color"], colour_rng, j),
    }
    cols["head"] = cols["back"]
    cols["throat"] = cols["belly"]
    cols["tail"] = shade(wing, 0.92)
    if a["wing_bars"] != "none":
        cols["wing_bars"] = jitter_color(a["wing_bars"], colour_rng, j)

    # --- pose and proportions (canonical frame: facing right, y up, body centre at the origin)
    p = pose_rng
    small = a["size"] == "small"
    body_rx = 0.44
    body_ry = (0.30 if small else 0.255) * p.uniform(0.95, 1.05)
    body_rot = p.uniform(0.18, 0.38)
    head_r = (0.215 if small else 0.18) * p.uniform(0.95, 1.05)
    head_c = np.array([0.33, 0.24 + (0.02 if small else 0.0)]) + p.normal(0, 0.012, 2)
    beak_len = (0.12 if a["beak_length"] == "short" else 0.36) * p.uniform(0.9, 1.1)
    beak_dir = p.uniform(-0.25, 0.02) - (0.1 if a["beak_length"] == "long" else 0.0)
    tail_rot = p.uniform(-0.15, 0.2)
    perch_y = -0.40

    # --- placement in the canvas
    S = size * SUPERSAMPLE
    unit = S * (p.uniform(0.30, 0.345) if small else p.uniform(0.49, 0.55))
    tilt = p.uniform(-0.14, 0.14)
    flip = bool(p.random() < 0.5)
    if plain:  # the natural scene's draws, narrowed: small 0.38-0.40, large 0.52-0.54 of the frame
        unit = S * (0.38 + 0.02 * (unit / S - 0.30) / 0.045 if small else 0.52 + 0.02 * (unit / S - 0.49) / 0.06)
        tilt, flip = tilt * 0.25, False
    extent = np.array([[-0.84, -0.12], [-0.5, perch_y - 0.03], [0.3, perch_y - 0.03], [0.33, 0.47],
                       [0.35 + head_r + beak_len, 0.2], [0.0, 0.34]])
    probe = Placement((0.0, 0.0), unit, tilt, flip)(extent)
    lo, hi = probe.min(axis=0), probe.max(axis=0)
    margin = 0.04 * S
    cx = p.uniform(margin - lo[0], max(margin - lo[0], S - margin - hi[0]))
    cy = p.uniform(margin - lo[1], max(margin - lo[1], S - 0.1 * S - hi[1]))
    if plain:  # centred in the room the bird leaves, give or take 2 % of the frame
        cx = (margin - lo[0] + max(margin - lo[0], S - margin - hi[0])) / 2 + (cx / S - 0.5) * 0.04 * S
        cy = (margin - lo[1] + max(margin - lo[1], S - 0.1 * S - hi[1])) / 2 + (cy / S - 0.5) * 0.04 * S
    place = Placement((cx, cy), unit, tilt, flip)

    cv = LabelCanvas(size)
    ow = max(0.85 * SUPERSAMPLE, 0.0125 * S)  # outline width in canvas pixels
    outline = cv.label(_OUTLINE)

    # --- branch (in focus with the bird), through the feet
    feet = place(np.array([[0.02, perch_y], [0.14, perch_y]])).mean(axis=0)
    b_ang = p.uniform(-0.22, 0.22) + tilt * 0.5
    b_w = S * p.uniform(0.035, 0.055) * (0.8 if small else 1.0)
    bark = shade(_BARK[p.integers(len(_BARK))], p.uniform(0.9, 1.1))
    dx, dy = math.cos(b_ang), math.sin(b_ang)
    ext = 1.5 * S
    c0 = feet + np.array([0.0, b_w * 0.5])
    branch = np.array([c0 - ext * np.array([dx, dy]), c0 + ext * np.array([dx, dy])])
    lab_branch = cv.label(bark, "branch")
    cv.stroke(branch, cv.label(shade(bark, 0.6), "branch"), b_w + ow)
    cv.stroke(branch, lab_branch, b_w)
    cv.stroke(branch - np.array([0, b_w * 0.2]), cv.label(shade(bark, 1.2), "branch"), b_w * 0.25)
    for _ in range(0 if plain else p.integers(0, 4)):  # a few leaves on the branch, away from the bird
        t = p.uniform(-1, 1) * S * 0.5
        if abs(t) < unit * 0.7:
            continue
        base = c0 + t * np.array([dx, dy])
        ang = p.uniform(-2.6, -0.5)
        leaf = ellipse_points(0, 0, 0.09 * S, 0.03 * S, 24)
        leaf = rotate(leaf, ang) + base + 0.09 * S * np.array([math.cos(ang), math.sin(ang)])
        cv.outlined(leaf, cv.label(shade(_FOLIAGE[p.integers(len(_FOLIAGE))], 1.1), "branch"),
                    cv.label(shade(_FOLIAGE[0], 0.6), "branch"), ow * 0.7)

    # --- shapes in the canonical frame
    body = ellipse_points(0, 0, body_rx, body_ry, 64, body_rot)
    head = ellipse_points(*head_c, head_r, head_r, 48)
    tail = rotate(np.array([[-0.28, 0.09], [-0.74, 0.05], [-0.84, -0.05], [-0.78, -0.15], [-0.3, -0.08]]),
                  tail_rot, about=(-0.3, 0.0))
    belly = np.concatenate([
        ellipse_points(0, 0, body_rx, body_ry, 40, body_rot, -2.75, 0.9),
        rotate(bezier((body_rx * math.cos(0.9), body_ry * math.sin(0.9)), (-0.02, -0.1),
                      (body_rx * math.cos(-2.75), body_ry * math.sin(-2.75)), 16), body_rot),
    ])
    crown_a0, crown_a1 = 0.62, 2.85
    crown = np.concatenate([
        ellipse_points(*head_c, head_r, head_r, 28, 0.0, crown_a0, crown_a1),
        bezier(head_c + head_r * np.array([math.cos(crown_a1), math.sin(crown_a1)]),
               head_c + np.array([0.0, 0.42 * head_r]),
               head_c + head_r * np.array([math.cos(crown_a0), math.sin(crown_a0)]), 12),
    ])
    throat_a0, throat_a1 = -2.0, -0.05
    throat = np.concatenate([
        ellipse_points(*head_c, head_r, head_r, 24, 0.0, throat_a0, throat_a1),
        bezier(head_c + head_r * np.array([math.cos(throat_a1), math.sin(throat_a1)]),
               head_c + np.array([0.05, -0.3]) * head_r,
               head_c + head_r * np.array([math.cos(throat_a0), math.sin(throat_a0)]), 12),
    ])
    # beak: base on the head circle, tip ahead; long beaks droop a little
    bd = beak_dir
    half = 0.42 if a["beak_length"] == "short" else 0.32
    up = head_c + head_r * 0.97 * np.array([math.cos(bd + half), math.sin(bd + half)])
    lo_ = head_c + head_r * 0.97 * np.array([math.cos(bd - half), math.sin(bd - half)])
    tip = head_c + (head_r + beak_len) * np.array([math.cos(bd), math.sin(bd)])
    mid = (up + lo_) / 2
    axis = (tip - mid) / np.linalg.norm(tip - mid)
    nrm = np.array([-axis[1], axis[0]])
    beak = np.concatenate([
        bezier(up, mid + axis * beak_len * 0.55 + nrm * head_r * 0.16, tip, 12),
        bezier(tip, mid + axis * beak_len * 0.5 - nrm * head_r * 0.1, lo_, 12),
    ])
    shoulder = rotate(np.array([[0.17, 0.07]]), body_rot)[0]
    wtip = np.array([-0.64, 0.0 + 0.15 * tail_rot])
    w_up, w_lo, wu = _wing_outline(shoulder, wtip, 0.15 if not small else 0.16, 0.05, 40)
    wing_poly = np.concatenate([w_up, w_lo[::-1]])
    eye_c = head_c + head_r * np.array([0.42, 0.1])
    eye_r = head_r * (0.2 if small else 0.18)
    legs = [np.array([[x, -body_ry * 0.8], [x + 0.02, perch_y]]) for x in (0.02, 0.14)]

    # --- draw, back to front
    leg_lab = cv.label(mix((70, 62, 60), bark, 0.2), "legs")
    for leg in legs:
        cv.stroke(place(leg), leg_lab, max(SUPERSAMPLE, 0.012 * S))
        f = place(np.array([leg[1] + (-0.05, 0), leg[1] + (0.06, 0)]))
        cv.stroke(f, leg_lab, max(SUPERSAMPLE, 0.01 * S))
    for poly in (tail, body, head):  # one silhouette outline, no seams between tail, body and head
        cv.stroke(place(poly), outline, 2 * ow, closed=True)
    cv.polygon(place(tail), cv.label(cols["tail"], "tail"))
    cv.polygon(place(body), cv.label(cols["back"], "back"))
    cv.polygon(place(belly), cv.label(cols["belly"], "belly"))
    cv.polygon(place(head), cv.label(cols["head"], "head"))
    cv.polygon(place(throat), cv.label(cols["throat"], "throat"))
    cv.polygon(place(crown), cv.label(cols["crown"], "crown"))
    cv.outlined(place(beak), cv.label(cols["beak"], "beak"), outline, ow)
    if size >= 128:  # the gape line: detail that would only muddy the beak colour at low resolution
        cv.stroke(place(np.array([mid, tip])), cv.label(shade(cols["beak"], 0.55)), ow * 0.5)
    cv.outlined(place(wing_poly), cv.label(cols["wings"], "wings"), outline, ow * 1.6)
    if "wing_bars" in cols:
        bar_lab = cv.label(cols["wing_bars"], "wing_bars")
        for u0, u1 in ((0.18, 0.31), (0.4, 0.53)):  # slanted bands across the folded wing
            up_sel = (wu >= u0 + 0.04) & (wu <= u1 + 0.04)
            lo_sel = (wu >= u0 - 0.04) & (wu <= u1 - 0.04)
            cv.polygon(place(np.concatenate([w_up[up_sel], w_lo[lo_sel][::-1]])), bar_lab)
    if size >= 128:  # primaries: lines towards the wing tip, only where they are more than a smudge
        feather = cv.label(shade(cols["wings"], 0.55) if sum(cols["wings"]) > 150 else (90, 90, 95))
        for k in (-0.45, 0.0, 0.45):
            i0, i1 = int(len(wu) * 0.62), int(len(wu) * 0.93)
            line = (w_up[i0:i1] + w_lo[i0:i1]) / 2 + k * (w_up[i0:i1] - w_lo[i0:i1]) / 2 * (1 - wu[i0:i1, None])
            cv.stroke(place(line), feather, ow * 0.55)
    e = place(eye_c[None])[0]
    cv.disc(*e, eye_r * unit + ow * 0.5, outline)
    cv.disc(*e, eye_r * unit, cv.label((20, 18, 22), "eye"))
    hl = place((eye_c + eye_r * np.array([0.3, 0.35]))[None])[0]
    cv.disc(*hl, eye_r * unit * 0.35, cv.label((250, 250, 250), "eye"))

    # --- light from above: brighter top of the bird, darker underside
    ys = place(np.array([[0, 0.45], [0, perch_y]]))[:, 1]
    top, bottom = min(ys), max(ys)
    rows = np.clip((np.arange(S) - top) / max(1.0, bottom - top), 0, 1)
    shading = 1.06 - 0.16 * rows

    img = cv.compose(_plain_background(bg_rng, size) if plain else _background(bg_rng, size), shading)
    if not with_masks:
        return img
    masks = cv.masks({"bird": ["crown", "belly", "wings", "wing_bars", "beak", "back", "head", "throat",
                                    "tail", "eye", "legs", "_unnamed"]})
    for part in PARTS:
        masks.setdefault(part, np.zeros((size, size), dtype=bool))
    return img, {k: masks[k] for k in PARTS}
