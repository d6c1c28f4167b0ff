"""The relation supervisor (paper: RS; ``MD_NET`` and ``train_MDnet`` in the original, docs/paper_notes.md §8).

A small classifier over pairs of image features ``(f_a, f_b)``, where ``f_a`` is always the
ground-truth image, tells apart four kinds of pair:

====================================  =====  ==============================
pair (real, x)                        label  in the generator's loss
====================================  =====  ==============================
x = the real image itself             0      no
x = another image of the same class   1      no
x = the generated image (detached)    1      target 1 (``rs_mode=cooperative``)
x = an image of another class         2      no
====================================  =====  ==============================

**Why generated -> 1.** The original code trains the RS with ``fake_labels = self.real_labels``,
so a generated image is "related" to its ground truth, the same as the generator's target. The RS
is then *cooperative*: a relation classifier that pulls the generated image towards the class of
its description, not an adversary. The paper's figure (four pair types in, three outputs) fits
this, but the variable name hints that it may be accidental, and the paper's equation could not be
checked **[UNCONFIRMED]**. We reproduce the code. ``rs_mode="adversarial"`` trains the RS to call
generated pairs class 3 (the fourth logit, which the original builds but never uses) while the
generator still aims at 1: an ablation, not the paper.

The features come from a frozen image encoder (the SEN image encoder in the pipeline), in eval
mode. Its parameters never change, but it must *not* block gradients: in the generator update the
RS term back-propagates through it into the generator.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import init_weights

SAME, RELATED, MISMATCHED, GENERATED = 0, 1, 2, 3


class RelationSupervisor(nn.Module):
    """``concat[f_a, f_b]`` -> ``Linear(2d, 128)`` -> BN1d -> ReLU -> ``Linear(128, 4)`` (logits).

    Always used in train mode, as in the original (BN on batch statistics); it is never evaluated.
    """

    def __init__(self, feat_dim: int, hidden: int = 128, n_classes: int = 4):
        super().__init__()
        self.feat_dim = feat_dim
        self.net = nn.Sequential(nn.Linear(2 * feat_dim, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, n_classes))
        self.apply(init_weights)

    def forward(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([f_a, f_b], dim=1).float())


class FrozenFeatureExtractor(nn.Module):
    """Wraps an image feature extractor (image in [-1, 1] at the last stage size -> (B, d)) so that
    it stays frozen and in eval mode whatever ``.train()`` calls reach it, and is not part of any
    optimiser or checkpoint. Gradients still flow through it to its input."""

    def __init__(self, extractor: nn.Module | Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.extractor = extractor
        if isinstance(extractor, nn.Module):
            extractor.eval()
            for p in extractor.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenFeatureExtractor":
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.extractor(images)
        if feats.dim() != 2:
            feats = feats.flatten(1)
        return feats

    @torch.no_grad()
    def feature_dim(self, image_size: int, device: torch.device | str = "cpu") -> int:
        """Run one (2-image) batch to find d; restores nothing because the extractor is stateless
        in eval mode."""
        return int(self(torch.zeros(2, 3, image_size, image_size, device=device)).shape[1])


def relation_supervisor_loss(rs: nn.Module, f_real: torch.Tensor, f_similar: torch.Tensor,
                             f_fake: torch.Tensor, f_wrong: torch.Tensor,
                             mode: Literal["cooperative", "adversarial"] = "cooperative",
                             include_same: bool = True) -> torch.Tensor:
    r"""The RS update (paper notes §8), on the features of the real image ``x``, a similar one
    (same class), the generated one ``\hat{x}`` and a wrong one (another class):

    $$\mathcal{L}_{\mathrm{RS}} = \mathrm{CE}(R(x, x),0) + \mathrm{CE}(R(x, x_{\mathrm{sim}}),1)
      + \mathrm{CE}(R(x, \hat{x}),1) + \mathrm{CE}(R(x, x_w),2)$$

    (``mode="adversarial"``: the generated pair's target is 3; ``include_same=False`` drops the
    first term). Four separate forward passes, as in the original, so that BN sees each pair type
    as its own batch. ``f_fake`` must already be detached."""
    b = f_real.shape[0]

    def ce(f_b: torch.Tensor, label: int) -> torch.Tensor:
        return F.cross_entropy(rs(f_real, f_b), torch.full((b,), label, dtype=torch.long,
                                                            device=f_real.device))

    fake_label = RELATED if mode == "cooperative" else GENERATED
    # the original's forward order (same, similar, fake, wrong): it decides BN's running statistics
    loss = ce(f_real, SAME) if include_same else f_real.new_zeros(())  # dropped for Flickr/Places
    return loss + ce(f_similar, RELATED) + ce(f_fake, fake_label) + ce(f_wrong, MISMATCHED)


def relation_generator_loss(rs: nn.Module, f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    r"""The generator's RS term (paper notes §8), on the last stage's image ``\hat{x}_2``, in both
    modes:

    $$\mathcal{L}^{G}_{\mathrm{RS}} = \mathrm{CE}(R(x, \hat{x}_2),1)$$"""
    target = torch.full((f_real.shape[0],), RELATED, dtype=torch.long, device=f_real.device)
    return F.cross_entropy(rs(f_real, f_fake), target)
