"""Turn the official CUB-200-2011 and Oxford-102 downloads into the project's dataset layout.

The user downloads the archives (the software never does); ``data_scripts/prepare_cub.py`` and
``data_scripts/prepare_oxford.py`` call :func:`prepare_cub` and :func:`prepare_oxford`.

Inputs (an archive or its extracted folder each):

- CUB-200-2011: ``CUB_200_2011.tgz`` -> ``CUB_200_2011/{images.txt, classes.txt,
  image_class_labels.txt, bounding_boxes.txt, images/<class>/<image>.jpg}``.
- Oxford-102: ``102flowers.tgz`` -> ``jpg/image_XXXXX.jpg`` and ``imagelabels.mat`` (``labels``,
  1..102, one per image).
- Captions, in either common form:
  Reed et al. (``cvpr2016_cub`` / ``cvpr2016_flowers``): ``text_c10/<class>/<image>.txt`` with the
  class lists ``trainvalclasses.txt`` and ``testclasses.txt`` beside ``text_c10``;
  AttnGAN (``birds.zip``): ``birds/text/<class>/<image>.txt`` (or ``birds/text.zip``) with the key
  lists ``birds/{train,test}/filenames.pickle``.

Pickles from the internet can run arbitrary code when loaded, so they are read with an unpickler
that cannot import anything (:func:`load_plain_pickle`). The downloads are untrusted files, so what a
small file can make this code allocate is bounded before it is allocated: the items a pickle expands
to, the class numbers of ``imagelabels.mat``, the bytes an archive unpacks to and the pixels an image
decodes to (the ``MAX_*`` constants). Every problem is either an error that
names the file (:class:`DatasetPreparationError`) or, where skipping one image is reasonable, a
counted warning that names the file, printed and kept in ``dataset.json["warnings"]``. The dataset
is built in a temporary folder beside the output and renamed into place only when complete.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import struct
import sys
import tarfile
import uuid
import warnings as pywarnings   # `warnings` names the list of warnings below
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from PIL import Image
from ..progress import tqdm

from .layout import ImageRecord, write_captions, write_image, write_index

CAPTIONS_PER_IMAGE = 10
DEFAULT_SIZE = 304  # the paper's Resize(304) = int(256 * 76 / 64)
CROP_RULE = ("StackGAN bounding-box crop: r = int(0.75 * max(w, h)), centre (int(x + w/2), "
             "int(y + h/2)), box [cx - r, cy - r, cx + r, cy + r] clipped to the image")

# The standard splits: (images in the full download, expected train images, expected test images)
CUB_FULL = (11788, 8855, 2933)
OXFORD_FULL = (8189, 7034, 1155)

# Limits for hostile downloads (a few hundred bytes or megabytes that would expand to gigabytes).
# Each sits far above what the real downloads need, far below what would exhaust a machine.
MAX_PICKLE_ITEMS = 1_000_000      # list entries a pickle may expand to; CUB's key lists hold 11,788
MAX_PICKLE_DEPTH = 32             # a key list is a flat list (depth 1)
OXFORD_CLASSES = 102
MAX_OXFORD_IMAGES = 99_999        # image_XXXXX.jpg: five digits
MAX_MAT_VARIABLE_BYTES = 16 * 2**20   # inflated; the real 'labels' (8,189 doubles) is 64 KB
# Archives are checked on the sizes their members declare (tarfile and zipfile never produce more),
# before a member is written. The largest file extracted from the real downloads is a caption
# archive or pickle of a few MB (photos are < 1 MB); CUB_200_2011.tgz unpacks to ~1.2 GB and
# 102flowers.tgz to ~350 MB in all.
MAX_MEMBER_BYTES = 100 * 2**20
MAX_EXTRACT_BYTES = 4 * 2**30
# Real CUB and Oxford photos are at most a few megapixels; a 40-megapixel RGB image already
# decodes to 120 MB per thread.
MAX_IMAGE_PIXELS = 40_000_000

CUB_FILES = {
    "images.txt": "lines '<image id> <class folder>/<image>.jpg'",
    "classes.txt": "lines '<class id> <class folder>', e.g. '1 001.Black_footed_Albatross'",
    "image_class_labels.txt": "lines '<image id> <class id>'",
    "bounding_boxes.txt": "lines '<image id> <x> <y> <width> <height>'",
}


class DatasetPreparationError(ValueError):
    """A problem with the downloaded files; the message names the file and what was expected."""


Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# =========================================================================== safe unpickling
class PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that builds only lists, tuples, dicts, strings, bytes and numbers.

    A pickle can name any importable callable (``os.system``...) and have it called while it
    loads; every such reference goes through ``find_class``, which here always refuses.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it tries to import {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses a persistent id")


def _decode(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _plain(obj: Any, path: Path) -> Any:
    """Check that ``obj`` holds plain data only, and turn Python-2 byte strings into str.

    The copy repeats what the pickle shares: a few hundred bytes of ``b = [a] * 100; c = [b] * 100
    ...`` would copy into gigabytes, and a list may even contain itself. So the items copied and
    the depth are counted, and the pickle refused before either budget is exceeded.
    """
    left = MAX_PICKLE_ITEMS

    def walk(x: Any, depth: int) -> Any:
        nonlocal left
        if depth > MAX_PICKLE_DEPTH:
            raise DatasetPreparationError(
                f"{path}: refused: the pickle nests more than {MAX_PICKLE_DEPTH} levels deep (or "
                f"contains itself); a key list is a flat list of strings")
        if isinstance(x, bytes):
            return _decode(x)
        if isinstance(x, (str, int, float, bool, type(None))):
            return x
        if isinstance(x, (list, tuple, dict)):
            left -= len(x)
            if left < 0:
                raise DatasetPreparationError(
                    f"{path}: refused: the pickle expands to more than {MAX_PICKLE_ITEMS:,} items "
                    f"(lists repeating shared references?); CUB's key lists hold 11,788 in all")
            if isinstance(x, dict):
                return {walk(k, depth + 1): walk(v, depth + 1) for k, v in x.items()}
            items = [walk(v, depth + 1) for v in x]
            return items if isinstance(x, list) else tuple(items)
        raise DatasetPreparationError(f"{path}: the pickle holds a {type(x).__name__}; only lists, "
                                      f"tuples, dicts, strings and numbers are accepted")

    return walk(obj, 0)


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle that may only contain plain data (never imports or calls anything).

    Python-2 pickles (StackGAN/AttnGAN) are read with ``encoding="bytes"`` and their byte strings
    decoded (UTF-8, else Latin-1).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetPreparationError(f"{path} not found") from None
    try:
        obj = PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RecursionError:
        raise DatasetPreparationError(f"{path}: the pickle is nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - any failure of a hostile/corrupt pickle is the file's fault
        raise DatasetPreparationError(
            f"{path}: refused to load this pickle ({e}); only plain data (lists, strings, "
            f"numbers) is accepted, nothing that imports code") from None
    return _plain(obj, path)


# ========================================================================== image processing
def stackgan_crop_box(bbox: tuple[float, float, float, float], width: int,
                      height: int) -> tuple[int, int, int, int]:
    """StackGAN's CUB crop: a square of side ``2r`` around the box centre, clipped to the image.

    ``bbox`` is ``(x, y, w, h)`` as in ``bounding_boxes.txt``; returns ``(left, top, right, bottom)``.
    """
    x, y, w, h = bbox
    r = int(0.75 * max(w, h))
    cx, cy = int(x + w / 2), int(y + h / 2)
    return (max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r))


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (torchvision ``Resize(size)``); 0 keeps the size."""
    w, h = image.size
    if size <= 0 or min(w, h) == size:
        return image
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return image.resize(new, Image.BILINEAR)


