"""Caption grammar for ToyBirds and ToyFlowers, in the style of the CUB / Oxford-102 captions of Reed et al.

Every caption names 2 to 4 attributes of its image and says nothing else about it; `Caption.mentions`
records which attributes (attribute -> value), so later steps can check what a generated image should show.
Captions are lower-case plain ASCII without digits (numbers are words) and end in a word, because they are
spoken by a TTS voice.

A caption is built in two steps: choose the attributes to mention, then a sentence frame (~20 per dataset)
into which the attributes are put as noun phrases ("a bright yellow belly") or clauses ("its wings are
brown"), with synonyms for the parts that are true of the rendered part (the belly patch covers the breast;
the wing colour also covers the back). As people speak, a colour is sometimes hedged ("kind of yellow")
and a sentence sometimes opens with a filler ("um", "okay so") or ends with a hedge ("i think").

A second set of frames ("picture a bird with ...", "there's this bird, and it's got ...") is never
used by ``make_captions``: ``rephrase`` says a caption's attributes in one of them, for the listening
tests' held-out phrasings.

    >>> caps = make_captions("toybirds", cls.attributes, seed=0, class_id=cls.id, index=0)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from . import toy_birds, toy_flowers
from .toy_common import make_rng

__all__ = ["Caption", "make_captions", "rephrase", "DATASETS", "family", "word_kind", "ColourWord",
           "colour_words", "colour_mentions", "colour_attributes", "part_name", "swap_colours", "swap_colour"]

DATASETS = ("toybirds", "toybirds_plain", "toyflowers")
# A variant draws the species of its family in another scene: same classes, same captions.
_FAMILY = {"toybirds_plain": "toybirds"}
_TAGS = {"toybirds": 0xCA7B, "toyflowers": 0xCA7F}


def family(dataset: str) -> str:
    """The toy dataset whose species, attributes and captions ``dataset`` shares (itself if none)."""
    return _FAMILY.get(dataset, dataset)


@dataclass(frozen=True)
class Caption:
    text: str
    mentions: dict[str, str]  # attribute -> value, every one of them true of the image

    def __hash__(self) -> int:
        return hash(self.text)


# Modifiers that shade a colour without changing its name.
_COLOR_MODIFIERS = {
    "red": ["bright", "dark", "deep"],
    "orange": ["bright", "dark", "pale"],
    "yellow": ["bright", "pale", "light"],
    "green": ["bright", "dark", "light"],
    "blue": ["bright", "dark", "light", "pale"],
    "purple": ["dark", "deep", "light"],
    "pink": ["bright", "pale", "light"],
    "brown": ["dark", "light"],
    "black": ["jet", "deep"],
    "white": ["bright", "pure"],
    "grey": ["dark", "light", "pale"],
}


# What people add when they describe a picture aloud: hedges before a colour, fillers before a
# sentence, hedges after it. None of them is an attribute word (none is a size, colour or count).
_HEDGES = ["kind of", "sort of", "mostly"]
_OPENERS = ["so", "okay", "well", "um", "uh", "hmm", "right", "okay so", "well um"]
_CLOSERS = ["i think", "i guess", "i believe", "more or less"]


class _Say:
    """Random choices for one caption."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def color(self, name: str) -> str:
        r = self.rng.random()
        if r < 0.22:
            return f"{self.pick(_COLOR_MODIFIERS[name])} {name}"
        if r < 0.28:
            return f"{self.pick(_HEDGES)} {name}"
        return name

    def aside(self, text: str) -> str:
        """``text`` as said aloud: now and then an opening filler or a closing hedge."""
        if self.chance(0.12):
            text = f"{self.pick(_OPENERS)} {text}"
        if self.chance(0.08):
            text = f"{text}, {self.pick(_CLOSERS)}"
        return text

    def join(self, items: list[str], word: str = "", noun_phrases: bool = False) -> str:
        """'a, b and c'; `word` goes before every item after the first ('a, whose b and whose c')."""
        w = f"{word} " if word else ""
        if len(items) == 1:
            return items[0]
        if noun_phrases and len(items) == 2 and self.chance(0.15):
            return f"{items[0]} as well as {items[1]}"
        return ", ".join([items[0]] + [w + x for x in items[1:-1]]) + " and " + w + items[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _a(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


# ---------------------------------------------------------------------------------------------------------
# birds
#
# A unit is a part of the bird with the attributes said about it. It can be said as a noun phrase
# ("a short black beak") or as a clause: (subject noun, verb, complement), e.g. ("beak", "is", "short and
# black"), so that frames can add "its", "the" or "whose" in front.

_BIRD_SIZE = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
_BEAK_LEN = {"short": ["short", "stubby"], "long": ["long"]}


def _bird_unit_np(say: _Say, unit: dict[str, str]) -> str:
    keys = set(unit)
    if keys == {"crown_color"}:
        return _a(f"{say.color(unit['crown_color'])} {say.pick(['crown', 'crown', 'cap'])}")
    if keys == {"belly_color"}:
        return _a(f"{say.color(unit['belly_color'])} {say.pick(['belly', 'breast', 'underside', 'chest'])}")
    if keys == {"wing_color"}:
        c = say.color(unit["wing_color"])
        return say.pick([f"{c} wings", f"{c} wings", f"{c} wing feathers", _a(f"{c} back")])
    if keys == {"wing_bars"}:
        if unit["wing_bars"] == "none":
            return say.pick(["no wing bars", "no bars on its wings"])
        c = say.color(unit["wing_bars"])
        return say.pick([f"{c} wing bars", f"{c} wingbars", f"{c} bars on its wings"])
    if keys == {"wing_color", "wing_bars"}:
        c = say.color(unit["wing_color"])
        if unit["wing_bars"] == "none":
            return say.pick([f"{c} wings without wing bars", f"plain {c} wings with no bars"])
        b = say.color(unit["wing_bars"])
        return say.pick([f"{c} wings with {b} wing bars", f"{c} wings with {b} bars"])
    beak = say.pick(["beak", "bill"])
    if keys == {"beak_color"}:
        return _a(f"{say.color(unit['beak_color'])} {beak}")
    if keys == {"beak_length"}:
        return _a(f"{say.pick(_BEAK_LEN[unit['beak_length']])} {beak}")
    if keys == {"beak_length", "beak_color"}:
        return _a(f"{say.pick(_BEAK_LEN[unit['beak_length']])} {say.color(unit['beak_color'])} {beak}")
    raise ValueError(f"no phrase for {sorted(keys)}")


def _bird_unit_clause(say: _Say, unit: dict[str, str]) -> tuple[str, str, str]:
    keys = set(unit)
    if keys == {"crown_color"}:
        return say.pick([("crown", "is"), ("cap", "is"), ("crown", "is")]) + (say.color(unit["crown_color"]),)
    if keys == {"belly_color"}:
        return (say.pick(["belly", "breast", "underside", "chest"]), "is", say.color(unit["belly_color"]))
    if keys == {"wing_color"}:
        return say.pick([("wings", "are"), ("wings", "are"), ("back", "is")]) + (say.color(unit["wing_color"]),)
    if keys == {"wing_bars"}:
        if unit["wing_bars"] == "none":
            return ("wings", "have", "no bars")
        return say.pick([("wings", "have", f"{say.color(unit['wing_bars'])} bars"),
                         ("wing bars", "are", say.color(unit["wing_bars"]))])
    if keys == {"wing_color", "wing_bars"}:
        c = say.color(unit["wing_color"])
        if unit["wing_bars"] == "none":
            return ("wings", "are", f"{c} without bars")
        return ("wings", "are", f"{c} with {say.color(unit['wing_bars'])} bars")
    beak = say.pick(["beak", "bill"])
    if keys == {"beak_color"}:
        return (beak, "is", say.color(unit["beak_color"]))
    if keys == {"beak_length"}:
        return (beak, "is", say.pick(_BEAK_LEN[unit["beak_length"]]))
    if keys == {"beak_length", "beak_color"}:
        return (beak, "is", f"{say.color(unit['beak_color'])} and {unit['beak_length']}")
    raise ValueError(f"no clause for {sorted(keys)}")


def _bird_units(say: _Say, mention: dict[str, str]) -> list[dict[str, str]]:
    """Group the mentioned attributes (other than size) into parts, in a random order."""
    units: list[dict[str, str]] = []
    rest = dict(mention)
    rest.pop("size", None)
    if "beak_color" in rest and "beak_length" in rest:  # "a long grey beak", never two beaks
        units.append({"beak_length": rest.pop("beak_length"), "beak_color": rest.pop("beak_color")})
    if "wing_color" in rest and "wing_bars" in rest and say.chance(0.65):
        units.append({"wing_color": rest.pop("wing_color"), "wing_bars": rest.pop("wing_bars")})
    units += [{k: v} for k, v in rest.items()]
    order = say.rng.permutation(len(units))
    return [units[i] for i in order]


def _bird_sentence(say: _Say, mention: dict[str, str], held_out: bool = False) -> str:
    """A sentence saying ``mention``: in a training frame, or (``held_out``) in a frame that
    training never uses (``rephrase``)."""
    units = _bird_units(say, mention)
    size = say.pick(_BIRD_SIZE[mention["size"]]) if "size" in mention else None
    nps = lambda us: say.join([_bird_unit_np(say, u) for u in us], noun_phrases=True)  # noqa: E731
    clauses = [_bird_unit_clause(say, u) for u in units]

    def its(c):
        return f"its {c[0]} {c[1]} {c[2]}"

    def the(c):
        return f"the {c[0]} {c[1]} {c[2]}"

    frames = []
    if not units:  # only possible if size were the only attribute; make_captions never asks for that
        raise ValueError("a caption needs a part")
    if size is None:
        frames += [
            lambda: f"this bird has {nps(units)}",
            lambda: f"the bird has {nps(units)}",
            lambda: f"a bird with {nps(units)}",
            lambda: f"this is a bird with {nps(units)}",
            lambda: f"this particular bird has {nps(units)}",
            lambda: f"this bird features {nps(units)}",
            lambda: f"a bird that has {nps(units)}",
            lambda: f"here is a bird with {nps(units)}",
            lambda: f"this picture shows a bird with {nps(units)}",
            lambda: f"the bird in this picture has {nps(units)}",
            lambda: "a bird whose " + say.join([" ".join(c) for c in clauses], "whose"),
            lambda: "this bird's " + say.join([" ".join(clauses[0])] + [its(c) for c in clauses[1:]]),
            lambda: say.join([the(c) for c in clauses]),
            lambda: f"i see a bird with {nps(units)}",
            lambda: f"there is a bird with {nps(units)}",
            lambda: f"it is a bird with {nps(units)}",
            lambda: f"this one has {nps(units)}",
            lambda: say.join([the(c) for c in clauses]) + " on this bird",
        ]
        if len(units) >= 2:
            frames += [
                lambda: f"this bird has {nps(units[:-1])} and {its(clauses[-1])}",
                lambda: f"a bird with {nps(units[:-1])}, whose {' '.join(clauses[-1])}",
            ]
        held = [
            lambda: f"you can see {nps(units)} on this bird",
            lambda: f"picture a bird with {nps(units)}",
            lambda: f"what i see is a bird with {nps(units)}",
            lambda: f"there's this bird, and it's got {nps(units)}",
            lambda: f"{nps(units)}, that is what this bird has",
            lambda: "look at this bird, " + say.join([its(c) for c in clauses]),
        ]
    else:
        frames += [
            lambda: f"a {size} bird with {nps(units)}",
            lambda: f"this is a {size} bird with {nps(units)}",
            lambda: f"this {size} bird has {nps(units)}",
            lambda: f"the bird is {size} and has {nps(units)}",
            lambda: f"a {size} bird that has {nps(units)}",
            lambda: f"this bird is {size} with {nps(units)}",
            lambda: f"this {size} bird features {nps(units)}",
            lambda: f"here is a {size} bird with {nps(units)}",
            lambda: f"this picture shows a {size} bird with {nps(units)}",
            lambda: f"this bird has {nps(units)} and is {size}",
            lambda: f"a {size} bird whose " + say.join([" ".join(c) for c in clauses], "whose"),
            lambda: f"this bird is {size} and " + say.join([its(c) for c in clauses]),
            lambda: say.join([f"the bird is {size}"] + [the(c) for c in clauses]),
            lambda: f"i see a {size} bird with {nps(units)}",
            lambda: f"there is a {size} bird with {nps(units)}",
            lambda: f"it is a {size} bird with {nps(units)}",
            lambda: f"this one is {size} and has {nps(units)}",
        ]
        if len(units) >= 2:
            frames.append(lambda: f"this {size} bird has {nps(units[:-1])} and {its(clauses[-1])}")
        held = [
            lambda: f"imagine a {size} bird with {nps(units)}",
            lambda: f"you can see a {size} bird with {nps(units)}",
            lambda: f"there's this {size} bird, and it's got {nps(units)}",
            lambda: f"{nps(units)}, on a {size} bird",
            lambda: f"look at this {size} bird, " + say.join([its(c) for c in clauses]),
            lambda: f"what i see is a {size} bird with {nps(units)}",
        ]
    return say.pick(held if held_out else frames)()


# ---------------------------------------------------------------------------------------------------------
# flowers

_FLOWER_SIZE = {"small": ["small", "little"], "large": ["large", "big"]}
_SHAPE = {"round": ["round", "rounded"], "pointed": ["pointed", "pointy"], "long": ["long", "long thin",
                                                                                    "elongated"]}
_SHAPE_PRED = {"round": ["round", "rounded"], "pointed": ["pointed"], "long": ["long", "elongated"]}


def _petals_np(say: _Say, u: dict[str, str]) -> str:
    n = u.get("petal_count")
    c = say.color(u["petal_color"]) if "petal_color" in u else None
    s = say.pick(_SHAPE[u["petal_shape"]]) if "petal_shape" in u else None
    if (c or s) and say.chance(0.3):  # "petals that are pink and pointed"
        pred = " and ".join(x for x in (c, say.pick(_SHAPE_PRED[u["petal_shape"]]) if s else None) if x)
        return f"{n + ' ' if n else ''}petals that are {pred}"
    words = [w for w in ((n, s, c) if say.chance(0.3) else (n, c, s)) if w]
    return " ".join(words + ["petals"])


def _petals_clause(say: _Say, u: dict[str, str]) -> tuple[str, str, str]:
    preds = []
    if "petal_color" in u:
        preds.append(say.color(u["petal_color"]))
    if "petal_shape" in u:
        preds.append(say.pick(_SHAPE_PRED[u["petal_shape"]]))
    subject = f"{u['petal_count']} petals" if "petal_count" in u else "petals"
    if not preds:  # only the count: "its five petals are" has no predicate, say it with "has"
        return ("", "", "")
    return (subject, "are", " and ".join(preds))


def _center_np(say: _Say, color: str, plural: bool) -> str:
    noun = say.pick(["center", "center", "middle", "central disk"])
    c = say.color(color)
    if plural:
        return f"{c} {noun}s"
    return _a(f"{c} {noun}")


def _flower_sentence(say: _Say, mention: dict[str, str], held_out: bool = False) -> str:
    """As ``_bird_sentence``, for a flower."""
    petals = {k: v for k, v in mention.items() if k.startswith("petal_")}
    center = mention.get("center_color")
    size = say.pick(_FLOWER_SIZE[mention["size"]]) if "size" in mention else None
    blooms = mention.get("bloom_count")
    plural = blooms in ("two", "three")

    def nps(pl: bool = False) -> str:
        items = []
        if petals:
            items.append(_petals_np(say, petals))
        if center:
            items.append(_center_np(say, center, pl))
        if say.chance(0.5):
            items.reverse()
        return say.join(items, noun_phrases=True)

    sz = f"{size} " if size else ""
    frames = []
    if blooms is None:
        frames += [
            lambda: f"this {sz}flower has {nps()}",
            lambda: f"the {sz}flower has {nps()}",
            lambda: f"{_a(sz + 'flower')} with {nps()}",
            lambda: f"this is {_a(sz + 'flower')} with {nps()}",
            lambda: f"{_a(sz + 'flower')} that has {nps()}",
            lambda: f"this {sz}{say.pick(['bloom', 'blossom'])} has {nps()}",
        ]
        if size:
            frames += [
                lambda: f"the flower is {size} and has {nps()}",
                lambda: f"this flower is {size} with {nps()}",
            ]
        clause = _petals_clause(say, petals) if petals else None
        if clause and clause[0]:
            whose = [" ".join(clause)] + ([f"center is {say.color(center)}"] if center else [])
            frames += [
                lambda: f"{_a(sz + 'flower')} whose " + say.join(whose, "whose"),
                lambda: f"the {clause[0]} of this {sz}flower {clause[1]} {clause[2]}"
                        + (f" and the center is {say.color(center)}" if center else ""),
            ]
            if center:
                frames.append(lambda: f"this {sz}flower has {_center_np(say, center, False)} and its "
                                      + " ".join(clause))
        if petals and center:
            frames.append(lambda: f"{_petals_np(say, petals)} surround {_center_np(say, center, False)}"
                                  + (f" on this {size} flower" if size else ""))
    else:
        if blooms == "one":
            subject = say.pick([f"a single {sz}flower", f"one {sz}flower", f"a single {sz}bloom"])
        else:
            subject = f"{blooms} {sz}{say.pick(['flowers', 'flowers', 'blooms'])}"
        frames += [
            lambda: f"{subject} with {nps(plural)}",
            lambda: f"this picture shows {subject} with {nps(plural)}",
            lambda: f"{subject} that {'have' if plural else 'has'} {nps(plural)}",
            lambda: f"there {'are' if plural else 'is'} {subject}, "
                    f"{'each ' if plural else ''}with {nps(False)}",
            lambda: f"here {'are' if plural else 'is'} {subject} with {nps(plural)}",
        ]
    if held_out:
        if blooms is None:
            frames = [
                lambda: f"you can see {nps()} on this {sz}flower",
                lambda: f"picture {_a(sz + 'flower')} with {nps()}",
                lambda: f"what i see is {_a(sz + 'flower')} with {nps()}",
                lambda: f"there's this {sz}flower, and it's got {nps()}",
            ]
        else:
            frames = [
                lambda: f"picture {subject} with {nps(plural)}",
                lambda: f"what i see is {subject} with {nps(plural)}",
                lambda: f"you can see {subject} with {nps(plural)}",
            ]
    return say.pick(frames)()


# ---------------------------------------------------------------------------------------------------------
# The words that say an attribute, by kind: what notebook 02 asks the speech encoder's attention about.
# Every other word of a caption (articles, verbs, "bird", "flower", colour shades) is "other".

_COLOUR_WORDS = frozenset(_COLOR_MODIFIERS)
ATTRIBUTE_WORDS: dict[str, dict[str, frozenset[str]]] = {
    "toybirds": {
        "colour": _COLOUR_WORDS,
        "part": frozenset({"crown", "cap", "belly", "breast", "underside", "chest", "wings", "wing", "feathers",
                           "back", "bars", "wingbars", "beak", "bill"}),
        "size or shape": frozenset(w for ws in (*_BIRD_SIZE.values(), *_BEAK_LEN.values()) for w in ws),
    },
    "toyflowers": {
        "colour": _COLOUR_WORDS,
        "part": frozenset({"petals", "center", "centers", "middle", "middles", "disk", "disks"}),
        "size or shape": frozenset(word for ws in (*_FLOWER_SIZE.values(), *_SHAPE.values()) for w in ws
                                   for word in w.split()),
        "count": frozenset({"one", "single", "two", "three", "five", "six", "eight", "twelve"}),
    },
}


def word_kind(word: str, dataset: str) -> str:
    """"colour", "part", "size or shape", "count" (flowers) or "other": what a word of a ``dataset``
    caption says. Every word of a real dataset's captions (CUB, Oxford) is "other": their
    vocabulary is open."""
    w = word.lower().strip(".,;:!?'\"")
    for kind, words in ATTRIBUTE_WORDS.get(family(dataset), {}).items():   # real datasets: no vocabulary
        if w in words:
            return kind
    return "other"


# ---------------------------------------------------------------------------------------------------------

_WEIGHTS = {
    "toybirds": {"crown_color": 1.0, "belly_color": 1.2, "wing_color": 1.2, "beak_color": 0.8,
                 "beak_length": 0.6, "size": 0.7, "wing_bars": 0.6},
    "toyflowers": {"petal_color": 1.3, "center_color": 1.0, "petal_count": 0.8, "petal_shape": 0.9,
                   "size": 0.6, "bloom_count": 0.5},
}
# Attributes that are only said together with a part (a caption about size alone plus bloom count alone has
# nothing to say about the flower itself).
_PART_ATTRIBUTES = {
    "toybirds": {"crown_color", "belly_color", "wing_color", "beak_color", "beak_length", "wing_bars"},
    "toyflowers": {"petal_color", "center_color", "petal_count", "petal_shape"},
}


def _choose_mentions(say: _Say, dataset: str, attributes: dict[str, str]) -> dict[str, str]:
    weights = _WEIGHTS[dataset]
    keys = [k for k in weights if k in attributes]
    k = int(say.rng.choice([2, 3, 4], p=[0.35, 0.4, 0.25]))
    while True:
        p = np.array([weights[a] for a in keys])
        chosen = say.rng.choice(len(keys), size=k, replace=False, p=p / p.sum())
        names = {keys[i] for i in chosen}
        if names & _PART_ATTRIBUTES[dataset]:
            return {a: attributes[a] for a in keys if a in names}


def make_captions(dataset: str, attributes: dict[str, str], seed: int, class_id: int, index: int,
                  n: int = 10) -> list[Caption]:
    """`n` captions (distinct where the grammar allows) for one image, deterministic in the arguments.

    `attributes` are the image's (= its class's) attributes, as in `ToyClass.attributes`.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    dataset = family(dataset)
    say = _Say(make_rng(seed, _TAGS[dataset], class_id, index))
    sentence = _bird_sentence if dataset == "toybirds" else _flower_sentence
    out: list[Caption] = []
    seen: set[str] = set()
    for _ in range(n):
        for _attempt in range(8):
            mention = _choose_mentions(say, dataset, attributes)
            text = " ".join(say.aside(sentence(say, mention)).split())
            if text not in seen:
                break
        seen.add(text)
        out.append(Caption(text=text, mentions=mention))
    return out


def rephrase(dataset: str, mentions: dict[str, str], seed: int, key: str) -> str:
    """``mentions`` (a caption's) said in a sentence frame that ``make_captions`` never uses: the
    listening tests' held-out phrasings. Deterministic in the arguments."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    dataset = family(dataset)
    say = _Say(make_rng(seed, _TAGS[dataset], 0x4E1D, zlib.crc32(key.encode())))
    sentence = _bird_sentence if dataset == "toybirds" else _flower_sentence
    return " ".join(say.aside(sentence(say, mentions, held_out=True)).split())


# ---------------------------------------------------------------------------------------------------------
# Colour words: the one reading of which colour a caption gives which part. The demo recolours a caption
# with it (``colour_mentions``, ``swap_colours``); the evaluation's colour swap and notebook 03's colour
# experiment change one colour word (``swap_colour``).

# Which nouns name which coloured part, including the synonyms the grammar uses ("cap" for the crown,
# "breast" for the belly, "bill" for the beak).
_PART_NOUNS = {
    "birds": {"crown": "crown_color", "cap": "crown_color",
              "belly": "belly_color", "breast": "belly_color", "underside": "belly_color",
              "chest": "belly_color", "wings": "wing_color", "back": "wing_color",
              "feathers": "wing_color", "bars": "wing_bars", "wingbars": "wing_bars",
              "beak": "beak_color", "bill": "beak_color"},
    "flowers": {"petals": "petal_color", "center": "center_color", "centers": "center_color",
                "middle": "center_color", "middles": "center_color", "disk": "center_color",
                "disks": "center_color"},
}
# Words that may stand between a colour and its noun: "red wing bars", "a blue central disk",
# "five pink long thin petals".
_BETWEEN = {"wing", "central", "round", "rounded", "pointed", "pointy", "long", "thin", "elongated"}
_VOCABULARY = {"toybirds": "birds", "toybirds_plain": "birds", "cub": "birds", "toyflowers": "flowers",
               "oxford": "flowers"}


def _vocabulary(dataset: str) -> str:
    if dataset not in _VOCABULARY:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(_VOCABULARY)}")
    return _VOCABULARY[dataset]


def colour_attributes(dataset: str) -> dict[str, list[str]]:
    """Colour attribute -> the colours the dataset uses for it (``wing_bars`` without "none")."""
    module = toy_birds if _vocabulary(dataset) == "birds" else toy_flowers
    return {a: [c for c in module.ATTRIBUTES[a] if c != "none"] for a in module.COLOR_PARTS}


def part_name(attribute: str) -> str:
    """"crown_color" -> "crown", "wing_color" -> "wings", "wing_bars" -> "wing bars" (for labels)."""
    parts = {**toy_birds.COLOR_PARTS, **toy_flowers.COLOR_PARTS}
    return parts.get(attribute, attribute.removesuffix("_color")).replace("_", " ")


@dataclass(frozen=True)
class ColourWord:
    """A colour word of a caption; ``caption[start:end]`` is its phrase (the shade word, if any, and
    the colour)."""
    colour: str                       # lower case, one of the grammar's colours
    start: int                        # where the phrase starts: the shade word if any, else the colour
    end: int                          # end of the colour word
    modifier: str | None              # its shade word ("pale" in "pale yellow"), one the grammar uses with it
    article: tuple[int, int] | None   # span of an "a"/"an" right before the phrase
    attribute: str | None = None      # the part it colours ("crown_color"), when the caption says which


def colour_words(caption: str, dataset: str | None = None) -> list[ColourWord]:
    """Every colour word of ``caption``, in order. With ``dataset`` (a toy dataset, "cub" or "oxford"),
    each also gets the part it colours where the caption says: "a red crown", "red wing bars", "its
    crown is red", "petals that are pink and pointed"."""
    nouns = _PART_NOUNS[_vocabulary(dataset)] if dataset is not None else {}
    modifiers = _COLOR_MODIFIERS
    words = [(m.group().lower(), m.start(), m.end()) for m in re.finditer(r"[A-Za-z]+", caption)]
    found = []
    for i, (w, start, end) in enumerate(words):
        if w not in modifiers:
            continue
        attribute = None
        if nouns:
            j = i + 1                        # "a red crown", "red wing bars", "pink pointed petals"
            while j < len(words) and words[j][0] in _BETWEEN and j - i <= 2:
                j += 1
            if j < len(words) and words[j][0] in nouns:
                attribute = nouns[words[j][0]]
            else:                            # "its crown is red", "petals that are pink and pointed"
                k = i - 1
                if k >= 0 and words[k][0] in modifiers[w]:
                    k -= 1
                for hedge in _HEDGES:            # "its belly is kind of yellow"
                    h = hedge.split()
                    if k + 1 >= len(h) and [x[0] for x in words[k + 1 - len(h):k + 1]] == h:
                        k -= len(h)
                        break
                if k >= 0 and words[k][0] in ("is", "are"):
                    attribute = next((nouns[words[m][0]] for m in range(k - 1, -1, -1)
                                      if words[m][0] in nouns), None)
        modifier = words[i - 1][0] if i > 0 and words[i - 1][0] in modifiers[w] else None
        p = i - 1 if modifier else i
        article = (words[p - 1][1], words[p - 1][2]) if p > 0 and words[p - 1][0] in ("a", "an") else None
        found.append(ColourWord(w, words[p][1], end, modifier, article, attribute))
    return found


def colour_mentions(caption: str, dataset: str = "toybirds") -> dict[str, str]:
    """The colour the caption gives each part: attribute -> colour, e.g. "a bird with a pale
    yellow cap" -> {"crown_color": "yellow"}."""
    out: dict[str, str] = {}
    for c in colour_words(caption, dataset):
        if c.attribute is not None:
            out.setdefault(c.attribute, c.colour)
    return out


def swap_colours(caption: str, changes: dict[str, str], dataset: str = "toybirds") -> str:
    """``caption`` with the colour words of the parts in ``changes`` (attribute -> colour, e.g.
    {"belly_color": "red"}) replaced; everything else is kept. A shading word the grammar never
    uses with the new colour is dropped ("pale yellow" -> "red", "bright yellow" -> "bright red")
    and "a"/"an" is fixed. Parts the caption does not colour are left alone (see
    ``colour_mentions``)."""
    allowed = colour_attributes(dataset)
    for attribute, colour in changes.items():
        if attribute not in allowed:
            raise ValueError(f"unknown colour part {attribute!r} for {dataset}; expected one of "
                             f"{', '.join(allowed)}")
        if colour not in allowed[attribute]:
            raise ValueError(f"{dataset} has no {part_name(attribute)} colour {colour!r}; "
                             f"expected one of {', '.join(allowed[attribute])}")
    out = caption
    for c in reversed(colour_words(caption, dataset)):    # right to left: spans stay valid
        if c.attribute not in changes:
            continue
        new = changes[c.attribute]
        phrase = f"{c.modifier} {new}" if c.modifier and c.modifier in _COLOR_MODIFIERS[new] else new
        out = out[:c.start] + phrase + out[c.end:]
        if c.article:
            a, b = c.article
            out = out[:a] + _article(phrase) + out[b:]
    return out


def swap_colour(text: str, mentions: dict[str, str], attribute: str, new_colour: str) -> str | None:
    """``text`` with the colour word of ``attribute`` (e.g. ``wing_color``) replaced by ``new_colour``,
    dropping its shade modifier ("jet black wings" -> "red wings"); the paper's colour experiment.

    None when the swap would be ambiguous: the attribute is not mentioned, or its colour word occurs
    more than once in the caption (another part has the same colour), so which one to change is not
    known from the text alone. Unlike ``swap_colours`` it needs no grammar of parts (``mentions``
    says the colour), so it also works on real captions (``{"colour": "red"}``)."""
    old = mentions.get(attribute)
    if old is None or old == "none" or old == new_colour:
        return None
    said = [c for c in colour_words(text) if c.colour == old]
    if len(said) != 1:
        return None
    return text[:said[0].start] + new_colour + text[said[0].end:]
