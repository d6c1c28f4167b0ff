"""data_scripts/prepare_cub.py and s2i_lib.data.real_datasets on a miniature CUB-200-2011."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from real_data_fixtures import (BACKGROUND, BIRD, CUB_BBOXES, CUB_BOXES, CUB_CLASSES, CUB_KEYS,
                                CUB_TEST_CLASSES, CUB_TRAIN_CLASSES, captions_for, make_attngan_birds,
                                make_cub, make_reed, make_tgz, make_zip)
from s2i_lib.data import real_datasets
from s2i_lib.data.layout import read_dataset
from s2i_lib.data.real_datasets import (DatasetPreparationError, load_plain_pickle, prepare_cub,
                                        resize_shorter_side, stackgan_crop_box)

REPO = Path(__file__).resolve().parents[1]
TRAIN_KEYS = [k for k in CUB_KEYS if k.split("/")[0] in CUB_TRAIN_CLASSES]
TEST_KEYS = [k for k in CUB_KEYS if k.split("/")[0] in CUB_TEST_CLASSES]
QUIET = dict(progress=False, log=lambda msg: None, workers=2)


@pytest.fixture
def downloads(tmp_path):
    """A miniature CUB_200_2011/ folder and Reed's cvpr2016_cub/ folder, in downloads/."""
    d = tmp_path / "downloads"
    d.mkdir()
    cub = make_cub(d)
    reed = make_reed(d, CUB_KEYS, CUB_TRAIN_CLASSES, CUB_TEST_CLASSES)
    return cub, reed


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def _check_standard_output(out: Path, ext: str = ".png") -> None:
    ds = read_dataset(out)
    assert ds.name == "cub"
    assert ds.info["image_ext"] == ext
    assert [r.key for r in ds.records] == CUB_KEYS            # images.txt order
    assert [r.key for r in ds.split("train")] == TRAIN_KEYS
    assert [r.key for r in ds.split("test")] == TEST_KEYS
    assert ds.info["counts"] == {"train": {"images": 4, "classes": 2}, "test": {"images": 2, "classes": 1}}
    for r in ds.records:
        assert r.class_id == CUB_CLASSES.index(r.class_name)
        assert r.captions == tuple(captions_for(r.key))
        assert r.attributes is None and r.mentions is None
        assert ds.image_path(r.key).is_file()
        assert (out / "text" / f"{r.key}.txt").read_text().splitlines() == captions_for(r.key)
    assert ds.classes == [
        {"id": 0, "name": "001.Black_footed_Albatross", "split": "test", "attributes": None},
        {"id": 1, "name": "002.Laysan_Albatross", "split": "train", "attributes": None},
        {"id": 2, "name": "003.Sooty_Albatross", "split": "train", "attributes": None}]
    assert json.loads((out / "train" / "class_info.json").read_text()) == [1, 1, 2, 2]
    assert ds.info["warnings"] == []
    assert "0.75" in ds.info["crop"]
    assert ds.info["captions_per_image"] == 10


# ------------------------------------------------------------------------------- good inputs
def test_folders_reed_crop_is_stackgan_box(downloads, tmp_path):
    cub, reed = downloads
    out = tmp_path / "data" / "cub"
    info = prepare_cub(cub, reed, out, size=0, **QUIET)
    assert info["image_size"] == 0 and info["caption_format"] == "reed"
    _check_standard_output(out)
    ds = read_dataset(out)
    for key, box in CUB_BOXES.items():
        out_img = np.asarray(ds.load_image(key))
        assert out_img.shape[:2] == (box[3] - box[1], box[2] - box[0]), key
        with Image.open(cub / "images" / f"{key}.jpg") as src:
            expected = np.asarray(src.convert("RGB").crop(box))
        assert np.array_equal(out_img, expected), key   # PNG: exactly the decoded crop
        # the bbox centre is bird-red; a crop corner outside the bbox is background-green
        x, y, w, h = CUB_BBOXES[key]
        centre = out_img[int(y + h / 2) - box[1], int(x + w / 2) - box[0]]
        assert np.abs(centre.astype(int) - BIRD).max() < 40, key
        if box[0] < x - 2 and box[1] < y - 2:
            assert np.abs(out_img[0, 0].astype(int) - BACKGROUND).max() < 40, key
    assert _leftovers(tmp_path / "data") == []


