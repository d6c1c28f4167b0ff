"""The on-disk layout shared by every dataset (ToyBirds, ToyFlowers, CUB-200, Oxford-102).

```
<root>/
  images/<class>/<image>.png      one image per key (``key = "<class>/<image>"``)
  text/<class>/<image>.txt        its captions, one per line (10 for every dataset here)
  attributes.jsonl                one line per image: key, class, split, attributes, captions with
                                  the attributes each mentions (``null`` where the dataset has none)
  train/filenames.json            keys of the training images (StackGAN's filenames.pickle, as JSON)
  train/class_info.json           their class ids, in the same order (0-based over all classes)
  test/filenames.json, test/class_info.json
  classes.json                    every class: id, name, split, attributes (or null)
  dataset.json                    name, counts, image extension, attribute schema; written last
```

JSON only (no pickle), so a dataset can be read without trusting its author. ``dataset.json`` is
written last: a folder without it is an unfinished build.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image

from ..artifacts import atomic_path, atomic_write_json, atomic_write_text, read_json

SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageRecord:
    key: str                                  # "<class>/<image>", no extension
    class_name: str
    class_id: int                             # 0-based over all classes of the dataset
    split: str                                # "train" or "test"
    captions: tuple[str, ...]
    attributes: dict | None = None            # ground truth (toy datasets); None for real data
    mentions: tuple[dict, ...] | None = None  # per caption: attribute -> value it states

    def to_json(self) -> dict:
        d = asdict(self)
        d["captions"] = list(self.captions)
        d["mentions"] = None if self.mentions is None else list(self.mentions)
        return d

    @staticmethod
    def from_json(d: dict) -> "ImageRecord":
        mentions = d.get("mentions")
        return ImageRecord(key=d["key"], class_name=d["class_name"], class_id=int(d["class_id"]),
                           split=d["split"], captions=tuple(d["captions"]),
                           attributes=d.get("attributes"),
                           mentions=None if mentions is None else tuple(mentions))


@dataclass
class DatasetIndex:
    """A finished dataset folder, read back. ``records`` keep the order they were written in."""
    root: Path
    info: dict
    classes: list[dict]
    records: list[ImageRecord]
    _by_key: dict[str, ImageRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_key = {r.key: r for r in self.records}

    @property
    def name(self) -> str:
        return self.info["name"]

    def split(self, name: str) -> list[ImageRecord]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [r for r in self.records if r.split == name]

    def record(self, key: str) -> ImageRecord:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no image {key!r} in dataset {self.root}") from None

    def image_path(self, key: str) -> Path:
        return self.root / "images" / f"{key}{self.info['image_ext']}"

    def load_image(self, key: str) -> Image.Image:
        path = self.image_path(key)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image {path} listed in {self.root / 'attributes.jsonl'} "
                                    f"is missing; rebuild the dataset") from None


# ------------------------------------------------------------------------------------- writing
def write_image(root: Path, key: str, image: Image.Image, ext: str = ".png") -> Path:
    path = Path(root) / "images" / f"{key}{ext}"
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG" if ext == ".png" else "JPEG", **({"quality": 95} if ext != ".png" else {}))
    return path


def write_captions(root: Path, key: str, captions: Iterable[str]) -> Path:
    path = Path(root) / "text" / f"{key}.txt"
    atomic_write_text(path, "".join(c.strip() + "\n" for c in captions))
    return path


def write_index(root: Path, name: str, records: list[ImageRecord], classes: list[dict],
                image_ext: str = ".png", extra_info: dict | None = None) -> dict:
    """Write the index files for images already written with ``write_image``/``write_captions``.

    Returns the contents of ``dataset.json`` (counts per split, etc.).
    """
    root = Path(root)
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"image key {dup!r} appears twice in dataset {name}")
    with atomic_path(root / "attributes.jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r.to_json(), sort_keys=True) + "\n")
    counts = {}
    for split in SPLITS:
        part = [r for r in records if r.split == split]
        atomic_write_json(root / split / "filenames.json", [r.key for r in part])
        atomic_write_json(root / split / "class_info.json", [r.class_id for r in part])
        counts[split] = {"images": len(part), "classes": len({r.class_id for r in part})}
    atomic_write_json(root / "classes.json", classes)
    info = {"name": name, "image_ext": image_ext, "counts": counts,
            "captions_per_image": max((len(r.captions) for r in records), default=0),
            **(extra_info or {})}
    atomic_write_json(root / "dataset.json", info)
    return info


# ------------------------------------------------------------------------------------- reading
def read_dataset(root: str | Path) -> DatasetIndex:
    """Read a dataset folder; a missing or inconsistent file is an error that names it."""
    root = Path(root)
    info_path = root / "dataset.json"
    if not info_path.exists():
        raise FileNotFoundError(
            f"{info_path} not found: {root} is not a finished dataset folder. Build it with "
            f"`python -m s2i_lib data --profile P` (toy data) or data_scripts/prepare_*.py (CUB/Oxford).")
    info = read_json(info_path)
    classes = read_json(root / "classes.json")
    records = []
    attr_path = root / "attributes.jsonl"
    with open(attr_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(ImageRecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{attr_path}:{line_no}: bad record ({e})") from e
    for split in SPLITS:
        listed = read_json(root / split / "filenames.json")
        actual = [r.key for r in records if r.split == split]
        if listed != actual:
            raise ValueError(f"{root / split / 'filenames.json'} disagrees with {attr_path} "
                             f"({len(listed)} vs {len(actual)} {split} images); rebuild the dataset")
    return DatasetIndex(root=root, info=info, classes=classes, records=records)
