"""Caption grammar: 10 true captions per image, 2 to 4 mentioned attributes, TTS-friendly text, many patterns.

The checks below read the text with their own small vocabulary (not the grammar's tables): every colour
word must belong to a part that the caption mentions with exactly that colour, and every size / length /
count / shape word must be a mentioned value.
"""
import re

import pytest

from s2i_lib.data import toy_birds, toy_flowers
from s2i_lib.data.captions import Caption, make_captions
from s2i_lib.data.toy_common import COLORS

BIRD_PARTS = {"crown": "crown_color", "cap": "crown_color", "belly": "belly_color", "breast": "belly_color",
              "underside": "belly_color", "chest": "belly_color", "wings": "wing_color", "wing": "wing_color",
              "back": "wing_color", "wingbars": "wing_bars", "bars": "wing_bars", "beak": "beak_color",
              "bill": "beak_color"}
FLOWER_PARTS = {"petals": "petal_color", "center": "center_color", "centers": "center_color",
                "middle": "center_color", "middles": "center_color", "disk": "center_color",
                "disks": "center_color"}
# Words that end a noun phrase: a colour is said of the part named before it ("its belly is yellow").
BOUNDARY = {"and", "with", "whose", ",", "as", "that", "its", "the", "a", "an", "without", "no", "surround",
            "on", "has", "have", "is", "are", "each"}
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
BEAK_WORDS = {"short": "short", "stubby": "short", "long": "long"}
SHAPE_WORDS = {"round": "round", "rounded": "round", "pointed": "pointed", "pointy": "pointed",
               "long": "long", "elongated": "long"}
PETAL_NUMBERS = {"five", "six", "eight", "twelve"}
BLOOM_NUMBERS = {"one": "one", "single": "one", "two": "two", "three": "three"}
OPENING_WORDS = {"so", "okay", "well", "um", "uh", "hmm", "right"}   # the first words of the fillers


def tokens(text: str) -> list[str]:
    return text.replace("wing bars", "wingbars").replace(",", " , ").split()


def part_of_colour(toks: list[str], i: int, parts: dict[str, str]) -> str | None:
    """The attribute of the part that the colour word at position i describes."""
    for t in toks[i + 1:i + 4]:  # "a bright yellow belly", "pink pointed petals", "yellow central disk"
        if t in parts:
            return parts[t]
        if t in BOUNDARY:
            break
    for t in reversed(toks[:i]):  # "its belly is yellow"
        if t in parts:
            return parts[t]
    return None


def check_caption(cap: Caption, attributes: dict[str, str], dataset: str) -> None:
    text, mentions = cap.text, cap.mentions
    assert re.fullmatch(r"[a-z][a-z ,']*[a-z]", text), text
    assert "  " not in text and " ," not in text and not re.search(r"\d", text)
    assert 2 <= len(mentions) <= 4, (text, mentions)
    assert all(attributes[k] == v for k, v in mentions.items()), (text, mentions)
    toks = tokens(text)
    parts = BIRD_PARTS if dataset == "toybirds" else FLOWER_PARTS

    # colours: every colour word is a mentioned part's colour, and every mentioned colour is said
    said_colours = {}
    for i, t in enumerate(toks):
        if t in COLORS:
            attr = part_of_colour(toks, i, parts)
            assert attr is not None and mentions.get(attr) == t, (text, t, attr, mentions)
            said_colours[attr] = t
    for attr, value in mentions.items():
        if attr.endswith("_color") or (attr == "wing_bars" and value != "none"):
            assert said_colours.get(attr) == value, (text, attr, value)

    def words(table: dict[str, str]) -> set[str]:
        return {table[t] for t in toks if t in table}

    sizes = words(SIZE_WORDS) if dataset == "toybirds" else {SIZE_WORDS[t] for t in toks if t in SIZE_WORDS}
    assert sizes == ({mentions["size"]} if "size" in mentions else set()), (text, mentions)
    if dataset == "toybirds":
        assert words(BEAK_WORDS) == ({mentions["beak_length"]} if "beak_length" in mentions else set()), text
        says_no_bars = any(t in ("no", "without") and {"bars", "wingbars"} & set(toks[j + 1:j + 3])
                           for j, t in enumerate(toks))
        assert says_no_bars == (mentions.get("wing_bars") == "none"), text
        if "wing_bars" not in mentions:
            assert not {"bars", "wingbars"} & set(toks), text
    else:
        assert words(SHAPE_WORDS) == ({mentions["petal_shape"]} if "petal_shape" in mentions else set()), text
        counts = [t for t in toks if t in PETAL_NUMBERS]
        assert counts == ([mentions["petal_count"]] if "petal_count" in mentions else []), text
        for j, t in enumerate(toks):
            if t in PETAL_NUMBERS:
                assert "petals" in toks[j + 1:j + 6], text
        blooms = [BLOOM_NUMBERS[t] for t in toks if t in BLOOM_NUMBERS]
        assert blooms == ([mentions["bloom_count"]] if "bloom_count" in mentions else []), text
        for j, t in enumerate(toks):
            if t in BLOOM_NUMBERS:
                assert {"flower", "flowers", "bloom", "blooms"} & set(toks[j + 1:j + 3]), text


