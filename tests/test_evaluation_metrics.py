"""Evaluation metrics on cases whose answers are known: FID / KID against direct numpy / scipy
computations, IS of confident and of uniform classifiers, mAP and R-precision on hand-made
embeddings, attribute accuracy on hand-made predictions; the IS classifier's API on tiny images."""
import os

import numpy as np
import pytest
import scipy.linalg
import torch

from s2i_lib.evaluation import (attribute_accuracy, cached_features, fid_and_kid, fid_from_features,
                                heldout_split, inception_features, inception_score, kid_from_features,
                                load_is_classifier, paper_queries, r_precision, retrieval_map,
                                train_is_classifier)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ------------------------------------------------------------------------------------ FID / KID
def direct_fid(a: np.ndarray, b: np.ndarray) -> float:
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_a_direct_computation_on_gaussian_features():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(0.4, 1.5, size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.3
    assert fid_from_features(a, b) == pytest.approx(direct_fid(a, b), rel=1e-6)
    assert fid_from_features(a, b) > 1.0


def test_fid_of_identical_sets_is_zero_and_of_a_shift_is_its_squared_length():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 8))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    # the same sample moved by v: equal covariances, so FID = |v|^2 exactly
    v = np.array([1.0, -2.0, 0, 0, 0.5, 0, 0, 0])
    assert fid_from_features(a, a + v) == pytest.approx(float(v @ v), rel=1e-6)
    # fewer images than dimensions (smoke: 12 test images, 2048-d): still ~0 for identical sets
    small = rng.normal(size=(12, 64))
    assert fid_from_features(small, small) == pytest.approx(0.0, abs=1e-3)


def direct_kid(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m ** 2)


def test_kid_matches_a_direct_computation_and_adapts_its_subset_size():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.5, 1.0, size=(30, 8))
    # subsets of all 30 rows: every subset is the whole set, so the estimate is exact
    out = kid_from_features(x, y, subsets=5, subset_size=1000)
    assert out["kid_subset_size"] == 30
    assert out["kid_mean"] == pytest.approx(direct_kid(x, y), rel=1e-9)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-9)
    # same distribution ~0, shifted clearly positive; seeded subsets are reproducible
    z = rng.normal(size=(400, 8))
    same = kid_from_features(z[:200], z[200:], subsets=20, subset_size=50, seed=3)
    moved = kid_from_features(z[:200], z[200:] + 1.0, subsets=20, subset_size=50, seed=3)
    assert abs(same["kid_mean"]) < 0.05 < moved["kid_mean"]
    assert same == kid_from_features(z[:200], z[200:], subsets=20, subset_size=50, seed=3)
    assert same != kid_from_features(z[:200], z[200:], subsets=20, subset_size=50, seed=4)


