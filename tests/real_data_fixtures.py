"""Miniature CUB-200-2011, Oxford-102 and caption downloads, in the exact official formats.

Each helper writes into a folder and returns what the tests need to check the output against.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUND = (0, 160, 0)   # green
BIRD = (220, 30, 30)       # red: the bounding-box region

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# (class number, file, (width, height), bbox x y w h as in bounding_boxes.txt, expected crop box)
# The expected boxes are worked out by hand from r = int(0.75 max(w, h)), centre (int(x + w/2),
# int(y + h/2)), box [cx - r, cy - r, cx + r, cy + r] clipped to the image.
CUB_IMAGES = [
    (1, "Black_Footed_Albatross_0046_18.jpg", (100, 80), (60.0, 27.0, 30.0, 20.0), (53, 15, 97, 59)),
    (1, "Black_Footed_Albatross_0009_34.jpg", (90, 70), (2.0, 3.0, 40.0, 30.0), (0, 0, 52, 48)),
    (2, "Laysan_Albatross_0044_784.jpg", (80, 100), (50.0, 60.0, 28.0, 36.0), (37, 51, 80, 100)),
    (2, "Laysan_Albatross_0002_1027.jpg", (64, 64), (10.5, 12.5, 21.0, 19.0), (6, 7, 36, 37)),
    (3, "Sooty_Albatross_0031_1066.jpg", (72, 96), (0.0, 0.0, 72.0, 96.0), (0, 0, 72, 96)),
    (3, "Sooty_Albatross_0001_1071.jpg", (96, 72), (20.0, 10.0, 30.0, 40.0), (5, 0, 65, 60)),
]
CUB_TEST_CLASSES = ["001.Black_footed_Albatross"]
CUB_TRAIN_CLASSES = ["002.Laysan_Albatross", "003.Sooty_Albatross"]


def cub_key(cls: int, file: str) -> str:
    return f"{CUB_CLASSES[cls - 1]}/{Path(file).stem}"


CUB_KEYS = [cub_key(c, f) for c, f, *_ in CUB_IMAGES]
CUB_BOXES = {cub_key(c, f): box for c, f, _, _, box in CUB_IMAGES}
CUB_BBOXES = {cub_key(c, f): bbox for c, f, _, bbox, _ in CUB_IMAGES}


def captions_for(key: str, n: int = 10) -> list[str]:
    return [f"caption {i} of {key.split('/')[-1].lower()}, a bird with a red body." for i in range(n)]


def _jpeg(path: Path, size: tuple[int, int], bbox: tuple[float, ...] | None, seed: int) -> None:
    w, h = size
    rng = np.random.default_rng(seed)
    a = np.empty((h, w, 3), np.uint8)
    a[:] = BACKGROUND
    if bbox is not None:
        x, y, bw, bh = bbox
        a[int(y):int(y + bh), int(x):int(x + bw)] = BIRD
    a = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="JPEG", quality=95)


def make_cub(parent: Path, images=CUB_IMAGES, classes=CUB_CLASSES) -> Path:
    """``parent/CUB_200_2011/`` as in CUB_200_2011.tgz (plus the archive's top-level attributes.txt)."""
    root = Path(parent) / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    lines = {"images.txt": [], "image_class_labels.txt": [], "bounding_boxes.txt": [],
             "train_test_split.txt": []}
    for i, (cls, file, size, bbox, _) in enumerate(images, 1):
        rel = f"{classes[cls - 1]}/{file}"
        _jpeg(root / "images" / rel, size, bbox, seed=i)
        lines["images.txt"].append(f"{i} {rel}")
        lines["image_class_labels.txt"].append(f"{i} {cls}")
        lines["bounding_boxes.txt"].append(f"{i} " + " ".join(f"{v:.1f}" for v in bbox))
        lines["train_test_split.txt"].append(f"{i} {i % 2}")
    lines["classes.txt"] = [f"{i} {c}" for i, c in enumerate(classes, 1)]
    for name, content in lines.items():
        (root / name).write_text("".join(line + "\n" for line in content))
    (root / "README").write_text("CUB-200-2011 miniature\n")
    (root / "attributes").mkdir()
    (root / "attributes" / "certainties.txt").write_text("1 not visible\n")
    (Path(parent) / "attributes.txt").write_text("1 has_bill_shape::curved_(up_or_down)\n")
    return root


def make_reed(parent: Path, keys: list[str], train: list[str], test: list[str],
              name: str = "cvpr2016_cub", n_lines: dict[str, int] | None = None,
              skip: tuple[str, ...] = ()) -> Path:
    """Reed et al.'s ``<name>/text_c10/<class>/<image>.txt`` with the class lists beside text_c10."""
    root = Path(parent) / name
    for key in keys:
        if key in skip:
            continue
        f = root / "text_c10" / f"{key}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("\n".join(captions_for(key, (n_lines or {}).get(key, 10))) + "\n")
    other = root / "text_c10" / keys[0].split("/")[0]
    other.mkdir(parents=True, exist_ok=True)
    (other / "notes.h5").write_bytes(b"\x89HDF")  # not a caption file: ignored
    (root / "trainvalclasses.txt").write_text("".join(c + "\n" for c in train))
    (root / "testclasses.txt").write_text("".join(c + "\n" for c in test))
    (root / "allclasses.txt").write_text("".join(c + "\n" for c in sorted(train + test)))
    (root / "word_c10").mkdir()
    return root


def py2_pickle(keys: list[str]) -> bytes:
    """A list of byte strings as Python 2's cPickle writes it with protocol 2 (SHORT_BINSTRING)."""
    out = bytearray(b"\x80\x02]q\x01(")         # PROTO 2, EMPTY_LIST, BINPUT 1, MARK
    for i, k in enumerate(keys, 2):
        b = k.encode("utf-8")
        out += b"U" + bytes([len(b)]) + b + b"q" + bytes([i])
    out += b"e."                                 # APPENDS, STOP
    return bytes(out)


def make_attngan_birds(parent: Path, train_keys: list[str], test_keys: list[str],
                       text_as_zip: bool = False) -> Path:
    """AttnGAN's ``birds/`` metadata: text/ (or text.zip) and {train,test}/filenames.pickle."""
    root = Path(parent) / "birds"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "train" / "filenames.pickle").write_bytes(py2_pickle(train_keys))
    (root / "test" / "filenames.pickle").write_bytes(py2_pickle(test_keys))
    (root / "example_filenames.txt").write_text("text/001.Black_footed_Albatross/x\n")
    texts = {f"text/{k}.txt": "\n".join(captions_for(k)) + "\n" for k in train_keys + test_keys}
    if text_as_zip:
        with zipfile.ZipFile(root / "text.zip", "w") as zf:
            for name, content in texts.items():
                zf.writestr(name, content)
    else:
        for name, content in texts.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content)
    return root


