"""The SEN losses (docs/paper_notes.md §4.3): matching loss + distinctive loss.

v_i = IED(image_i), a_i = SED(speech_i), both unit norm; c_i the class of pair i.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def matching_loss(img_emb: torch.Tensor, sp_emb: torch.Tensor, class_ids: torch.Tensor | None,
                  gamma: float = 10.0) -> torch.Tensor:
    """Matching loss: a DAMSM-style sentence loss (``batch_loss`` in the original).

    ``S_ij = gamma * cos(v_i, a_j)``; off-diagonal entries of the same class are set to -inf, so a
    pair is not pushed away from another pair of its own class; then cross-entropy towards the
    diagonal in both directions, image->speech (rows) plus speech->image (columns), each a mean
    over the batch. ``class_ids=None`` masks nothing (every pair its own class, as for Flickr8k).
    """
    if img_emb.shape != sp_emb.shape or img_emb.dim() != 2:
        raise ValueError(f"img_emb and sp_emb must both be (B, D), got {tuple(img_emb.shape)} "
                         f"and {tuple(sp_emb.shape)}")
    b = img_emb.shape[0]
    scores = gamma * F.normalize(img_emb, dim=1) @ F.normalize(sp_emb, dim=1).t()
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    if class_ids is not None:
        class_ids = torch.as_tensor(class_ids, device=scores.device)
        same_class = class_ids.unsqueeze(0) == class_ids.unsqueeze(1)
        scores = scores.masked_fill(same_class & ~eye, float("-inf"))
    target = torch.arange(b, device=scores.device)
    return F.cross_entropy(scores, target) + F.cross_entropy(scores.t(), target)


def make_classifier(embed_dim: int, n_classes: int) -> nn.Linear:
    """The distinctive-loss head (``CLASSIFIER`` in the original): one Linear, Xavier-uniform
    weight, shared by the image and the speech embeddings."""
    layer = nn.Linear(embed_dim, n_classes)
    nn.init.xavier_uniform_(layer.weight)
    return layer


def distinctive_loss(classifier: nn.Module, img_emb: torch.Tensor, sp_emb: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """Distinctive loss: ``CE(W v_i, y_i) + CE(W a_i, y_i)`` with the *same* classifier ``W``;
    ``labels`` are 0-based over the training classes."""
    return (F.cross_entropy(classifier(img_emb), labels)
            + F.cross_entropy(classifier(sp_emb), labels))