@dataclass(frozen=True)
class _Item:
    """One image of the download, before captions and split are attached."""
    key: str                    # "<class>/<image>"
    class_name: str
    class_id: int
    source: Path
    bbox: tuple[float, float, float, float] | None = None


def _refuse_bomb(path: Path, detail: str) -> DatasetPreparationError:
    # an error, not a skipped image: no real photo of these datasets comes near the limit
    return DatasetPreparationError(f"{path}: refusing to decode this image: {detail}")


def _process_image(job: tuple) -> str | None:
    """Decode, crop, resize and write one image; returns a warning for a damaged image.

    Raises :class:`DatasetPreparationError` for an image over :data:`MAX_IMAGE_PIXELS`.
    """
    item, captions, root, size, ext = job
    try:
        with Image.open(item.source) as src:   # reads the header only
            w, h = src.size
            if w * h > MAX_IMAGE_PIXELS:
                raise _refuse_bomb(item.source, f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels), "
                                                f"over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} "
                                                f"megapixels for a photo (a decompression bomb?)")
            im = src.convert("RGB")
    except DatasetPreparationError:
        raise
    except FileNotFoundError:
        return f"{item.source}: image file missing; image {item.key} skipped"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # over twice PIL's own limit, or over a lower limit set by the caller
        raise _refuse_bomb(item.source, str(e)) from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
        return f"{item.source}: cannot decode the image ({e}); image {item.key} skipped"
    if item.bbox is not None:
        box = stackgan_crop_box(item.bbox, *im.size)
        if box[2] <= box[0] or box[3] <= box[1]:
            return (f"{item.source}: the bounding box {item.bbox} lies outside the "
                    f"{im.size[0]}x{im.size[1]} image; image {item.key} skipped")
        im = im.crop(box)
    write_image(root, item.key, resize_shorter_side(im, size), ext)
    write_captions(root, item.key, captions)
    return None


# =================================================================================== inputs
def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise DatasetPreparationError(f"{archive}: unsafe path {name!r} in the archive; not extracting it")
    return p