def make_tgz(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    """``archive`` holding ``folder`` under its own name (like ``tar czf x.tgz folder``)."""
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return archive


def make_zip(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent).as_posix())
    return archive


# ------------------------------------------------------------------------------------- Oxford
OXFORD_LABELS = [1, 2, 1, 3, 2, 3, 1]      # image_00001 ... image_00007
OXFORD_TEST_CLASSES = ["class_00001"]
OXFORD_TRAIN_CLASSES = ["class_00002", "class_00003"]
OXFORD_KEYS = [f"class_{c:05d}/image_{i:05d}" for i, c in enumerate(OXFORD_LABELS, 1)]


def make_oxford(parent: Path, labels: list[int] = OXFORD_LABELS) -> tuple[Path, Path]:
    """``parent/jpg/image_XXXXX.jpg`` as in 102flowers.tgz and ``parent/imagelabels.mat``."""
    from scipy.io import savemat
    jpg = Path(parent) / "jpg"
    for i in range(1, len(labels) + 1):
        _jpeg(jpg / f"image_{i:05d}.jpg", (40 + 4 * i, 56 - 2 * i), None, seed=100 + i)
    mat = Path(parent) / "imagelabels.mat"
    savemat(mat, {"labels": np.array([labels], dtype=np.uint8)})
    return jpg, mat


def oxford_downloads(parent: Path) -> tuple[Path, Path, Path]:
    """The three Oxford-102 downloads (images folder, imagelabels.mat, Reed captions) in ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    jpg, mat = make_oxford(parent)
    return jpg, mat, make_reed(parent, OXFORD_KEYS, OXFORD_TRAIN_CLASSES, OXFORD_TEST_CLASSES, name="cvpr2016_flowers")
