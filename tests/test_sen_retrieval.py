"""Retrieval metrics on hand-made cases with answers computed by hand.

Trick used throughout: with the gallery = the identity basis, a query's cosine similarity to item g
is ``row[g] / |row|``, so a query row *is* its score vector (up to a positive scale) and rankings
can be written down directly.
"""
import numpy as np
import pytest
import torch

import s2i_lib.sen.retrieval as retrieval
from s2i_lib.sen import (attribute_precision_at_k, attribute_precision_chance, average_precision, class_map,
                         expected_average_precision,
                         class_map_one_query_per_class, first_query_per_class, recall_at_k)


def test_perfect_ranking():
    emb = np.eye(6) + 0.01
    r = recall_at_k(emb, emb)
    assert r["speech_to_image_R@1"] == 1.0 and r["image_to_speech_R@1"] == 1.0
    assert r["speech_to_image_median_rank"] == 1.0 and r["image_to_speech_median_rank"] == 1.0
    assert class_map(emb, np.arange(6), emb, np.arange(6)) == pytest.approx(1.0)


def test_perfect_class_ranking_gives_map_one():
    # speech queries of class c score the images of class c highest
    img_class = np.array([0, 1, 2, 0, 1, 2])
    img = np.eye(3)[img_class] + 0.05 * np.eye(6, 3, k=0)      # 6 images, 3 classes
    sp = np.eye(3)[[0, 1, 2, 2]]
    assert class_map(sp, [0, 1, 2, 2], img, img_class) == pytest.approx(1.0)
    assert class_map_one_query_per_class(sp, [0, 1, 2, 2], img, img_class) == pytest.approx(1.0)


def test_speech_to_image_recall_with_several_captions_per_image():
    images = np.eye(4)
    captions = np.array([[0.9, 0.1, 0.2, 0.3],    # image 0: rank 1
                         [0.5, 0.8, 0.6, 0.1],    # image 0: rank 3
                         [0.7, 0.6, 0.1, 0.2],    # image 1: rank 2
                         [0.1, 0.2, 0.3, 0.9],    # image 2: rank 2
                         [0.4, 0.3, 0.2, 0.1],    # image 3: rank 4
                         [0.3, 0.2, 0.1, 0.35]])  # image 3: rank 1
    r = recall_at_k(captions, images, image_index=[0, 0, 1, 2, 3, 3], ks=(1, 2, 3))
    assert r["speech_to_image_R@1"] == pytest.approx(2 / 6)
    assert r["speech_to_image_R@2"] == pytest.approx(4 / 6)
    assert r["speech_to_image_R@3"] == pytest.approx(5 / 6)
    assert r["speech_to_image_median_rank"] == 2.0        # ranks 1, 1, 2, 2, 3, 4


def test_image_to_speech_recall_counts_the_best_placed_own_caption():
    captions = np.eye(5)
    images = np.array([[0.2, 0.9, 0.1, 0.3, 0.4],    # own caption {0}: 0.2, beaten by 3 -> rank 4
                       [0.1, 0.3, 0.8, 0.5, 0.2],    # own {1, 2}: best 0.8 -> rank 1
                       [0.6, 0.1, 0.7, 0.5, 0.2]])   # own {3, 4}: best 0.5, beaten by 2 -> rank 3
    r = recall_at_k(captions, images, image_index=[0, 1, 1, 2, 2], ks=(1, 3, 5))
    assert r["image_to_speech_R@1"] == pytest.approx(1 / 3)
    assert r["image_to_speech_R@3"] == pytest.approx(2 / 3)
    assert r["image_to_speech_R@5"] == pytest.approx(1.0)
    assert r["image_to_speech_median_rank"] == 3.0


def test_ties_count_against_the_model():
    # a collapsed embedding: every similarity equal. It must not look perfect.
    same = np.ones((4, 8))
    r = recall_at_k(same, same)
    assert r["speech_to_image_R@1"] == 0.0 and r["speech_to_image_median_rank"] == 4.0
    assert r["image_to_speech_R@1"] == 0.0
    # AP with three tied items, relevant first and last in gallery order: irrelevant goes first
    assert average_precision([1.0, 1.0, 1.0], [True, False, True]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    classes = [0, 0, 1, 1]
    assert class_map(same, classes, same, classes) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 5: (1/1 + 2/3 + 3/5) / 3
    ap = average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [True, False, True, False, True])
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # the order of the gallery does not matter, only the scores
    assert average_precision([0.5, 0.7, 0.9, 0.6, 0.8], [True, True, True, False, False]) == pytest.approx(ap)
    with pytest.raises(ValueError, match="no relevant"):
        average_precision([0.1, 0.2], [False, False])


def test_class_map_of_a_known_ranking():
    gallery_class = [0, 1, 0, 1, 0]
    queries = np.array([[0.9, 0.8, 0.7, 0.6, 0.5],    # class 0: relevant at 1, 3, 5
                        [0.1, 0.2, 0.3, 0.4, 0.5]])   # class 1: order 4, 3, 2, 1, 0 -> at 2, 4
    ap0 = (1 + 2 / 3 + 3 / 5) / 3
    ap1 = (1 / 2 + 2 / 4) / 2
    assert class_map(queries, [0, 1], np.eye(5), gallery_class) == pytest.approx((ap0 + ap1) / 2)
    with pytest.raises(ValueError, match=r"query classes \[7\]"):
        class_map(queries, [0, 7], np.eye(5), gallery_class)