def test_stackgan_crop_box_by_hand():
    assert stackgan_crop_box((60.0, 27.0, 30.0, 20.0), 100, 80) == (53, 15, 97, 59)
    assert stackgan_crop_box((2.0, 3.0, 40.0, 30.0), 90, 70) == (0, 0, 52, 48)        # top-left clip
    assert stackgan_crop_box((50.0, 60.0, 28.0, 36.0), 80, 100) == (37, 51, 80, 100)  # bottom-right
    assert stackgan_crop_box((10.5, 12.5, 21.0, 19.0), 64, 64) == (6, 7, 36, 37)      # int() of floats


def test_resize_shorter_side():
    im = Image.new("RGB", (60, 45))
    assert resize_shorter_side(im, 304).size == (405, 304)    # torchvision: int(304 * 60 / 45)
    assert resize_shorter_side(Image.new("RGB", (45, 61)), 30).size == (30, 40)
    assert resize_shorter_side(im, 0).size == (60, 45)


def test_archives_tgz_and_reed_targz_default_size_jpg(downloads, tmp_path):
    cub, reed = downloads
    cub_tgz = make_tgz(cub, tmp_path / "CUB_200_2011.tgz",
                       extra={"attributes.txt": b"1 has_bill_shape::curved\n"})
    reed_tgz = make_tgz(reed, tmp_path / "cvpr2016_cub.tar.gz")
    out = tmp_path / "cub"
    prepare_cub(cub_tgz, reed_tgz, out, image_format="jpg", **QUIET)
    _check_standard_output(out, ext=".jpg")
    ds = read_dataset(out)
    for key, box in CUB_BOXES.items():
        w, h = box[2] - box[0], box[3] - box[1]
        size = ds.load_image(key).size
        assert min(size) == 304 and size == ((304, int(304 * h / w)) if w <= h else (int(304 * w / h), 304))
    assert _leftovers(tmp_path) == []


def test_parent_folders_accepted(downloads, tmp_path):
    cub, reed = downloads
    prepare_cub(cub.parent, reed / "text_c10", tmp_path / "cub", size=16, **QUIET)
    _check_standard_output(tmp_path / "cub")


@pytest.mark.parametrize("as_zip", [True, False])
def test_attngan_birds(downloads, tmp_path, as_zip):
    cub, _ = downloads
    birds_parent = tmp_path / "attngan"
    birds = make_attngan_birds(birds_parent, TRAIN_KEYS, TEST_KEYS, text_as_zip=as_zip)
    # birds.zip as AttnGAN ships it: birds/text.zip inside, plus a Python-3 captions.pickle we never read
    (birds / "captions.pickle").write_bytes(pickle.dumps([[[1, 2]], [[3]], {0: "a"}, {"a": 0}]))
    source = make_zip(birds, tmp_path / "birds.zip") if as_zip else birds
    out = tmp_path / "cub"
    info = prepare_cub(cub, source, out, size=24, **QUIET)
    assert info["caption_format"] == "attngan"
    _check_standard_output(out)