def _claim(archive: Path, name: str, size: int, total: int) -> int:
    """``total + size``, the bytes extracted with member ``name``, if within the limits."""
    if size > MAX_MEMBER_BYTES:
        raise DatasetPreparationError(
            f"{archive}: member {name!r} would unpack to {size:,} bytes, over the limit of "
            f"{MAX_MEMBER_BYTES:,} for one file (a decompression bomb?); refusing the archive")
    if total + size > MAX_EXTRACT_BYTES:
        raise DatasetPreparationError(
            f"{archive}: the files to extract add up to more than {MAX_EXTRACT_BYTES:,} bytes at "
            f"member {name!r} (a decompression bomb?); refusing the archive")
    return total + size


def _extract(archive: Path, dest: Path, want: Callable[[PurePosixPath], bool], log: Log) -> int:
    """Extract the regular files of ``archive`` that ``want`` accepts into ``dest``; count them.

    The members' declared sizes are checked against :data:`MAX_MEMBER_BYTES` and
    :data:`MAX_EXTRACT_BYTES` before they are written (a zip's, before any is written).
    """
    dest.mkdir(parents=True, exist_ok=True)
    n = total = 0
    log(f"reading {archive} ...")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = []
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    p = _safe_member_path(info.filename, archive)
                    if want(p):
                        total = _claim(archive, info.filename, info.file_size, total)
                        members.append((info, p))
                for info, p in members:
                    target = dest.joinpath(*p.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    n += 1
        elif tarfile.is_tarfile(archive):
            # stream mode: one sequential pass over the (gzip) archive, no seeking back; so each
            # member's size is checked from its header, before its data is read
            with tarfile.open(archive, "r|*") as tf:
                for m in tf:
                    if not m.isfile():   # directories are implied; links are never followed
                        continue
                    p = _safe_member_path(m.name, archive)
                    if want(p):
                        total = _claim(archive, m.name, m.size, total)
                        target = dest.joinpath(*p.parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tf.extractfile(m)
                        with open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        n += 1
        else:
            raise DatasetPreparationError(
                f"{archive} is neither a folder nor a .tgz/.tar.gz/.zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DatasetPreparationError(f"{archive}: damaged or unreadable archive ({e})") from e
    return n


def _open_input(path: str | os.PathLike, option: str, expected: str, space: "_BuildSpace",
                want: Callable[[PurePosixPath], bool], log: Log) -> Path:
    """A folder with the input's contents: the folder itself, or the needed part of an archive."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetPreparationError(f"{option} {path}: not found (expected {expected})")
    if path.is_dir():
        return path
    return space.extract(path, want, log)


def _find_dir(start: Path, test: Callable[[Path], bool], depth: int = 3) -> Path | None:
    """The first folder (breadth first, sorted) at most ``depth`` levels below ``start`` passing ``test``."""
    level = [start]
    for _ in range(depth + 1):
        for d in level:
            if test(d):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    return None


def _read_text_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


# ================================================================================ captions
@dataclass
class _CaptionSource:
    """Where the captions are and how the split is defined."""
    form: str                          # "reed" or "attngan"
    root: Path                         # the folder holding text_c10/ (Reed) or text/ (AttnGAN)
    text_dir: Path                     # <class>/<image>.txt below this
    class_lists: dict[str, Path] | None = None   # Reed: split -> class list file
    key_lists: dict[str, Path] | None = None     # AttnGAN: split -> filenames.pickle


def _locate_captions(path: Path, option: str, space: "_BuildSpace", log: Log) -> _CaptionSource:
    def reed(d: Path) -> bool:
        return (d / "text_c10").is_dir()

    def attngan(d: Path) -> bool:
        return ((d / "text").is_dir() or (d / "text.zip").is_file()) and (d / "train").is_dir()

    start = path.parent if path.name in ("text_c10", "text") else path
    root = _find_dir(start, lambda d: reed(d) or attngan(d))
    if root is None:
        raise DatasetPreparationError(
            f"{option} {path}: no caption folder found; expected Reed et al.'s text_c10/<class>/"
            f"<image>.txt with trainvalclasses.txt and testclasses.txt beside it, or AttnGAN's "
            f"birds/ folder (text/ or text.zip, train/filenames.pickle, test/filenames.pickle)")
    if reed(root):
        lists = {"train": root / "trainvalclasses.txt", "test": root / "testclasses.txt"}
        for f in lists.values():
            if not f.is_file():
                raise DatasetPreparationError(
                    f"{f}: not found; Reed's class list is expected beside {root / 'text_c10'} "
                    f"(one class folder name per line)")
        return _CaptionSource("reed", root, root / "text_c10", class_lists=lists)
    keys = {"train": root / "train" / "filenames.pickle", "test": root / "test" / "filenames.pickle"}
    for f in keys.values():
        if not f.is_file():
            raise DatasetPreparationError(
                f"{f}: not found; AttnGAN's split file is expected there (a pickled list of keys "
                f"like '002.Laysan_Albatross/Laysan_Albatross_0044_784')")
    text_dir = root / "text"
    if not text_dir.is_dir():  # birds.zip ships its captions as a nested birds/text.zip
        dest = space.extract(root / "text.zip", lambda p: p.suffix == ".txt", log)
        found = _find_dir(dest, lambda d: d.name == "text", depth=2)
        text_dir = found if found is not None else dest
    return _CaptionSource("attngan", root, text_dir, key_lists=keys)


def _index_caption_files(src: _CaptionSource) -> dict[str, list[str]]:
    """image name -> the class folders holding a caption file for it."""
    index: dict[str, list[str]] = {}
    for cls_dir in sorted(d for d in src.text_dir.iterdir() if d.is_dir()):
        for f in sorted(cls_dir.glob("*.txt")):
            index.setdefault(f.stem, []).append(cls_dir.name)
    return index


def _read_class_list(path: Path, known: set[str]) -> list[str]:
    names = []
    for line_no, line in enumerate(_read_text_lines(path), 1):
        name = line.strip()
        if not name:
            continue
        if name not in known:
            raise DatasetPreparationError(
                f"{path}:{line_no}: class {name!r} does not exist in the image data "
                f"(known classes look like {sorted(known)[0]!r})")
        names.append(name)
    return names


def _read_key_list(path: Path) -> list[str]:
    obj = load_plain_pickle(path)
    if not isinstance(obj, (list, tuple)) or not all(isinstance(k, str) for k in obj):
        raise DatasetPreparationError(
            f"{path}: expected a pickled list of keys like '002.Laysan_Albatross/Laysan_Albatross_0044_784'")
    return list(obj)


# ================================================================================ building
class _Warnings(list):
    def __init__(self, log: Log, show: Callable[[str], str] = str):
        super().__init__()
        self.log = log
        self.show = show

    def add(self, msg: str) -> None:
        msg = self.show(msg)
        self.append(msg)
        self.log(f"WARNING: {msg}")


class _BuildSpace:
    """A temporary folder beside ``out`` (build + scratch) that is renamed into place at the end."""

    def __init__(self, out: str | os.PathLike, overwrite: bool):
        self.out = Path(out).expanduser().absolute()
        if self.out.exists():
            if not overwrite:
                raise DatasetPreparationError(
                    f"--out {self.out} already exists; pass --overwrite to replace it")
            if not self.out.is_dir() or (any(self.out.iterdir())
                                         and not (self.out / "dataset.json").is_file()):
                raise DatasetPreparationError(
                    f"--out {self.out} exists and is not a dataset folder (no dataset.json); "
                    f"refusing to overwrite it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.work = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.build = self.work / "build"
        self.scratch = self.work / "scratch"
        self._extracted: list[tuple[str, str]] = []   # (scratch folder, archive it came from)

    def __enter__(self) -> "_BuildSpace":
        self.build.mkdir(parents=True)
        self.scratch.mkdir()
        return self

    def extract(self, archive: Path, want: Callable[[PurePosixPath], bool], log: Log) -> Path:
        """Extract the wanted members of ``archive`` into a scratch folder; return the folder."""
        dest = self.scratch / f"{len(self._extracted)}-{Path(archive).name}"
        self._extracted.append((str(dest), str(self.show(str(archive)))))
        _extract(Path(archive), dest, want, log)
        return dest

    def show(self, text: str) -> str:
        """``text`` with scratch paths written as ``<archive>:<member>`` (scratch is deleted at the end)."""
        for dest, archive in reversed(self._extracted):
            text = text.replace(dest + os.sep, archive + ":").replace(dest, archive)
        return text

    def publish(self) -> None:
        old = self.work / "previous"
        if self.out.exists():
            os.replace(self.out, old)
        try:
            os.replace(self.build, self.out)
        except OSError:
            if old.exists():
                os.replace(old, self.out)
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        if isinstance(exc, DatasetPreparationError):   # name archive members, not deleted scratch files
            raise DatasetPreparationError(self.show(str(exc))) from None


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _build(name: str, items: list[_Item], classes: list[tuple[int, str]], captions: _CaptionSource,
           space: _BuildSpace, size: int, image_format: str, workers: int | None,
           progress: bool, warnings: _Warnings, expected: tuple[int, int] | None,
           label_source: str, extra_info: dict, log: Log) -> dict:
    """Shared second half: split, captions, cross-checks, images, index.

    ``expected``: the standard (train, test) image counts when this is the full download.
    ``label_source``: the file(s) that assign images to classes, for messages.
    """
    class_names = {n for _, n in classes}
    by_key = {it.key: it for it in items}
    by_image: dict[str, list[str]] = {}
    for it in items:
        by_image.setdefault(it.key.split("/")[-1], []).append(it.key)

    # ---- split of every image
    split_of: dict[str, str] = {}
    class_split: dict[str, str] = {}
    if captions.form == "reed":
        seen: dict[str, Path] = {}
        for split, path in captions.class_lists.items():
            for cname in _read_class_list(path, class_names):
                if cname in seen:
                    raise DatasetPreparationError(
                        f"{path}: class {cname!r} is also listed in {seen[cname]}; a class belongs "
                        f"to one split")
                seen[cname] = path
                class_split[cname] = split
        for cname in sorted(class_names - set(class_split)):
            n = sum(it.class_name == cname for it in items)
            if n:
                warnings.add(f"class {cname!r} is in neither {captions.class_lists['train'].name} nor "
                             f"{captions.class_lists['test'].name} ({captions.root}); its {n} images skipped")
        split_of = {it.key: class_split[it.class_name] for it in items if it.class_name in class_split}
    else:
        for split, path in captions.key_lists.items():
            for key in _read_key_list(path):
                if key not in by_key:
                    other = by_image.get(key.split("/")[-1])
                    where = f" (it has that image as {other[0]!r})" if other else ""
                    raise DatasetPreparationError(
                        f"{path}: key {key!r} names no image in {label_source}{where}")
                if key in split_of and split_of[key] != split:
                    raise DatasetPreparationError(
                        f"{path}: key {key!r} is in both the train and the test split")
                split_of[key] = split
        for it in items:
            if it.key not in split_of:
                warnings.add(f"image {it.key} is in neither {captions.key_lists['train']} nor "
                             f"{captions.key_lists['test']}; skipped")
        for cname in sorted(class_names):
            splits = {split_of[it.key] for it in items if it.class_name == cname and it.key in split_of}
            if len(splits) == 1:
                class_split[cname] = splits.pop()
            elif len(splits) > 1:
                class_split[cname] = "mixed"
                warnings.add(f"class {cname!r} has images in both splits of {captions.root}; "
                             f"the class split is not zero-shot")

    # ---- captions, with the class cross-check
    caption_files = _index_caption_files(captions)
    used_files: set[tuple[str, str]] = set()
    kept = []
    for it in items:
        if it.key not in split_of:
            continue
        cname, image = it.key.split("/")
        path = captions.text_dir / cname / f"{image}.txt"
        if not path.is_file():
            elsewhere = [c for c in caption_files.get(image, []) if c != cname]
            if elsewhere:
                raise DatasetPreparationError(
                    f"{captions.text_dir / elsewhere[0] / (image + '.txt')}: caption file is filed under "
                    f"class {elsewhere[0]!r}, but {label_source} put {image} in class {cname!r}")
            warnings.add(f"{path}: no caption file for image {it.key}; skipped")
            continue
        used_files.add((cname, image))
        lines = [s.strip() for s in _read_text_lines(path)]
        lines = [s for s in lines if s]
        if len(lines) < CAPTIONS_PER_IMAGE:
            warnings.add(f"{path}: {len(lines)} non-empty caption lines, {CAPTIONS_PER_IMAGE} "
                         f"expected; image {it.key} skipped")
            continue
        if len(lines) > CAPTIONS_PER_IMAGE:
            warnings.add(f"{path}: {len(lines)} caption lines; the first {CAPTIONS_PER_IMAGE} kept")
        kept.append((it, tuple(lines[:CAPTIONS_PER_IMAGE])))
    for image, cls_dirs in sorted(caption_files.items()):
        for cname in cls_dirs:
            if (cname, image) not in used_files and f"{cname}/{image}" not in by_key:
                warnings.add(f"{captions.text_dir / cname / (image + '.txt')}: caption file for an "
                             f"image that is not in the image data; ignored")
    if not kept:
        raise DatasetPreparationError(
            f"no image of the image data has a usable caption file in {captions.text_dir} "
            f"(are the captions those of this dataset?)")

    # ---- images
    ext = ".png" if image_format == "png" else ".jpg"
    jobs = [(it, caps, space.build, size, ext) for it, caps in kept]
    # PIL decodes, resizes and encodes without the GIL, so threads suffice; map keeps the order
    pool = ThreadPoolExecutor(max_workers=workers or _default_workers())
    try:
        # Between its pixel limit (89 MP by default) and twice it, PIL only warns; such an image
        # is refused by the stricter MAX_IMAGE_PIXELS check anyway, so the warning would only add
        # a second, differently numbered line. (Set here, not in the threads: the warning filters
        # are shared and catch_warnings is not thread-safe.)
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore", Image.DecompressionBombWarning)
            results = list(tqdm(pool.map(_process_image, jobs), total=len(jobs), unit="img",
                                desc=f"{name}: {'crop, ' if kept[0][0].bbox else ''}resize, write",
                                disable=not progress, file=sys.stderr))
    finally:  # on Ctrl-C or an error, do not wait for the queued images
        pool.shutdown(wait=True, cancel_futures=True)
    records = []
    for (it, caps), problem in zip(kept, results):
        if problem is not None:
            warnings.add(problem)
            continue
        records.append(ImageRecord(key=it.key, class_name=it.class_name, class_id=it.class_id,
                                   split=split_of[it.key], captions=caps, attributes=None,
                                   mentions=None))
    if not records:
        raise DatasetPreparationError(f"no image could be written ({len(warnings)} warnings above)")

    # ---- counts
    counts = {s: sum(r.split == s for r in records) for s in ("train", "test")}
    log(f"{name}: {counts['train']} train images ({len({r.class_id for r in records if r.split == 'train'})} "
        f"classes), {counts['test']} test images "
        f"({len({r.class_id for r in records if r.split == 'test'})} classes)")
    if expected is not None and (counts["train"], counts["test"]) != expected:
        warnings.add(f"split sizes {counts['train']} train / {counts['test']} test differ from the "
                     f"standard {expected[0]} / {expected[1]} for the full {name} data")

    class_info = [{"id": cid, "name": cname, "split": class_split.get(cname), "attributes": None}
                  for cid, cname in classes]
    info = write_index(space.build, name, records, class_info, image_ext=ext, extra_info={
        **extra_info, "caption_format": captions.form, "caption_folder": space.show(str(captions.root)),
        "image_size": size, "image_format": image_format, "warnings": list(warnings)})
    space.publish()
    log(f"{name}: wrote {space.out} ({len(records)} images, {len(warnings)} warnings"
        f"{', listed in dataset.json' if warnings else ''})")
    return info


def _want_captions(p: PurePosixPath) -> bool:
    return p.suffix in (".txt", ".pickle") or p.name == "text.zip"


# ===================================================================================== CUB
def _read_table(path: Path, what: str, ncols: int, convert: Callable[[list[str]], Any]) -> dict[int, Any]:
    if not path.is_file():
        raise DatasetPreparationError(f"{path}: not found (expected {what})")
    table: dict[int, Any] = {}
    for line_no, line in enumerate(_read_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != ncols:
                raise ValueError
            key, value = int(parts[0]), convert(parts[1:])
        except ValueError:
            raise DatasetPreparationError(f"{path}:{line_no}: {line.strip()!r} does not match "
                                          f"the expected {what}") from None
        if key in table:
            raise DatasetPreparationError(f"{path}:{line_no}: id {key} appears twice")
        table[key] = value
    if not table:
        raise DatasetPreparationError(f"{path}: empty (expected {what})")
    return table


def _cub_items(root: Path) -> tuple[list[_Item], list[tuple[int, str]]]:
    images = _read_table(root / "images.txt", CUB_FILES["images.txt"], 2, lambda p: p[0])
    class_table = _read_table(root / "classes.txt", CUB_FILES["classes.txt"], 2, lambda p: p[0])
    labels = _read_table(root / "image_class_labels.txt", CUB_FILES["image_class_labels.txt"], 2,
                         lambda p: int(p[0]))
    boxes = _read_table(root / "bounding_boxes.txt", CUB_FILES["bounding_boxes.txt"], 5,
                        lambda p: tuple(float(v) for v in p))
    if not (root / "images").is_dir():
        raise DatasetPreparationError(f"{root / 'images'}: not found (expected the folder "
                                      f"images/<class>/<image>.jpg)")
    cub_ids = list(class_table)          # classes.txt order -> 0-based ids
    class_index = {cid: i for i, cid in enumerate(cub_ids)}
    classes = [(i, class_table[cid]) for i, cid in enumerate(cub_ids)]
    items = []
    for image_id, rel in images.items():
        parts = PurePosixPath(rel).parts
        if len(parts) != 2 or ".." in parts or not rel.lower().endswith(".jpg"):
            raise DatasetPreparationError(f"{root / 'images.txt'}: image {image_id} {rel!r} is not "
                                          f"'<class folder>/<image>.jpg'")
        for table, fname in ((labels, "image_class_labels.txt"), (boxes, "bounding_boxes.txt")):
            if image_id not in table:
                raise DatasetPreparationError(f"{root / fname}: no line for image {image_id} ({rel}) "
                                              f"of images.txt")
        cub_class = labels[image_id]
        if cub_class not in class_index:
            raise DatasetPreparationError(f"{root / 'image_class_labels.txt'}: image {image_id} has "
                                          f"class {cub_class}, which classes.txt does not list")
        cname = class_table[cub_class]
        if parts[0] != cname:
            raise DatasetPreparationError(
                f"{root / 'image_class_labels.txt'}: image {image_id} ({rel}) is labelled class "
                f"{cub_class} ({cname}), but images.txt files it under {parts[0]}")
        items.append(_Item(key=f"{cname}/{PurePosixPath(parts[1]).stem}", class_name=cname,
                           class_id=class_index[cub_class], source=root / "images" / rel,
                           bbox=boxes[image_id]))
    return items, classes


def prepare_cub(cub: str | os.PathLike, captions: str | os.PathLike, out: str | os.PathLike,
                size: int = DEFAULT_SIZE, image_format: str = "png", overwrite: bool = False,
                workers: int | None = None, progress: bool = True, log: Log = _print) -> dict:
    """Build the CUB-200-2011 dataset folder ``out``; returns its ``dataset.json``.

    ``cub``: ``CUB_200_2011.tgz`` or its extracted folder (or that folder's parent).
    ``captions``: Reed's ``cvpr2016_cub`` (text_c10 + class lists) or AttnGAN's ``birds``
    (text + filenames.pickle), as an archive or a folder.
    """
    _check_options(size, image_format)
    with _BuildSpace(out, overwrite) as space:
        warnings = _Warnings(log, space.show)
        wanted = set(CUB_FILES) | {"train_test_split.txt"}
        base = _open_input(cub, "--cub", "CUB_200_2011.tgz or its extracted folder CUB_200_2011/",
                           space, lambda p: p.suffix.lower() == ".jpg" or p.name in wanted, log)
        root = _find_dir(base, lambda d: (d / "images.txt").is_file())
        if root is None:
            raise DatasetPreparationError(
                f"--cub {cub}: no CUB_200_2011/images.txt found; expected CUB_200_2011.tgz or its "
                f"extracted folder CUB_200_2011/ (images.txt, classes.txt, image_class_labels.txt, "
                f"bounding_boxes.txt, images/)")
        items, classes = _cub_items(root)
        cap_base = _open_input(captions, "--captions", "Reed's cvpr2016_cub caption archive/folder "
                               "or AttnGAN's birds.zip/birds folder", space, _want_captions, log)
        cap = _locate_captions(cap_base, "--captions", space, log)
        full = len(items) == CUB_FULL[0]
        return _build("cub", items, classes, cap, space, size, image_format, workers, progress,
                      warnings, CUB_FULL[1:] if full else None,
                      "images.txt/image_class_labels.txt", {
                          "source": {"cub": str(Path(cub).absolute()),
                                     "captions": str(Path(captions).absolute())},
                          "crop": CROP_RULE, "resize": _resize_rule(size)}, log)


# ================================================================================== Oxford
_OXFORD_IMAGE = re.compile(r"image_(\d{5})\.jpg$")
_OXFORD_CLASS = "class_{:05d}"
_MAT_NUMBERS = {"double", "single", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64"}   # scipy.io.whosmat's names of MATLAB's numeric classes


def _check_mat_inflation(path: Path) -> None:
    """Refuse a MATLAB v5 file with a compressed variable inflating past MAX_MAT_VARIABLE_BYTES.

    scipy allocates the size a variable declares (up to 4 GB) and inflates into it: a file of a
    few MB holding a (1, 7) 'labels' could take gigabytes before its shape is found wrong.
    """
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128 or header[126:128] not in (b"IM", b"MI"):
            return   # not a v5 file: scipy reads v4 (never compressed) or refuses it
        order = "<" if header[126:128] == b"IM" else ">"
        while len(tag := f.read(8)) == 8:
            kind, size = struct.unpack(order + "II", tag)
            if kind != 15:   # not miCOMPRESSED: takes no more memory than its size on disk
                f.seek(size, os.SEEK_CUR)
                continue
            inflater, inflated, left = zlib.decompressobj(), 0, size
            while left > 0 and not inflater.eof and (chunk := f.read(min(left, 2**16))):
                left -= len(chunk)
                inflated += len(inflater.decompress(chunk, MAX_MAT_VARIABLE_BYTES + 1 - inflated))
                if inflated > MAX_MAT_VARIABLE_BYTES:
                    raise DatasetPreparationError(
                        f"{path}: a compressed variable inflates to more than "
                        f"{MAX_MAT_VARIABLE_BYTES:,} bytes (the real 'labels' is 64 KB); refusing "
                        f"the file (a decompression bomb?)")
            f.seek(left, os.SEEK_CUR)


def _read_labels(path: str | os.PathLike) -> list[int]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetPreparationError(f"--labels {path}: not found (expected imagelabels.mat)")
    import numpy as np
    from scipy.io import loadmat, whosmat
    try:
        _check_mat_inflation(path)
        # the variables' shapes come from the headers, so a huge (compressed) array is never loaded
        variables = {name: (shape, kind) for name, shape, kind in whosmat(str(path))}
        if "labels" not in variables:
            raise DatasetPreparationError(f"{path}: no variable 'labels' (found {sorted(variables)}); "
                                          f"expected imagelabels.mat with labels of shape (1, 8189)")
        shape, kind = variables["labels"]
        if kind not in _MAT_NUMBERS:   # a cell or struct could hold anything, of any size
            raise DatasetPreparationError(f"{path}: 'labels' holds {'text' if kind == 'char' else kind} "
                                          f"data; expected class numbers 1..{OXFORD_CLASSES}, one per image")
        n = int(np.prod(shape))
        if n > MAX_OXFORD_IMAGES:
            raise DatasetPreparationError(
                f"{path}: 'labels' holds {n:,} values; at most {MAX_OXFORD_IMAGES:,} expected "
                f"(one per image_XXXXX.jpg; the full data has {OXFORD_FULL[0]})")
        labels = np.asarray(loadmat(str(path), variable_names=["labels"])["labels"]).ravel()
    except DatasetPreparationError:
        raise
    except Exception as e:  # noqa: BLE001 - scipy raises several types for a non-MAT file
        raise DatasetPreparationError(f"{path}: not a MATLAB .mat file ({e}); expected imagelabels.mat") from None
    if labels.size == 0:
        raise DatasetPreparationError(f"{path}: 'labels' is empty; expected class numbers "
                                      f"1..{OXFORD_CLASSES}, one per image")
    # a label is used as a class count below (range(1, max + 1)): 1e300 must not get there
    for i, v in enumerate(labels.tolist(), 1):
        if not (1 <= v <= OXFORD_CLASSES and float(v).is_integer()):   # also false for NaN
            shown = int(v) if float(v).is_integer() and abs(v) < 1e15 else v
            raise DatasetPreparationError(f"{path}: label {shown} of image {i} is not a class "
                                          f"number 1..{OXFORD_CLASSES}")
    return [int(v) for v in labels]


def _oxford_items(image_dir: Path, labels: list[int], labels_path: Path,
                  warnings: _Warnings) -> tuple[list[_Item], list[tuple[int, str]]]:
    files = {}
    for f in image_dir.iterdir():
        m = _OXFORD_IMAGE.match(f.name)
        if m:
            files[int(m.group(1))] = f
    for number in sorted(set(files) - set(range(1, len(labels) + 1))):
        warnings.add(f"{files[number]}: no label in {labels_path} ({len(labels)} labels); skipped")
    classes = [(c - 1, _OXFORD_CLASS.format(c)) for c in range(1, max(labels) + 1)]
    items = []
    for number, label in enumerate(labels, 1):
        name = f"image_{number:05d}"
        cname = _OXFORD_CLASS.format(label)
        # a labelled image missing from jpg/ stays an item: writing it gives a counted warning
        items.append(_Item(key=f"{cname}/{name}", class_name=cname, class_id=label - 1,
                           source=files.get(number, image_dir / f"{name}.jpg")))
    return items, classes


def prepare_oxford(images: str | os.PathLike, labels: str | os.PathLike, captions: str | os.PathLike,
                   out: str | os.PathLike, size: int = DEFAULT_SIZE, image_format: str = "png",
                   overwrite: bool = False, workers: int | None = None, progress: bool = True,
                   log: Log = _print) -> dict:
    """Build the Oxford-102 dataset folder ``out``; returns its ``dataset.json``.

    ``images``: ``102flowers.tgz`` or its ``jpg/`` folder; ``labels``: ``imagelabels.mat``;
    ``captions``: Reed's ``cvpr2016_flowers`` (text_c10/class_XXXXX/image_XXXXX.txt + class lists).
    Keys are ``class_XXXXX/image_XXXXX``; no crop.
    """
    _check_options(size, image_format)
    label_list = _read_labels(labels)
    with _BuildSpace(out, overwrite) as space:
        warnings = _Warnings(log, space.show)
        base = _open_input(images, "--images", "102flowers.tgz or its jpg/ folder", space,
                           lambda p: p.suffix.lower() == ".jpg", log)
        image_dir = _find_dir(base, lambda d: any(_OXFORD_IMAGE.match(f.name) for f in d.iterdir()), depth=2)
        if image_dir is None:
            raise DatasetPreparationError(f"--images {images}: no image_XXXXX.jpg files found; expected "
                                          f"102flowers.tgz or its jpg/ folder")
        items, classes = _oxford_items(image_dir, label_list, Path(labels), warnings)
        cap_base = _open_input(captions, "--captions", "Reed's cvpr2016_flowers caption archive or "
                               "folder", space, _want_captions, log)
        cap = _locate_captions(cap_base, "--captions", space, log)
        full = len(label_list) == OXFORD_FULL[0]
        return _build("oxford", items, classes, cap, space, size, image_format, workers, progress,
                      warnings, OXFORD_FULL[1:] if full else None, Path(labels).name, {
                          "source": {"images": str(Path(images).absolute()),
                                     "labels": str(Path(labels).absolute()),
                                     "captions": str(Path(captions).absolute())},
                          "crop": None, "resize": _resize_rule(size)}, log)


# ================================================================================== helpers
def _check_options(size: int, image_format: str) -> None:
    if size < 0:
        raise DatasetPreparationError(f"--size {size}: must be 0 (keep) or a positive pixel count")
    if image_format not in ("png", "jpg"):
        raise DatasetPreparationError(f"--format {image_format!r}: expected 'png' or 'jpg'")


def _resize_rule(size: int) -> str:
    return ("none (crop size kept)" if size == 0
            else f"shorter side to {size} px (bilinear, as torchvision Resize({size}))")


def add_output_options(parser, keep: str) -> None:
    """The options both preparation scripts share: output size, format, overwrite, threads."""
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"shorter side of the saved images in px; 0 keeps {keep} (default %(default)s)")
    parser.add_argument("--format", choices=("png", "jpg"), default="png",
                        help="image format (default png, lossless; jpg saves disk)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out dataset")
    parser.add_argument("--workers", type=int, default=None, help="image threads (default: min(8, CPUs))")
