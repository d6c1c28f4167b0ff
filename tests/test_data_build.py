"""The data step: toy datasets written in the common layout, resumable, deterministic; torch datasets."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from s2i_lib.config import load_config
from s2i_lib.data.build import build_toy_dataset, link_prepared_dataset
from s2i_lib.data.layout import ImageRecord, read_dataset, write_captions, write_image, write_index
from s2i_lib.data.torch_datasets import ImageCaptionDataset
from s2i_lib.pipeline import ensure


@pytest.fixture(scope="module")
def tiny_birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("birds")
    build_toy_dataset(root, "toybirds", 64, images_per_class=2, seed=0, n_train_classes=2,
                      n_test_classes=1, workers=2)
    return root


def test_layout_files_and_counts(tiny_birds):
    index = read_dataset(tiny_birds)
    assert index.info["counts"] == {"train": {"images": 4, "classes": 2}, "test": {"images": 2, "classes": 1}}
    for r in index.records:
        with Image.open(index.image_path(r.key)) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        lines = (tiny_birds / "text" / f"{r.key}.txt").read_text().splitlines()
        assert lines == list(r.captions) and len(lines) == 10
        assert len(r.mentions) == 10
        for m in r.mentions:  # every mentioned attribute is the image's own
            assert m and all(r.attributes[k] == v for k, v in m.items())
    assert json.loads((tiny_birds / "train" / "filenames.json").read_text()) == [r.key for r in index.split("train")]
    assert json.loads((tiny_birds / "test" / "class_info.json").read_text()) == [r.class_id for r in index.split("test")]
    classes = json.loads((tiny_birds / "classes.json").read_text())
    assert {c["split"] for c in classes} == {"train", "test"} and all(c["attributes"] for c in classes)


def test_build_is_deterministic_and_resumes(tiny_birds, tmp_path):
    build_toy_dataset(tmp_path, "toybirds", 64, images_per_class=2, seed=0, n_train_classes=2,
                      n_test_classes=1, workers=1)
    index = read_dataset(tmp_path)
    for r in index.records:
        assert index.image_path(r.key).read_bytes() == (tiny_birds / "images" / f"{r.key}.png").read_bytes()
    # an interrupted build: one image and the index are missing; a rebuild keeps finished files
    first, second = index.records[0].key, index.records[1].key
    index.image_path(first).unlink()
    (tmp_path / "dataset.json").unlink()
    mtime = index.image_path(second).stat().st_mtime_ns
    build_toy_dataset(tmp_path, "toybirds", 64, images_per_class=2, seed=0, n_train_classes=2,
                      n_test_classes=1, workers=1)
    assert index.image_path(first).read_bytes() == (tiny_birds / "images" / f"{first}.png").read_bytes()
    assert index.image_path(second).stat().st_mtime_ns == mtime
    # another seed gives other images
    other = tmp_path / "seed1"
    build_toy_dataset(other, "toybirds", 64, images_per_class=1, seed=1, n_train_classes=1,
                      n_test_classes=1, workers=1)
    key = read_dataset(other).records[0].key
    assert (other / "images" / f"{key}.png").read_bytes() != (tiny_birds / "images" / f"{key}.png").read_bytes()


def test_the_plain_variant_draws_the_same_species_and_captions_in_its_own_scene(tiny_birds, tmp_path):
    from s2i_lib.data import toy_birds
    info = build_toy_dataset(tmp_path, "toybirds_plain", 64, images_per_class=2, seed=0, n_train_classes=2,
                             n_test_classes=1, workers=1)
    assert info["name"] == "toybirds_plain"
    plain, natural = read_dataset(tmp_path), read_dataset(tiny_birds)
    assert [r.key for r in plain.records] == [r.key for r in natural.records]
    table = toy_birds.class_table()
    for p, n in zip(plain.records, natural.records):
        assert p.captions == n.captions and p.mentions == n.mentions and p.attributes == n.attributes
        drawn = np.asarray(plain.load_image(p.key))
        assert np.array_equal(drawn, np.asarray(toy_birds.render(table[p.class_id], int(p.key[-4:]), 64, seed=0,
                                                                 scene="plain")))
        assert not np.array_equal(drawn, np.asarray(natural.load_image(n.key)))


def test_flowers_build(tmp_path):
    info = build_toy_dataset(tmp_path, "toyflowers", 32, images_per_class=1, seed=0,
                             n_train_classes=2, n_test_classes=1, workers=1)
    assert info["counts"]["train"]["images"] == 2 and "petal_color" in info["attribute_schema"]


def test_image_caption_dataset_serves_all_stages(tiny_birds):
    ds = ImageCaptionDataset(tiny_birds, "train", sizes=(16, 32, 64), seed=3)
    item = ds[0]
    assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    assert all(t.min() >= -1 and t.max() <= 1 for t in item["images"])
    assert 0 <= item["caption_index"] < 10 and item["class_id"] == ds.records[0].class_id
    assert (tiny_birds / "cache" / "images_train_76.npy").exists()  # decoded once, cached
    # the 16 px view is a downscaled copy of the same crop as the 64 px one
    down = torch.nn.functional.interpolate(item["images"][2][None], size=16, mode="bilinear",
                                           antialias=True, align_corners=False)[0]
    assert torch.allclose(down, item["images"][0], atol=1e-5)
    # same seed, same augmentation; no augmentation gives the stored image itself
    again = ImageCaptionDataset(tiny_birds, "train", sizes=(16, 32, 64), seed=3)[0]
    assert torch.equal(again["images"][2], item["images"][2])
    plain = ImageCaptionDataset(tiny_birds, "test", sizes=(64,), augment=False, random_caption=False)
    stored = np.asarray(Image.open(plain.index.image_path(plain.records[0].key)), dtype=np.float32)
    assert torch.allclose(plain[0]["images"][0], torch.from_numpy(stored).permute(2, 0, 1) / 127.5 - 1)
    assert plain[0]["caption_index"] == 0


def test_prepared_real_dataset_is_linked_with_a_class_subset(tmp_path):
    src = tmp_path / "prepared"
    records = []
    for cid, (name, split) in enumerate([("001.A", "train"), ("002.B", "train"), ("003.C", "test")]):
        key = f"{name}/img_{cid}"
        write_image(src, key, Image.new("RGB", (40, 30), (cid * 60, 0, 0)))
        write_captions(src, key, [f"caption {i}" for i in range(10)])
        records.append(ImageRecord(key, name, cid, split, tuple(f"caption {i}" for i in range(10))))
    write_index(src, "cub", records, [{"id": r.class_id, "name": r.class_name, "split": r.split,
                                       "attributes": None} for r in records])
    out = tmp_path / "run"
    out.mkdir()
    info = link_prepared_dataset(out, src, n_train_classes=1, n_test_classes=None)
    assert info["counts"] == {"train": {"images": 1, "classes": 1}, "test": {"images": 1, "classes": 1}}
    index = read_dataset(out)
    assert index.load_image("003.C/img_2").size == (40, 30)
    assert index.records[0].attributes is None


def test_data_step_for_cub_without_prepared_folder_says_what_to_do(tmp_path):
    cfg = load_config("smoke", {"data.dataset": "cub", "data.root": str(tmp_path / "nothing")})
    with pytest.raises(FileNotFoundError, match=r"dataset.json not found.*prepare_"):
        ensure("data", cfg, tmp_path / "runs", log=lambda s: None)