def test_cli_script(downloads, tmp_path, capsys):
    cub, reed = downloads
    spec = importlib.util.spec_from_file_location("prepare_cub", REPO / "data_scripts" / "prepare_cub.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "cub"
    assert script.main(["--cub", str(cub), "--captions", str(reed), "--out", str(out),
                        "--size", "20", "--format", "png"]) == 0
    printed = capsys.readouterr().out
    assert "4 train images (2 classes), 2 test images (1 classes)" in printed
    _check_standard_output(out)
    # an existing --out is an error unless --overwrite
    assert script.main(["--cub", str(cub), "--captions", str(reed), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert script.main(["--cub", str(cub), "--captions", str(reed), "--out", str(out),
                        "--size", "12", "--overwrite"]) == 0
    assert min(read_dataset(out).load_image(CUB_KEYS[0]).size) == 12
    assert _leftovers(tmp_path) == []


def test_cli_help_names_the_downloads():
    r = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_cub.py"), "--help"],
                       capture_output=True, text=True, check=True)
    for name in ("CUB_200_2011.tgz", "cvpr2016_cub", "text_c10", "birds.zip", "--size", "--format"):
        assert name in r.stdout
    source = (REPO / "data_scripts" / "prepare_cub.py").read_text()
    assert "http" not in source and "www." not in source


def test_full_data_split_counts_are_checked(downloads, tmp_path, monkeypatch, capsys):
    cub, reed = downloads
    monkeypatch.setattr(real_datasets, "CUB_FULL", (6, 4, 1))   # pretend 6 images is the full data
    info = prepare_cub(cub, reed, tmp_path / "cub", size=8, progress=False)
    assert len(info["warnings"]) == 1 and "differ from the standard 4 / 1" in info["warnings"][0]
    assert "WARNING: split sizes 4 train / 2 test" in capsys.readouterr().out


# -------------------------------------------------------------------------------- bad inputs
def _fails(match: str, *args, **kwargs) -> DatasetPreparationError:
    with pytest.raises(DatasetPreparationError, match=match) as e:
        prepare_cub(*args, **{**QUIET, "size": 8, **kwargs})
    return e.value


def test_missing_input_path(downloads, tmp_path):
    _, reed = downloads
    _fails(r"--cub .*nowhere.*not found \(expected CUB_200_2011.tgz", tmp_path / "nowhere", reed,
           tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_missing_metadata_file_is_named(downloads, tmp_path):
    cub, reed = downloads
    (cub / "bounding_boxes.txt").unlink()
    _fails(r"bounding_boxes.txt: not found \(expected lines '<image id> <x> <y>", cub, reed, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_wrong_archive(downloads, tmp_path):
    _, reed = downloads
    junk = tmp_path / "junk"
    (junk / "docs").mkdir(parents=True)
    (junk / "docs" / "readme.txt").write_text("not a bird\n")
    (junk / "photo.jpg").write_bytes(b"\xff\xd8")
    tgz = make_tgz(junk, tmp_path / "random.tgz")
    _fails(r"random.tgz: no CUB_200_2011/images.txt", tgz, reed, tmp_path / "out")
    not_archive = tmp_path / "CUB_200_2011.tgz"
    not_archive.write_bytes(b"this is an HTML error page, not an archive")
    _fails(r"CUB_200_2011.tgz is neither a folder nor a .tgz", not_archive, reed, tmp_path / "out")
    assert _leftovers(tmp_path) == []


def test_truncated_archive(downloads, tmp_path):
    cub, reed = downloads
    tgz = make_tgz(cub, tmp_path / "CUB_200_2011.tgz")
    data = tgz.read_bytes()
    tgz.write_bytes(data[: len(data) // 2])
    _fails(r"CUB_200_2011.tgz: damaged or unreadable archive", tgz, reed, tmp_path / "out")


def test_unsafe_archive_member(downloads, tmp_path):
    cub, reed = downloads
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(cub / "images.txt", arcname="../escaped.txt")
    _fails(r"evil.tgz: unsafe path", evil, reed, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_image_without_caption_is_a_counted_warning(tmp_path, capsys):
    cub = make_cub(tmp_path)
    missing = CUB_KEYS[2]
    reed = make_reed(tmp_path, CUB_KEYS, CUB_TRAIN_CLASSES, CUB_TEST_CLASSES, skip=(missing,))
    info = prepare_cub(cub, reed, tmp_path / "out", size=8, progress=False)
    assert len(info["warnings"]) == 1
    assert f"text_c10/{missing}.txt: no caption file" in info["warnings"][0]
    assert f"text_c10/{missing}.txt: no caption file" in capsys.readouterr().out
    ds = read_dataset(tmp_path / "out")
    assert missing not in [r.key for r in ds.records] and len(ds.records) == 5
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["warnings"] == info["warnings"]


def test_short_caption_file_is_a_counted_warning(tmp_path):
    cub = make_cub(tmp_path)
    short = CUB_KEYS[0]
    reed = make_reed(tmp_path, CUB_KEYS, CUB_TRAIN_CLASSES, CUB_TEST_CLASSES, n_lines={short: 9})
    info = prepare_cub(cub, reed, tmp_path / "out", **{**QUIET, "size": 8})
    assert len(info["warnings"]) == 1
    assert f"{short}.txt: 9 non-empty caption lines, 10 expected" in info["warnings"][0]
    assert short not in [r.key for r in read_dataset(tmp_path / "out").records]


def test_class_list_naming_unknown_class(downloads, tmp_path):
    cub, reed = downloads
    (reed / "testclasses.txt").write_text("001.Black_footed_Albatross\n201.Dodo\n")
    _fails(r"testclasses.txt:2: class '201.Dodo' does not exist", cub, reed, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_missing_class_list(downloads, tmp_path):
    cub, reed = downloads
    (reed / "trainvalclasses.txt").unlink()
    _fails(r"trainvalclasses.txt: not found; Reed's class list is expected beside", cub, reed, tmp_path / "out")


def test_label_disagrees_with_image_folder(downloads, tmp_path):
    cub, reed = downloads
    lines = (cub / "image_class_labels.txt").read_text().splitlines()
    lines[0] = "1 2"
    (cub / "image_class_labels.txt").write_text("\n".join(lines) + "\n")
    _fails(r"image_class_labels.txt: image 1 .* is labelled class 2 \(002.Laysan_Albatross\), but "
           r"images.txt files it under 001.Black_footed_Albatross", cub, reed, tmp_path / "out")


def test_caption_file_in_another_class(downloads, tmp_path):
    cub, reed = downloads
    key = CUB_KEYS[0]
    moved = reed / "text_c10" / "002.Laysan_Albatross" / f"{key.split('/')[1]}.txt"
    os.replace(reed / "text_c10" / f"{key}.txt", moved)
    _fails(r"002.Laysan_Albatross/Black_Footed_Albatross_0046_18.txt: caption file is filed under "
           r"class '002.Laysan_Albatross', but images.txt/image_class_labels.txt put", cub, reed,
           tmp_path / "out")


def test_attngan_key_for_unknown_image(downloads, tmp_path):
    cub, _ = downloads
    birds = make_attngan_birds(tmp_path, TRAIN_KEYS + ["002.Laysan_Albatross/Laysan_Albatross_9999_1"],
                               TEST_KEYS)
    _fails(r"train/filenames.pickle: key '002.Laysan_Albatross/Laysan_Albatross_9999_1' names no image",
           cub, birds, tmp_path / "out")


def test_malicious_pickle_is_refused(downloads, tmp_path):
    cub, _ = downloads
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    birds = make_attngan_birds(tmp_path, TRAIN_KEYS, TEST_KEYS)
    (birds / "test" / "filenames.pickle").write_bytes(pickle.dumps([Evil()], protocol=2))
    err = _fails(r"test/filenames.pickle: refused to load this pickle \(it tries to import "
                 r"(posix|os|nt)\.system\)", cub, birds, tmp_path / "out")
    assert "filenames.pickle" in str(err)
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_plain_pickle_loader(tmp_path):
    f = tmp_path / "p.pickle"
    f.write_bytes(pickle.dumps({"a": [1, 2.5, (b"x", None)]}, protocol=3))
    assert load_plain_pickle(f) == {"a": [1, 2.5, ("x", None)]}
    f.write_bytes(pickle.dumps({1, 2}, protocol=4))           # a set needs no import in protocol 4
    with pytest.raises(DatasetPreparationError, match="holds a set"):
        load_plain_pickle(f)
    f.write_bytes(pickle.dumps(np.zeros(2)))
    with pytest.raises(DatasetPreparationError, match=r"p.pickle: refused .*numpy"):
        load_plain_pickle(f)


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(downloads, tmp_path):
    cub, reed = downloads
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    _fails(r"exists and is not a dataset folder", cub, reed, precious, overwrite=True)
    assert (precious / "thesis.tex").exists()
