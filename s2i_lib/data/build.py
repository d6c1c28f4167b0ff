"""Render a toy dataset, or index a prepared CUB/Oxford folder, into a dataset folder (the ``data``
step, ``s2i_lib/steps/data.py``, calls these with the profile's settings).

Toy datasets are rendered image by image with a process pool; each image and caption file is
written atomically, so an interrupted build resumes where it stopped (finished files are kept).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType, SimpleNamespace

from ..progress import tqdm
from . import toy_birds, toy_flowers
from .captions import DATASETS as TOY_DATASETS  # the datasets the renderers draw and caption
from .captions import family, make_captions
from .layout import ImageRecord, read_dataset, write_captions, write_image, write_index


def toy_module(name: str) -> ModuleType | SimpleNamespace:
    """The renderer module of a toy dataset (``toy_birds`` or ``toy_flowers``).

    ``toybirds_plain`` is ``toy_birds`` whose ``render`` draws the plain scene (see
    ``toy_birds.render``): the same species, attributes, parts and captions."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; expected one of {TOY_DATASETS}")
    module = toy_birds if family(name) == "toybirds" else toy_flowers
    if name == "toybirds_plain":
        public = {k: getattr(module, k) for k in module.__all__}
        return SimpleNamespace(**{**public, "render": functools.partial(module.render, scene="plain")})
    return module


def select_classes(classes: list, n_train: int | None, n_test: int | None) -> list:
    """The first ``n_train`` training and ``n_test`` test classes (all when None)."""
    train = [c for c in classes if c.split == "train"][:n_train]
    test = [c for c in classes if c.split == "test"][:n_test]
    return sorted(train + test, key=lambda c: c.id)


def _image_key(cls, index: int) -> str:
    return f"{cls.name}/{cls.name.split('.', 1)[-1]}_{index:04d}"


def _render_one(job: tuple) -> ImageRecord:
    """Render, caption and write one image (runs in a worker process)."""
    dataset, cls, index, size, seed, root = job
    key = _image_key(cls, index)
    captions = make_captions(dataset, cls.attributes, seed=seed, class_id=cls.id, index=index)
    image_path = Path(root) / "images" / f"{key}.png"
    text_path = Path(root) / "text" / f"{key}.txt"
    if not image_path.exists():   # written atomically: if it exists, it is complete
        write_image(root, key, toy_module(dataset).render(cls, index, size=size, seed=seed))
    if not text_path.exists():
        write_captions(root, key, [c.text for c in captions])
    return ImageRecord(key=key, class_name=cls.name, class_id=cls.id, split=cls.split,
                       captions=tuple(c.text for c in captions), attributes=dict(cls.attributes),
                       mentions=tuple(dict(c.mentions) for c in captions))


def build_toy_dataset(root: Path, dataset: str, image_size: int, images_per_class: int,
                      seed: int, n_train_classes: int | None = None,
                      n_test_classes: int | None = None, workers: int = 1) -> dict:
    """Render a toy dataset into ``root`` in the common layout; return its ``dataset.json``."""
    module = toy_module(dataset)
    classes = select_classes(module.class_table(), n_train_classes, n_test_classes)
    jobs = [(dataset, c, i, image_size, seed, str(root)) for c in classes for i in range(images_per_class)]
    desc = f"rendering {dataset} ({len(classes)} classes, {image_size} px)"
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            records = list(tqdm(pool.map(_render_one, jobs, chunksize=16), total=len(jobs), desc=desc))
    else:
        records = [_render_one(j) for j in tqdm(jobs, desc=desc)]
    class_info = [{"id": c.id, "name": c.name, "split": c.split, "attributes": dict(c.attributes)}
                  for c in classes]
    return write_index(root, dataset, records, class_info, extra_info={
        "source": "procedural", "image_size": image_size, "seed": seed,
        "attribute_schema": {k: list(v) for k, v in module.ATTRIBUTES.items()},
        "color_parts": dict(module.COLOR_PARTS)})


def link_prepared_dataset(root: Path, prepared: Path, n_train_classes: int | None = None,
                          n_test_classes: int | None = None) -> dict:
    """Index a folder from ``data_scripts/prepare_*.py`` into the run without copying images.

    The images and captions stay where the user prepared them (symbolic links); the index files
    are rewritten, so a class subset (``n_*_classes``) works as for the toy datasets.
    """
    source = read_dataset(prepared)
    keep_train = [c["id"] for c in source.classes if c["split"] == "train"][:n_train_classes]
    keep_test = [c["id"] for c in source.classes if c["split"] == "test"][:n_test_classes]
    keep = set(keep_train) | set(keep_test)
    for sub in ("images", "text"):
        link = root / sub
        if not link.exists():
            os.symlink((source.root / sub).resolve(), link, target_is_directory=True)
    records = [r for r in source.records if r.class_id in keep]
    classes = [c for c in source.classes if c["id"] in keep]
    extra = {k: v for k, v in source.info.items() if k not in ("name", "image_ext", "counts", "captions_per_image")}
    return write_index(root, source.name, records, classes, image_ext=source.info["image_ext"],
                       extra_info={**extra, "prepared_from": str(source.root.resolve())})
