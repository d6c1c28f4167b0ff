"""The image encoder: frozen backbone features -> trainable linear projection -> unit norm.

Paper name: IED (image encoder); ``Inception_v3`` + ``LINEAR_ENCODER`` in the original (docs/paper_notes.md
§3.1). Only the projection trains. Its input is normally a *cached* feature vector
(``backbones.cache_backbone_features``), so training never runs the backbone; with a backbone
attached it also encodes images, as the original does on every batch.

``SenImageFeatures`` is the trained encoder of a ``sen`` step folder as a differentiable function
of the image (the GAN's relation supervisor, the evaluation's R-precision).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..artifacts import load_checkpoint
from ..step_configs import SenConfig
from ..device import precision
from .backbones import FrozenBackbone, backbone_spec, load_backbone, load_configured_backbone


class ImageEncoder(nn.Module):
    """IED: ``Linear(feat_dim, embed_dim)`` (PyTorch default init, as the original) then L2 norm.

    ``forward(x)``: backbone features (B, feat_dim) -> (B, embed_dim); or, when a frozen
    ``backbone`` is attached, images (B, 3, H, W) in [-1, 1], which go through it first (without
    gradient: it is frozen).
    """

    def __init__(self, feat_dim: int, embed_dim: int, backbone: FrozenBackbone | None = None):
        super().__init__()
        if backbone is not None and backbone.feat_dim != feat_dim:
            raise ValueError(f"backbone {backbone.spec.name!r} gives {backbone.feat_dim}-d features, "
                             f"the projection expects {feat_dim}")
        self.backbone = backbone
        self.projection = nn.Linear(feat_dim, embed_dim)
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            if self.backbone is None:
                raise ValueError("got images (B, 3, H, W) but this ImageEncoder has no backbone; pass "
                                 "cached features (B, feat_dim) or build it with a backbone")
            with torch.no_grad():  # not inference_mode: the features feed a graph that trains
                x = self.backbone(x)
        if x.dim() != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"expected features (B, {self.feat_dim}), got {tuple(x.shape)}")
        return F.normalize(self.projection(x.float()), p=2, dim=1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.projection.parameters())


def image_encoder_from_config(cfg, with_backbone: bool = False,
                              weights_path: str | os.PathLike | None = None) -> ImageEncoder:
    """The IED for a ``SenConfig``: ``cfg.backbone`` fixes the feature size; the backbone itself
    is loaded only ``with_backbone`` (weights from ``weights_path`` or ``cfg.backbone_weights``)."""
    spec = backbone_spec(cfg.backbone)
    backbone = (load_backbone(cfg.backbone, weights_path or cfg.backbone_weights)
                if with_backbone else None)
    return ImageEncoder(spec.feat_dim, cfg.embed_dim, backbone)


class SenImageFeatures(nn.Module):
    """The trained SEN image encoder as a differentiable function of the image: frozen backbone,
    then the projection, then unit norm. Unlike ``ImageEncoder.forward`` it lets gradients reach
    the image, which the relation supervisor's generator loss needs."""

    def __init__(self, sen_dir: Path, sen: SenConfig):
        super().__init__()
        state = load_checkpoint(Path(sen_dir) / "image_encoder.pt")
        self.backbone = load_configured_backbone(sen)
        encoder = ImageEncoder(state["feat_dim"], state["embed_dim"])
        encoder.load_state_dict(state["state_dict"])
        self.projection = encoder.projection

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # the projection in the backbone's precision, as of_backbone_features computes the cached
        # views' (fp32 unless the backbone runs in bf16), not in the GAN's autocast around this call
        with precision().autocast("backbone", images.device.type):
            return F.normalize(self.projection(self.backbone(images).float()).float(), dim=1)

    @torch.no_grad()
    def of_backbone_features(self, features: np.ndarray, chunk: int = 4096) -> torch.Tensor:
        """What ``forward`` gives for images whose backbone features are ``features`` (..., F),
        e.g. the SEN step's cached views (N, views, F): (..., d) float32."""
        flat = features.reshape(-1, features.shape[-1])
        out = [F.normalize(self.projection(torch.from_numpy(np.asarray(flat[i:i + chunk], np.float32))), dim=1)
               for i in range(0, len(flat), chunk)]
        return torch.cat(out).reshape(*features.shape[:-1], -1)
