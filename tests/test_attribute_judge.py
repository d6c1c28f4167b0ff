"""The attribute judge's API on a tiny judge (32 px, a few dozen images, one epoch): random
attribute combinations, rendering with part labels, training, caching, loading, errors. The real
judge (64 px, thousands of images) is trained by benchmarks/bench_judges.py, not here."""
import os
from collections import Counter

import numpy as np
import pytest
import torch

from s2i_lib.data import toy_birds, toy_flowers
from s2i_lib.evaluation import load_attribute_judge, random_attribute_classes, train_attribute_judge
from s2i_lib.evaluation.attribute_judge import (DEGRADATIONS, HELDOUT_ID_OFFSET, AttributeJudgeNet, degrade,
                                                degraded_accuracy, part_names, render_attribute_set)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY = dict(n_images=48, epochs=1, n_heldout=8, width=4, batch_size=16, workers=1, progress=False)


def test_random_classes_draw_every_attribute_independently_within_the_renderer_constraints():
    classes = random_attribute_classes("toybirds", 600, seed=0)
    assert all(c.attributes["wing_bars"] != c.attributes["wing_color"] for c in classes)
    for attr, values in toy_birds.ATTRIBUTES.items():
        assert set(c.attributes[attr] for c in classes) == set(values), attr
    # not the dataset's species: crown and belly colours are unrelated (a species table ties them)
    pairs = Counter((c.attributes["crown_color"], c.attributes["belly_color"]) for c in classes)
    assert len(pairs) > 90          # of 121 possible, in 600 draws
    assert random_attribute_classes("toybirds", 5, seed=0) == classes[:5]
    assert random_attribute_classes("toybirds", 5, seed=1) != classes[:5]
    assert min(c.id for c in classes) >= 1_000_000   # never a dataset class's random stream
    flowers = random_attribute_classes("toyflowers", 200, seed=0)
    assert all(c.attributes["center_color"] != c.attributes["petal_color"] for c in flowers)


def test_rendered_labels_are_the_renderer_part_masks():
    cls = random_attribute_classes("toybirds", 2, seed=3, id_offset=HELDOUT_ID_OFFSET)
    images, labels = render_attribute_set("toybirds", cls, 32, seed=3, workers=1, progress=False)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and labels.shape == (2, 32, 32)
    img, masks = toy_birds.render(cls[1], 0, size=32, seed=3, with_masks=True)
    np.testing.assert_array_equal(images[1], np.asarray(img))
    parts = part_names("toybirds")
    assert "bird" not in parts
    for k, p in enumerate(parts, start=1):
        np.testing.assert_array_equal(labels[1] == k, masks[p])
    assert not ((labels[1] > 0) & ~masks["bird"] & ~masks["branch"]).any()   # only bird and branch parts


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    path = tmp_path_factory.mktemp("judge") / "sub" / "judge.pt"
    return train_attribute_judge("toybirds", 32, 0, path, **TINY), path


def test_tiny_judge_predicts_every_attribute_and_reports(tiny_judge):
    judge, path = tiny_judge
    rep = judge.report
    assert rep["n_images"] == 48 and rep["image_size"] == 32 and len(rep["loss_curve"]) == 1
    held = rep["heldout_rendered"]
    assert set(held["per_attribute"]) == set(toy_birds.ATTRIBUTES) and held["n"] == 8 * 7
    assert all(0.0 <= v <= 1.0 for v in held["per_attribute"].values())
    images = np.stack([np.asarray(toy_birds.render(c, 0, 32, 0)) for c in toy_birds.class_table()[:3]])
    preds = judge.predict(images)
    assert len(preds) == 3
    for p in preds:
        assert set(p) == set(toy_birds.ATTRIBUTES)
        assert all(p[a] in toy_birds.ATTRIBUTES[a] for a in p)
    acc = judge.accuracy(images, [c.attributes for c in toy_birds.class_table()[:3]])
    assert acc["n"] == 21 and acc["n_images"] == 3


def test_judge_is_cached_and_reloads_identically(tiny_judge):
    judge, path = tiny_judge
    mtime = os.path.getmtime(path)
    again = train_attribute_judge("toybirds", 32, 0, path, **TINY)
    assert os.path.getmtime(path) == mtime      # loaded, not retrained
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    assert again.predict(images) == judge.predict(images)
    loaded = load_attribute_judge(path)
    assert loaded.predict(images) == judge.predict(images)
    assert loaded.report == judge.report and loaded.dataset == "toybirds" and loaded.image_size == 32
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        for a, logits in loaded.net(x)[0].items():
            torch.testing.assert_close(logits, judge.net(x)[0][a])


