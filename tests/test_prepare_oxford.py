"""data_scripts/prepare_oxford.py and s2i_lib.data.real_datasets on a miniature Oxford-102."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from real_data_fixtures import (OXFORD_KEYS, OXFORD_LABELS, captions_for, make_reed, make_tgz,
                                oxford_downloads)
from s2i_lib.data import real_datasets
from s2i_lib.data.layout import read_dataset
from s2i_lib.data.real_datasets import DatasetPreparationError, prepare_oxford

REPO = Path(__file__).resolve().parents[1]
QUIET = dict(progress=False, log=lambda msg: None, workers=2)


@pytest.fixture
def downloads(tmp_path):
    return oxford_downloads(tmp_path / "downloads")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def _check_output(out: Path, ext: str = ".png") -> None:
    ds = read_dataset(out)
    assert ds.name == "oxford" and ds.info["image_ext"] == ext
    assert [r.key for r in ds.records] == OXFORD_KEYS          # image number order
    assert [r.key for r in ds.split("test")] == [k for k in OXFORD_KEYS if k.startswith("class_00001/")]
    assert ds.info["counts"] == {"train": {"images": 4, "classes": 2}, "test": {"images": 3, "classes": 1}}
    for r, label in zip(ds.records, OXFORD_LABELS):
        assert r.class_name == f"class_{label:05d}" and r.class_id == label - 1
        assert r.captions == tuple(captions_for(r.key))
        assert r.attributes is None and r.mentions is None
    assert ds.classes == [{"id": i, "name": f"class_{i + 1:05d}", "split": s, "attributes": None}
                          for i, s in enumerate(["test", "train", "train"])]
    assert ds.info["warnings"] == [] and ds.info["crop"] is None


def test_folders_no_crop(downloads, tmp_path):
    jpg, mat, reed = downloads
    out = tmp_path / "oxford"
    prepare_oxford(jpg, mat, reed, out, size=0, **QUIET)
    _check_output(out)
    ds = read_dataset(out)
    for i, key in enumerate(OXFORD_KEYS, 1):
        with Image.open(jpg / f"image_{i:05d}.jpg") as src:
            assert np.array_equal(np.asarray(ds.load_image(key)), np.asarray(src.convert("RGB")))
    assert _leftovers(tmp_path) == []


def test_archives_and_parent_folder(downloads, tmp_path):
    jpg, mat, reed = downloads
    images_tgz = make_tgz(jpg, tmp_path / "102flowers.tgz")
    reed_tgz = make_tgz(reed, tmp_path / "cvpr2016_flowers.tar.gz")
    out = tmp_path / "oxford"
    info = prepare_oxford(images_tgz, mat, reed_tgz, out, size=20, image_format="jpg", **QUIET)
    _check_output(out, ext=".jpg")
    assert all(min(read_dataset(out).load_image(k).size) == 20 for k in OXFORD_KEYS)
    assert info["caption_folder"].startswith(str(reed_tgz) + ":")
    prepare_oxford(jpg.parent, mat, reed, tmp_path / "oxford2", size=20, **QUIET)   # parent of jpg/
    _check_output(tmp_path / "oxford2")
    assert _leftovers(tmp_path) == []


def test_cli_script_and_help(downloads, tmp_path, capsys):
    jpg, mat, reed = downloads
    spec = importlib.util.spec_from_file_location("prepare_oxford", REPO / "data_scripts" / "prepare_oxford.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "oxford"
    assert script.main(["--images", str(jpg), "--labels", str(mat), "--captions", str(reed),
                        "--out", str(out), "--size", "16"]) == 0
    assert "4 train images (2 classes), 3 test images (1 classes)" in capsys.readouterr().out
    _check_output(out)
    r = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_oxford.py"), "--help"],
                       capture_output=True, text=True, check=True)
    for name in ("102flowers.tgz", "imagelabels.mat", "cvpr2016_flowers", "text_c10", "--format"):
        assert name in r.stdout
    source = (REPO / "data_scripts" / "prepare_oxford.py").read_text()
    assert "http" not in source and "www." not in source


def test_full_data_split_counts_are_checked(downloads, tmp_path, monkeypatch):
    jpg, mat, reed = downloads
    monkeypatch.setattr(real_datasets, "OXFORD_FULL", (7, 4, 3))
    assert prepare_oxford(jpg, mat, reed, tmp_path / "a", size=8, **QUIET)["warnings"] == []
    monkeypatch.setattr(real_datasets, "OXFORD_FULL", (7, 5, 2))
    warnings = prepare_oxford(jpg, mat, reed, tmp_path / "b", size=8, **QUIET)["warnings"]
    assert warnings == ["split sizes 4 train / 3 test differ from the standard 5 / 2 for the full oxford data"]


# -------------------------------------------------------------------------------- bad inputs
def _fails(match: str, *args, **kwargs) -> None:
    with pytest.raises(DatasetPreparationError, match=match):
        prepare_oxford(*args, **{**QUIET, "size": 8, **kwargs})


def test_missing_labels_file(downloads, tmp_path):
    jpg, _, reed = downloads
    _fails(r"--labels .*nolabels.mat: not found \(expected imagelabels.mat\)", jpg,
           tmp_path / "nolabels.mat", reed, tmp_path / "out")


def test_labels_without_labels_variable(downloads, tmp_path):
    from scipy.io import savemat
    jpg, _, reed = downloads
    bad = tmp_path / "setid.mat"
    savemat(bad, {"trnid": np.arange(3)})
    _fails(r"setid.mat: no variable 'labels' \(found \['trnid'\]\)", jpg, bad, reed, tmp_path / "out")
    not_mat = tmp_path / "imagelabels.mat"
    not_mat.write_text("<html>")
    _fails(r"imagelabels.mat: not a MATLAB .mat file", jpg, not_mat, reed, tmp_path / "out")


def test_wrong_images_archive(downloads, tmp_path):
    _, mat, reed = downloads
    other = tmp_path / "segmim"
    other.mkdir()
    (other / "segmim_00001.jpg").write_bytes(b"\xff\xd8")
    tgz = make_tgz(other, tmp_path / "102segmentations.tgz")
    _fails(r"102segmentations.tgz: no image_XXXXX.jpg files found", tgz, mat, reed, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_missing_image_and_caption_are_counted_warnings(downloads, tmp_path, capsys):
    jpg, mat, reed = downloads
    (jpg / "image_00004.jpg").unlink()
    (reed / "text_c10" / "class_00002" / "image_00005.txt").unlink()
    info = prepare_oxford(jpg, mat, reed, tmp_path / "out", size=8, progress=False)
    assert len(info["warnings"]) == 2
    assert "image_00004.jpg: image file missing; image class_00003/image_00004 skipped" in info["warnings"][1]
    assert "class_00002/image_00005.txt: no caption file" in info["warnings"][0]
    printed = capsys.readouterr().out
    assert printed.count("WARNING:") == 2 and "2 warnings" in printed
    keys = [r.key for r in read_dataset(tmp_path / "out").records]
    assert keys == [k for k in OXFORD_KEYS if not k.endswith(("image_00004", "image_00005"))]


def test_image_without_label_is_a_counted_warning(downloads, tmp_path):
    jpg, mat, reed = downloads
    Image.new("RGB", (10, 10)).save(jpg / "image_00099.jpg")
    info = prepare_oxford(jpg, mat, reed, tmp_path / "out", size=8, **QUIET)
    assert len(info["warnings"]) == 1 and "image_00099.jpg: no label in" in info["warnings"][0]


def test_short_caption_file(downloads, tmp_path):
    jpg, mat, reed = downloads
    f = reed / "text_c10" / "class_00001" / "image_00003.txt"
    f.write_text("\n".join(captions_for("x", 10)[:4]) + "\n\n\n\n\n\n")
    info = prepare_oxford(jpg, mat, reed, tmp_path / "out", size=8, **QUIET)
    assert len(info["warnings"]) == 1
    assert "image_00003.txt: 4 non-empty caption lines, 10 expected" in info["warnings"][0]


def test_caption_file_disagrees_with_label(downloads, tmp_path):
    jpg, mat, reed = downloads
    os.replace(reed / "text_c10" / "class_00001" / "image_00001.txt",
               reed / "text_c10" / "class_00003" / "image_00001.txt")
    _fails(r"class_00003/image_00001.txt: caption file is filed under class 'class_00003', but "
           r"imagelabels.mat put image_00001 in class 'class_00001'", jpg, mat, reed, tmp_path / "out")


def test_class_list_naming_unknown_class(downloads, tmp_path):
    jpg, mat, reed = downloads
    (reed / "trainvalclasses.txt").write_text("class_00002\nclass_00003\nclass_00150\n")
    _fails(r"trainvalclasses.txt:3: class 'class_00150' does not exist", jpg, mat, reed, tmp_path / "out")


def test_class_in_both_lists(downloads, tmp_path):
    jpg, mat, reed = downloads
    (reed / "testclasses.txt").write_text("class_00001\nclass_00002\n")
    _fails(r"class 'class_00002' is also listed in", jpg, mat, reed, tmp_path / "out")


def test_cub_captions_for_flowers(downloads, tmp_path):
    jpg, mat, _ = downloads
    from real_data_fixtures import CUB_KEYS, CUB_TEST_CLASSES, CUB_TRAIN_CLASSES
    reed_cub = make_reed(tmp_path, CUB_KEYS, CUB_TRAIN_CLASSES, CUB_TEST_CLASSES)
    _fails(r"trainvalclasses.txt:1: class '002.Laysan_Albatross' does not exist", jpg, mat, reed_cub,
           tmp_path / "out")