def skeleton(text: str) -> str:
    """The sentence frame: the first words, with attribute words, part names and articles blanked out."""
    vocab = set(COLORS) | set(SIZE_WORDS) | set(BEAK_WORDS) | set(SHAPE_WORDS) | PETAL_NUMBERS | \
        set(BLOOM_NUMBERS) | set(BIRD_PARTS) | set(FLOWER_PARTS) | \
        {"bright", "dark", "deep", "pale", "light", "jet", "pure", "a", "an", "no", "plain", "thin"}
    toks = [("X" if t in vocab else t) for t in tokens(text)]
    squeezed = [t for k, t in enumerate(toks) if t != "X" or k == 0 or toks[k - 1] != "X"]
    return " ".join(squeezed[:4])


@pytest.mark.parametrize("dataset,module,min_patterns", [("toybirds", toy_birds, 15),
                                                         ("toyflowers", toy_flowers, 10)])
def test_captions_are_true_and_varied(dataset, module, min_patterns):
    frames, mention_counts, all_texts = set(), set(), []
    for cls in module.class_table()[::4]:
        for index in range(3):
            caps = make_captions(dataset, cls.attributes, seed=0, class_id=cls.id, index=index)
            assert len(caps) == 10
            assert len({c.text for c in caps}) >= 8
            for cap in caps:
                check_caption(cap, cls.attributes, dataset)
                frames.add(skeleton(cap.text))
                mention_counts.add(len(cap.mentions))
                all_texts.append(cap.text)
    assert mention_counts == {2, 3, 4}
    assert len(frames) >= min_patterns, sorted(frames)
    for attr in module.ATTRIBUTES:  # every attribute gets said somewhere
        assert any(attr in c.mentions for cls in module.class_table()[:20]
                   for c in make_captions(dataset, cls.attributes, 0, cls.id, 0)), attr


def test_checker_rejects_false_captions():
    attrs = toy_birds.class_table()[0].attributes
    wrong_colour = next(c for c in COLORS if c != attrs["belly_color"])
    bad = [Caption(f"this bird has a {wrong_colour} belly and a {attrs['crown_color']} crown",
                   {"belly_color": attrs["belly_color"], "crown_color": attrs["crown_color"]}),
           Caption(f"this bird has a {attrs['belly_color']} belly", {"belly_color": attrs["belly_color"]}),
           Caption(f"a {attrs['size']} bird with a {attrs['belly_color']} belly and a {attrs['crown_color']} crown",
                   {"belly_color": attrs["belly_color"], "crown_color": attrs["crown_color"]})]
    for cap in bad:
        with pytest.raises(AssertionError):
            check_caption(cap, attrs, "toybirds")


def test_deterministic_and_argument_checked():
    cls = toy_flowers.class_table()[7]
    a = make_captions("toyflowers", cls.attributes, seed=1, class_id=cls.id, index=2)
    assert a == make_captions("toyflowers", cls.attributes, seed=1, class_id=cls.id, index=2)
    assert [c.text for c in a] != [c.text for c in make_captions("toyflowers", cls.attributes, 1, cls.id, 3)]
    assert [c.text for c in a] != [c.text for c in make_captions("toyflowers", cls.attributes, 2, cls.id, 2)]
    assert len(make_captions("toyflowers", cls.attributes, 1, cls.id, 2, n=25)) == 25
    with pytest.raises(ValueError):
        make_captions("cub", cls.attributes, 1, cls.id, 2)