def test_changed_arguments_retrain(tiny_judge, tmp_path):
    judge, path = tiny_judge
    copy = tmp_path / "judge.pt"
    copy.write_bytes(path.read_bytes())
    other = train_attribute_judge("toybirds", 32, 1, copy, **TINY)   # another seed
    assert other.report["seed"] == 1 and load_attribute_judge(copy).report["seed"] == 1


def test_judge_errors(tiny_judge, tmp_path):
    judge, path = tiny_judge
    with pytest.raises(ValueError, match="trained at 32 px, got 64x64"):
        judge.predict(np.zeros((1, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 images"):
        judge.predict(np.zeros((1, 32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="toy dataset"):
        train_attribute_judge("cub", 32, 0, tmp_path / "j.pt", **TINY)
    with pytest.raises(ValueError, match="n_images must be at least 1"):
        train_attribute_judge("toybirds", 32, 0, tmp_path / "j.pt", **{**TINY, "n_images": 0})
    with pytest.raises(FileNotFoundError, match="train_attribute_judge"):
        load_attribute_judge(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(ValueError, match="bad.pt is damaged or not a checkpoint written by s2i_lib"):
        load_attribute_judge(tmp_path / "bad.pt")
    torch.save({"request": {"format": 999}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt is not an attribute judge of format"):
        load_attribute_judge(tmp_path / "old.pt")
    with pytest.raises(ValueError, match="reads part 'tail_feathers'"):
        AttributeJudgeNet({"x_color": ["red"]}, {"x_color": "tail_feathers"}, ["crown"])


def test_flower_judge_uses_the_same_code(tmp_path):
    judge = train_attribute_judge("toyflowers", 32, 0, tmp_path / "f.pt", **{**TINY, "n_images": 16})
    images = np.stack([np.asarray(toy_flowers.render(c, 0, 32, 0)) for c in toy_flowers.class_table()[:2]])
    preds = judge.predict(images)
    assert set(preds[0]) == set(toy_flowers.ATTRIBUTES) and "petals" in judge.net.parts


def test_degradations_keep_shape_and_know_what_they_do():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    flat = np.full((2, 16, 16, 3), 77, dtype=np.uint8)
    for kind in DEGRADATIONS:
        out = degrade(images, kind, seed=1)
        assert out.shape == images.shape and out.dtype == np.uint8
        if kind != "noise std 20/255":
            np.testing.assert_array_equal(degrade(flat, kind), flat)     # nothing to blur in a flat image
    np.testing.assert_array_equal(degrade(images, "clean"), images)
    blurred = degrade(images, "box blur 5x5").astype(float)
    assert blurred.std() < 0.6 * images.astype(float).std()              # blur removes detail
    np.testing.assert_array_equal(degrade(images, "noise std 20/255", 3), degrade(images, "noise std 20/255", 3))
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(images, "sepia")


def test_through_resolution_keeps_only_what_that_many_pixels_hold():
    from s2i_lib.evaluation.attribute_judge import through_resolution
    halves = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    halves[:, :, 4:] = 200                                   # left half black, right half 200
    np.testing.assert_array_equal(through_resolution(halves, 8), halves)      # its own size: unchanged
    row = through_resolution(halves, 2)[0, 3, :, 0].astype(int)   # 2 px hold the two halves, edge blurred
    assert row[0] == 0 and row[-1] == 200 and (np.diff(row) >= 0).all() and 0 < row[3] < 200
    np.testing.assert_array_equal(through_resolution(halves, 1), np.full_like(halves, 100))  # 1 px: the mean
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    assert through_resolution(images, 4).astype(float).std() < 0.5 * images.astype(float).std()
    np.testing.assert_array_equal(degrade(images, "half size and back"), through_resolution(images, 8))
    with pytest.raises(ValueError, match="px must be between 1 and the image size 16, got 0"):
        through_resolution(images, 0)


def test_degraded_accuracy_starts_from_the_clean_accuracy(tiny_judge):
    judge, _ = tiny_judge
    classes = toy_birds.class_table()[:4]
    images = np.stack([np.asarray(toy_birds.render(c, 0, 32, 0)) for c in classes])
    attrs = [c.attributes for c in classes]
    out = degraded_accuracy(judge, images, attrs)
    assert list(out) == list(DEGRADATIONS)
    assert out["clean"] == judge.accuracy(images, attrs)
