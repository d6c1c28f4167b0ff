"""The evaluation step's own logic: query groups, the colour-swap draw, the results table."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from s2i_lib.data.captions import make_captions
from s2i_lib.data.toy_birds import class_table
from s2i_lib.evaluation.report import results_table, to_markdown
from s2i_lib.evaluation.step import QueryGroup, colour_swaps, map_gallery, swap_voice


def test_one_query_per_image_is_each_images_own_and_seeded():
    pos = np.array([2, 0, 1, 0, 2, 1, 2])
    q = QueryGroup(np.zeros((7, 4)), pos, np.arange(7), ["v"] * 7)
    one = q.one_per_image(3, seed=0)
    assert pos[one].tolist() == [0, 1, 2]
    assert one.tolist() == q.one_per_image(3, seed=0).tolist()
    draws = {tuple(q.one_per_image(3, seed=s)) for s in range(20)}
    assert len(draws) > 1                       # the seed decides among an image's captions
    with pytest.raises(ValueError, match="have no utterance"):
        q.one_per_image(4, seed=0)


def test_colour_swaps_change_one_mentioned_colour_to_another():
    records = []
    for cls in class_table()[:20]:
        caps = make_captions("toybirds", cls.attributes, seed=0, class_id=cls.id, index=0)
        records.append(SimpleNamespace(captions=[c.text for c in caps], mentions=[c.mentions for c in caps],
                                       attributes=cls.attributes))
    swaps = colour_swaps(records, 5, "toybirds", n=25, seed=1)
    assert len(swaps) == 25
    assert swaps == colour_swaps(records, 5, "toybirds", n=25, seed=1)
    for s in swaps:
        r = records[s["image"]]
        assert s["caption_index"] < 5 and s["caption"] == r.captions[s["caption_index"]]
        assert s["attribute"].endswith("_color") and s["old"] == r.attributes[s["attribute"]] != s["new"]
        assert s["swapped"] != s["caption"] and s["new"] in s["swapped"]


def test_swap_voice_prefers_espeak():
    assert swap_voice(["piper:joe", "espeak:en-us"]) == "espeak:en-us"
    assert swap_voice(["piper:joe"]) == "piper:joe"


def test_results_table_scales_like_the_paper_and_leaves_gaps():
    table = results_table({
        "model": {"inception_score": 3.2, "fid": 41.0, "kid_mean": 0.012, "mAP": 0.0904, "R-precision": 0.5,
                  "attribute accuracy": 0.75, "colour swap": {"success": 0.6}},
        "real": {"inception_score": 4.0, "R-precision": 0.9, "attribute accuracy": 0.99}})
    assert table.loc["model", "mAP (paper)"] == pytest.approx(9.04)     # a percentage, as the paper
    assert table.loc["model", "KID x 1000"] == pytest.approx(12.0)
    assert table.loc["model", "colour swap"] == pytest.approx(0.6)
    assert math.isnan(table.loc["real", "FID"])
    md = to_markdown(table)
    assert md.splitlines()[2].startswith("| model | 3.2 | 41 | 12 | 9.04 |") and "| real | 4 |  |" in md


def test_map_gallery_takes_each_caption_of_the_query_images_once():
    # 3 images x 2 captions, each caption said by two voices (rows interleaved by voice)
    image_pos = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    caption = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
    rows = map_gallery(image_pos, caption, np.array([0, 2]))
    assert rows.tolist() == [0, 2, 8, 10]          # the first utterance of each caption, in order
    assert map_gallery(image_pos, caption, np.array([], dtype=int)).tolist() == []