@pytest.mark.parametrize("dataset,module", [("toybirds", toy_birds), ("toyflowers", toy_flowers)])
def test_rephrase_says_the_same_attributes_in_frames_training_never_uses(dataset, module):
    from s2i_lib.data.captions import rephrase
    train_frames, held_frames, fillers = set(), set(), 0
    for cls in module.class_table()[::3]:
        for index in range(3):
            for cap in make_captions(dataset, cls.attributes, seed=0, class_id=cls.id, index=index):
                train_frames.add(skeleton(cap.text))
                fillers += cap.text.split()[0] in OPENING_WORDS
                text = rephrase(dataset, cap.mentions, seed=0, key=cap.text)
                assert text == rephrase(dataset, cap.mentions, seed=0, key=cap.text)   # deterministic
                check_caption(Caption(text, cap.mentions), cls.attributes, dataset)    # true, says them all
                held_frames.add(skeleton(text))
    assert fillers > 10                                     # training captions are said as people speak
    assert len(held_frames) >= 4
    # a held-out skeleton may meet a training one only where the aside opens both ("um ...")
    assert not {f for f in held_frames & train_frames if f.split()[0] not in OPENING_WORDS}, \
        sorted(held_frames & train_frames)
    with pytest.raises(ValueError):
        rephrase("cub", {}, 0, "x")


@pytest.mark.parametrize("dataset,module", [("toybirds", toy_birds), ("toyflowers", toy_flowers)])
def test_the_colour_reader_finds_every_mentioned_colour_hedged_or_not(dataset, module):
    """The demo's and the evaluation's one colour reader (``colour_mentions``) reads back the colour of
    every part a caption (or its held-out rephrasing) gives one, hedges included ("kind of yellow")."""
    from s2i_lib.data.captions import colour_mentions, rephrase
    hedged = 0
    for cls in module.class_table()[::2]:
        for cap in make_captions(dataset, cls.attributes, seed=0, class_id=cls.id, index=0):
            want = {a: v for a, v in cap.mentions.items()
                    if a.endswith("_color") or (a == "wing_bars" and v != "none")}
            for text in (cap.text, rephrase(dataset, cap.mentions, seed=0, key=cap.text)):
                assert colour_mentions(text, dataset) == want, text
                hedged += any(h in text for h in ("kind of", "sort of", "mostly"))
    assert hedged > 10


def test_swap_colour_changes_only_the_named_part_and_drops_its_shade():
    from s2i_lib.data.captions import swap_colour
    mentions = {"belly_color": "black", "wing_color": "white", "beak_length": "long"}
    text = "this bird has a jet black breast and a long beak and its wings are white"
    assert swap_colour(text, mentions, "belly_color", "red") == \
        "this bird has a red breast and a long beak and its wings are white"
    assert swap_colour(text, mentions, "wing_color", "brown") == \
        "this bird has a jet black breast and a long beak and its wings are brown"


def test_swap_colour_refuses_what_the_text_cannot_say():
    from s2i_lib.data.captions import swap_colour
    same = {"belly_color": "black", "wing_color": "black"}
    assert swap_colour("a black bird with black wings", same, "wing_color", "red") is None  # which black?
    assert swap_colour("a bird with white wings", {"wing_color": "white"}, "belly_color", "red") is None
    assert swap_colour("a bird with white wings", {"wing_color": "white"}, "wing_color", "white") is None


def test_swap_colour_works_on_every_generated_caption_that_allows_it():
    from s2i_lib.data.captions import make_captions, swap_colour
    from s2i_lib.data.toy_birds import class_table
    swapped = 0
    for cls in class_table()[:30]:
        for cap in make_captions("toybirds", cls.attributes, seed=0, class_id=cls.id, index=0):
            for attr, old in cap.mentions.items():
                if not attr.endswith("_color"):
                    continue
                new = "green" if old != "green" else "blue"
                out = swap_colour(cap.text, cap.mentions, attr, new)
                if out is not None:
                    swapped += 1
                    assert re.search(rf"\b{new}\b", out) and out != cap.text
                    assert len(out.split()) <= len(cap.text.split())
    assert swapped > 100
