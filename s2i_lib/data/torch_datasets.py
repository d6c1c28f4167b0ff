"""Torch datasets over a dataset folder: images at the GAN's resolutions, with the paper's
augmentation (resize to 76/64 of the largest size, random crop, horizontal flip).

Decoding PNG/JPEG in every epoch would make loading, not the model, the bottleneck on a CPU, so
every image is decoded and resized once into a uint8 array cached beside the dataset
(``cache/images_<split>_<size>.npy``, memory-mapped), and an epoch only crops and flips it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from ..progress import tqdm

from ..artifacts import BadFileError, atomic_path, load_array
from .layout import DatasetIndex, read_dataset


def load_size_for(crop_size: int) -> int:
    """StackGAN's load size: 304 for a 256 crop, i.e. ``int(crop * 76 / 64)``."""
    return int(crop_size * 76 / 64)


def image_cache(index: DatasetIndex, split: str, size: int, cache_dir: Path | None = None) -> np.ndarray:
    """All images of ``split`` resized to ``size`` x ``size``, uint8 (N, size, size, 3), memory-mapped.

    Built once (atomically) and reused; the order is that of ``index.split(split)``.
    """
    cache_dir = Path(cache_dir or index.root / "cache")
    path = cache_dir / f"images_{split}_{size}.npy"
    records = index.split(split)
    if path.exists():
        try:
            arr = load_array(path, mmap_mode="r")
        except BadFileError:   # a damaged cache is rebuilt over, like any cache
            arr = None
        if arr is not None and arr.shape == (len(records), size, size, 3) and arr.dtype == np.uint8:
            return arr
    arr = np.empty((len(records), size, size, 3), dtype=np.uint8)
    for i, r in enumerate(tqdm(records, desc=f"caching {split} images at {size} px", leave=False)):
        im = index.load_image(r.key)
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        arr[i] = np.asarray(im)
    with atomic_path(path) as tmp:
        np.save(tmp, arr)
    return load_array(path, mmap_mode="r")


class ImageCaptionDataset(Dataset):
    """Images of one split at several resolutions, with class ids and a caption index.

    Each item is a dict: ``images`` (a list of float tensors in [-1, 1], one per entry of
    ``sizes``, all views of the same crop), ``class_id``, ``caption_index`` (uniform over the
    image's captions when ``random_caption``, else 0, as in the original: docs/paper_notes.md §4.1), ``index``.
    The augmentation comes from one seeded generator, so it is reproducible in one process; with
    DataLoader workers each worker gets a copy of it: reseed it in a ``worker_init_fn``.
    """

    def __init__(self, root: str | Path | DatasetIndex, split: str, sizes: tuple[int, ...] = (64,),
                 augment: bool = True, random_caption: bool = True, seed: int = 0):
        self.index = root if isinstance(root, DatasetIndex) else read_dataset(root)
        self.split = split
        self.records = self.index.split(split)
        if not self.records:
            raise ValueError(f"split {split!r} of {self.index.root} has no images")
        self.sizes = tuple(sorted(sizes))
        self.augment = augment
        self.random_caption = random_caption
        crop = self.sizes[-1]
        self.crop_size = crop
        self.load_size = load_size_for(crop) if augment else crop
        self.array = image_cache(self.index, split, self.load_size)
        self.class_ids = torch.tensor([r.class_id for r in self.records])
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _crop(self, i: int) -> torch.Tensor:
        img = torch.from_numpy(np.array(self.array[i])).permute(2, 0, 1)  # 3, L, L uint8
        if self.augment:
            top, left = (torch.randint(0, self.load_size - self.crop_size + 1, (2,),
                                       generator=self.generator).tolist())
            img = img[:, top:top + self.crop_size, left:left + self.crop_size]
            if torch.rand((), generator=self.generator) < 0.5:
                img = img.flip(-1)
        return img.float().div(127.5).sub(1.0)

    def __getitem__(self, i: int) -> dict:
        full = self._crop(i)
        images = [full if s == self.crop_size else
                  F.interpolate(full[None], size=(s, s), mode="bilinear", antialias=True,
                                align_corners=False)[0] for s in self.sizes]
        n_captions = len(self.records[i].captions)
        cap = (int(torch.randint(0, n_captions, (), generator=self.generator))
               if self.random_caption else 0)
        return {"images": images, "class_id": int(self.class_ids[i]), "caption_index": cap, "index": i}