def test_fid_and_kid_report_and_errors():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(10, 4))
    out = fid_and_kid(a, b)
    assert out["n_real"] == 12 and out["n_fake"] == 10 and out["kid_subset_size"] == 10
    assert out["fid"] == pytest.approx(direct_fid(a, b), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fid_from_features(a[:1], b)
    with pytest.raises(ValueError, match="differ in dimension"):
        fid_from_features(a, b[:, :3])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        kid_from_features(a[0], b)


@pytest.fixture(scope="module")
def tf_inception():
    from s2i_lib.sen.backbones import load_backbone
    return load_backbone("tf_inception")


def test_inception_features_images_path_and_cache(tf_inception, tmp_path):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from s2i_lib.evaluation import InceptionFeatures

    rng = np.random.default_rng(5)
    real = rng.integers(0, 256, size=(3, 24, 24, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + 60, 0, 255).astype(np.uint8)
    fr = inception_features(real, tf_inception)
    assert fr.shape == (3, 2048) and fr.dtype == np.float32
    # uint8 and the same images as [-1, 1] floats give the same features
    np.testing.assert_allclose(inception_features(real / 127.5 - 1.0, tf_inception), fr, rtol=1e-4, atol=1e-4)
    # torchmetrics on images with our feature module = our FID on the extracted features
    metric = FrechetInceptionDistance(feature=InceptionFeatures(tf_inception)).double()
    metric.update(torch.from_numpy(real).permute(0, 3, 1, 2), real=True)
    metric.update(torch.from_numpy(fake).permute(0, 3, 1, 2), real=False)
    ff = inception_features(fake, tf_inception)
    assert float(metric.compute()) == pytest.approx(fid_from_features(fr, ff), rel=1e-3)
    # cache: written once, reused, recomputed when the images change
    path = tmp_path / "real.npy"
    np.testing.assert_allclose(cached_features(real, path, tf_inception), fr, rtol=1e-5)
    np.save(path, np.zeros((3, 2048), dtype=np.float32))   # a reuse would return this
    assert not cached_features(real, path, tf_inception).any()
    np.testing.assert_allclose(cached_features(fake, path, tf_inception), ff, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        inception_features(real.astype(np.float32), tf_inception)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        inception_features(real.transpose(0, 3, 1, 2), tf_inception)


# ---------------------------------------------------------------------------------- Inception Score
def test_inception_score_of_confident_balanced_and_of_uniform_predictions():
    n_classes, splits = 5, 10
    labels = np.arange(n_classes * splits * 2) % n_classes     # every split holds each class twice
    confident = 50.0 * np.eye(n_classes)[labels]
    out = inception_score(confident, splits=splits, seed=None)
    assert out["is_mean"] == pytest.approx(n_classes, rel=1e-6)
    assert out["is_std"] == pytest.approx(0.0, abs=1e-6) and out["splits"] == splits and out["n"] == 100
    uniform = inception_score(np.zeros((100, n_classes)), splits=splits)
    assert uniform["is_mean"] == pytest.approx(1.0) and uniform["is_std"] == pytest.approx(0.0)
    # confident but always the same class: 1
    assert inception_score(confident[labels == 0], splits=2)["is_mean"] == pytest.approx(1.0)
    # a seeded shuffle unbalances the splits a little: below the maximum, reproducible
    shuffled = inception_score(confident, splits=splits, seed=0)
    assert 1.0 < shuffled["is_mean"] < n_classes
    assert shuffled == inception_score(confident, splits=splits, seed=0)


def test_inception_score_matches_torchmetrics_with_one_split():
    from torchmetrics.image.inception import InceptionScore

    logits = np.random.default_rng(6).normal(0, 3, size=(40, 7))
    with pytest.warns(UserWarning):   # torchmetrics warns that it keeps every feature
        metric = InceptionScore(feature=torch.nn.Identity(), splits=1)
    metric.update(torch.from_numpy(logits))
    with pytest.warns(UserWarning, match="degrees of freedom"):   # the std of one split
        expected = float(metric.compute()[0])
    assert inception_score(logits, splits=1)["is_mean"] == pytest.approx(expected, rel=1e-6)
    # ten parts even when the count does not divide (torch.chunk would make 6 of 12 rows)
    assert inception_score(logits[:12], splits=10)["splits"] == 10
    with pytest.raises(ValueError, match="one image per split"):
        inception_score(logits[:5], splits=10)


def test_heldout_split_keeps_images_of_every_class_on_both_sides():
    train = heldout_split([3, 3, 3, 7, 7, 7, 7, 9, 9])
    assert train.tolist() == [True, True, False, True, True, False, False, True, False]
    with pytest.raises(ValueError, match="class 5 has 1 images"):
        heldout_split([5, 9, 9])


@pytest.fixture(scope="module")
def toy_test_images():
    from s2i_lib.data import toy_birds
    classes = [c for c in toy_birds.class_table() if c.split == "test"][:3]
    images = np.stack([np.asarray(toy_birds.render(c, i, size=32, seed=0)) for c in classes for i in range(4)])
    return images, np.repeat([c.id for c in classes], 4)


def test_is_classifier_trains_caches_and_reports(toy_test_images, tmp_path):
    images, class_ids = toy_test_images
    kw = dict(n_views=2, input_size=64, steps=30)
    clf = train_is_classifier(images, class_ids, 0, tmp_path / "clf.pt", tmp_path / "feats.npy", progress=False, **kw)
    rep = clf.report
    assert clf.class_ids == sorted(set(class_ids.tolist())) and rep["n_classes"] == 3
    assert rep["counts"]["train_images"] == 6 and rep["counts"]["heldout_images"] == 6
    assert rep["counts"]["train_views"] == 12 and rep["counts"]["heldout_per_class"] == [2, 2]
    # the reported held-out accuracy is that of the public scoring path on the held-out images
    held = ~heldout_split(class_ids)
    logits = clf.logits(images[held])
    assert logits.shape == (6, 3)
    pred = np.asarray(clf.class_ids)[logits.argmax(1)]
    assert rep["heldout_accuracy"] == pytest.approx(float((pred == class_ids[held]).mean()))
    # cached: the second call loads the file; the loaded classifier scores identically
    mtime = os.path.getmtime(tmp_path / "clf.pt")
    again = train_is_classifier(images, class_ids, 0, tmp_path / "clf.pt", tmp_path / "feats.npy", progress=False, **kw)
    assert os.path.getmtime(tmp_path / "clf.pt") == mtime
    np.testing.assert_allclose(again.logits(images[held]), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(load_is_classifier(tmp_path / "clf.pt").logits(images[held]), logits,
                               rtol=1e-5, atol=1e-5)
    # deterministic given the seed; another seed trains another head
    other = train_is_classifier(images, class_ids, 0, tmp_path / "c2.pt", tmp_path / "feats.npy", progress=False, **kw)
    np.testing.assert_allclose(other.logits(images[held]), logits, rtol=1e-5, atol=1e-5)
    assert inception_score(logits, splits=2)["n"] == 6
    with pytest.raises(ValueError, match="one class id per image"):
        train_is_classifier(images, class_ids[:-1], 0, tmp_path / "x.pt", tmp_path / "f.npy", progress=False)
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt is damaged or not a checkpoint written by s2i_lib"):
        load_is_classifier(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------------------- mAP
def test_paper_queries_are_the_first_images_of_each_class():
    assert paper_queries([4, 4, 4, 1, 1, 4, 2]).tolist() == [0, 1, 3, 4, 6]
    assert paper_queries([4, 4, 1], per_class=None).tolist() == [0, 1, 2]


def test_retrieval_map_on_hand_made_features():
    # real images 0, 1, 4 of class A, 2, 3 of class B; queries (2 per class): 0, 1, 2, 3.
    # Generated image g_j from real image j, features e_j for j < 4, so a query row is its score vector.
    real_class = np.array(["A", "A", "B", "B", "A"])
    queries = np.array([[0.9, 0.1, 0.5, 0.2],    # A: relevant g0 rank 1, g1 rank 4 -> (1/1 + 2/4) / 2
                        [0.8, 0.7, 0.1, 0.2],    # A: ranks 1, 2 -> 1
                        [0.9, 0.8, 0.7, 0.1],    # B: ranks 3, 4 -> (1/3 + 2/4) / 2
                        [0.1, 0.2, 0.3, 0.9]])   # B: ranks 1, 2 -> 1
    real = np.vstack([queries, np.ones(4)])
    # g4 comes from real image 4, not a query: it must stay out of the gallery (it would outrank all)
    gen = np.vstack([np.eye(4), np.full(4, 5.0)])
    out = retrieval_map(real, real_class, gen, [0, 1, 2, 3, 4])
    assert out["map"] == pytest.approx((0.75 + 1 + (1 / 3 + 0.5) / 2 + 1) / 4)
    assert out["n_queries"] == 4 and out["n_gallery"] == 4 and out["relevant_per_query"] == 2
    with pytest.raises(ValueError, match=r"query images \[3\] have no generated image"):
        retrieval_map(real, real_class, gen[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="must index the 5 real images"):
        retrieval_map(real, real_class, gen, [0, 1, 2, 3, 9])


# --------------------------------------------------------------------------------- R-precision
def test_r_precision_on_hand_made_embeddings():
    captions = np.eye(3)
    images = np.array([[0.9, 0.5, 0.1],     # own caption 0 first: hit
                       [0.8, 0.7, 0.1],     # own caption 1 beaten by caption 0: miss
                       [0.3, 0.3, 0.3]])    # a tie counts against the model: miss
    out = r_precision(images, captions, [0, 1, 2], n_negatives=99)
    assert out["r_precision"] == pytest.approx(1 / 3)
    assert out["n"] == 3 and out["n_negatives_min"] == 2 and out["chance"] == pytest.approx(1 / 3)


def test_r_precision_draws_negatives_from_other_classes_only():
    # the image equals a caption of its own class (pool row 1), which must never be a negative
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    out = r_precision([[0.0, 1.0]], [[0.6, 0.8]], [7], pool_emb=pool, pool_class=[3, 7, 3])
    assert out["r_precision"] == 1.0 and out["n_negatives_min"] == 2
    with pytest.raises(ValueError, match="no caption of another class"):
        r_precision([[0.0, 1.0]], [[0.6, 0.8]], [7], pool_emb=pool[1:2], pool_class=[7])


def test_r_precision_seeded_draw_has_the_expected_hit_rate():
    # own caption scores 0.5; of 5 other-class captions one scores 0.9, four score 0.1.
    # With 4 negatives drawn from 5, the image wins iff the 0.9 one is left out: p = 1/5.
    n = 2000
    pool = np.array([[0.9, np.sqrt(1 - 0.81)]] + [[0.1, np.sqrt(1 - 0.01)]] * 4 + [[0.5, np.sqrt(0.75)]])
    pool_class = [1, 1, 1, 1, 1, 0]
    images = np.tile([[1.0, 0.0]], (n, 1))
    captions = np.tile(pool[-1:], (n, 1))
    out = r_precision(images, captions, np.zeros(n, int), n_negatives=4, seed=0, pool_emb=pool, pool_class=pool_class)
    assert out["r_precision"] == pytest.approx(0.2, abs=0.03)
    assert out == r_precision(images, captions, np.zeros(n, int), n_negatives=4, seed=0, pool_emb=pool,
                              pool_class=pool_class)
    assert out != r_precision(images, captions, np.zeros(n, int), n_negatives=4, seed=1, pool_emb=pool,
                              pool_class=pool_class)


# ---------------------------------------------------------------------------- attribute accuracy
def test_attribute_accuracy_on_hand_made_predictions():
    predictions = [{"crown_color": "red", "size": "small", "beak_color": "black"},
                   {"crown_color": "blue", "size": "large", "beak_color": "grey"},
                   {"crown_color": "red", "size": "large", "beak_color": "grey"}]
    mentions = [{"crown_color": "red", "size": "large"},      # 1 of 2
                {"crown_color": "blue", "beak_color": "grey"},  # 2 of 2
                None]                                         # says nothing: skipped
    out = attribute_accuracy(predictions, mentions)
    assert out["overall"] == pytest.approx(3 / 4) and out["n"] == 4 and out["n_images"] == 3
    assert out["per_attribute"] == {"beak_color": 1.0, "crown_color": 1.0, "size": 0.0}
    assert out["counts"] == {"beak_color": 1, "crown_color": 2, "size": 1}
    assert np.isnan(attribute_accuracy(predictions, [{}, None, {}])["overall"])
    with pytest.raises(ValueError, match="one prediction per mention"):
        attribute_accuracy(predictions, mentions[:2])
    with pytest.raises(ValueError, match="'wing_bars' is mentioned but not predicted"):
        attribute_accuracy(predictions, [{"wing_bars": "none"}, None, None])