def test_one_query_per_class_is_the_first_after_a_stable_sort():
    classes = [2, 0, 2, 0, 1]
    np.testing.assert_array_equal(first_query_per_class(classes), [1, 4, 0])
    gallery_class = [0, 1, 2]
    # speech 1 (class 0) ranks its class first, speech 3 (also class 0) last
    sp = np.array([[0.1, 0.2, 0.9],     # class 2: first -> AP 1
                   [0.9, 0.5, 0.1],     # class 0: first -> AP 1
                   [0.9, 0.5, 0.1],     # class 2: unused (not first of its class)
                   [0.1, 0.5, 0.9],     # class 0: last -> AP 1/3, unused
                   [0.5, 0.2, 0.9]])    # class 1: last -> AP 1/3
    ref = class_map_one_query_per_class(sp, classes, np.eye(3), gallery_class)
    assert ref == pytest.approx((1 + 1 / 3 + 1) / 3)
    every = class_map(sp, classes, np.eye(3), gallery_class)
    assert every == pytest.approx((1 + 1 + 1 / 3 + 1 / 3 + 1 / 3) / 5)


def test_attribute_precision_at_k():
    images = [{"color": "red", "size": "small"}, {"color": "red", "size": "large"},
              {"color": "blue", "size": "small"}, {"color": "blue"}]
    queries = np.array([[0.9, 0.1, 0.8, 0.2],   # red: top-2 = 0 (red), 2 (blue) -> 1/2
                        [0.1, 0.2, 0.3, 0.9],   # blue+large: 3 has no size -> disagrees; 2 small
                        [0.5, 0.5, 0.5, 0.5],   # mentions nothing: skipped
                        [0.5, 0.1, 0.4, 0.0]])  # small: top-2 = 0, 2 -> 2/2
    mentions = [{"color": "red"}, {"color": "blue", "size": "large"}, {}, {"size": "small"}]
    assert attribute_precision_at_k(queries, mentions, np.eye(4), images, k=2) == pytest.approx(
        (1 / 2 + 0 + 1) / 3)
    assert attribute_precision_at_k(queries, mentions, np.eye(4), images, k=1) == pytest.approx(
        (1 + 0 + 1) / 3)
    assert attribute_precision_at_k(queries, mentions, np.eye(4), images, k=4) == pytest.approx(
        (2 / 4 + 0 + 2 / 4) / 3)
    assert attribute_precision_at_k(queries, mentions, np.eye(4), images, k=100) == pytest.approx(
        (2 / 4 + 0 + 2 / 4) / 3)   # k larger than the gallery: the whole gallery
    assert np.isnan(attribute_precision_at_k(queries, [None, {}, {}, None], np.eye(4), images, k=2))
    with pytest.raises(ValueError, match="one mention dict per query"):
        attribute_precision_at_k(queries, mentions[:3], np.eye(4), images)


def test_expected_average_precision_is_the_mean_over_every_ranking():
    import itertools
    for n, r in [(1, 1), (4, 1), (4, 2), (5, 3), (6, 2), (6, 6)]:
        aps = [average_precision(-np.arange(n), np.isin(np.arange(n), order[:r]))
               for order in itertools.permutations(range(n))]
        assert expected_average_precision(r, n) == pytest.approx(np.mean(aps))
    assert expected_average_precision(10, 100) > 10 / 100     # above the share of relevant items
    with pytest.raises(ValueError, match="n_relevant"):
        expected_average_precision(0, 5)


def test_attribute_precision_chance_is_the_precision_of_the_whole_gallery():
    images = [{"color": "red", "size": "small"}, {"color": "red", "size": "large"},
              {"color": "blue", "size": "small"}, {"color": "blue"}]
    mentions = [{"color": "red"}, {"color": "blue", "size": "large"}, {}, {"size": "small"}]
    assert attribute_precision_chance(mentions, images) == pytest.approx((2 / 4 + 0 + 2 / 4) / 3)
    # any ranking's precision over the whole gallery, and random rankings' on average at any k
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4, 4))
    assert attribute_precision_at_k(queries, mentions, np.eye(4), images, k=4) == pytest.approx(
        attribute_precision_chance(mentions, images))
    at_2 = np.mean([attribute_precision_at_k(rng.normal(size=(4, 4)), mentions, np.eye(4), images, k=2)
                    for _ in range(3000)])
    assert at_2 == pytest.approx(attribute_precision_chance(mentions, images), abs=0.02)
    assert np.isnan(attribute_precision_chance([None, {}], images))


def test_blocks_give_the_same_answers(monkeypatch):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(7, 5))
    image_index = rng.integers(0, 7, size=23)
    image_index[:7] = np.arange(7)
    sp = img[image_index] + 0.8 * rng.normal(size=(23, 5))
    classes = np.arange(7) % 3
    attrs = [{"c": int(c)} for c in classes]
    mentions = [{"c": int(classes[i])} for i in image_index]

    def everything():
        return (recall_at_k(sp, img, image_index),
                class_map(sp, classes[image_index], img, classes),
                attribute_precision_at_k(sp, mentions, img, attrs, k=3))

    whole = everything()
    monkeypatch.setattr(retrieval, "_BLOCK", 2)
    assert everything() == whole


def test_accepts_torch_tensors_and_checks_inputs():
    emb = torch.eye(3)
    assert recall_at_k(emb, emb)["speech_to_image_R@1"] == 1.0
    with pytest.raises(ValueError, match="no caption"):
        recall_at_k(np.eye(3), np.eye(3), image_index=[0, 0, 1])
    with pytest.raises(ValueError, match="one entry per caption"):
        recall_at_k(np.eye(3), np.eye(3), image_index=[0, 1])
    with pytest.raises(ValueError, match=r"\(N, D\) matrix"):
        recall_at_k(np.ones(3), np.eye(3))
