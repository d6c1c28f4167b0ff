"""R-precision (AttnGAN's, with the SEN in the role of DAMSM): is a generated image closer to its own
spoken caption than to captions of other classes?

For every generated image, its SEN image embedding (the trained image encoder of the ``sen`` step)
ranks its own caption's embedding among ``n_negatives`` (99) caption embeddings drawn from *other
classes*; with R = 1 relevant caption, R-precision is the share of images whose own caption comes
first. Chance is 1 / (1 + n_negatives). Ties count against the model, as in ``sen.retrieval``: a
collapsed embedding scores 0, not a lucky 1.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..sen.retrieval import _as_array, _normalise


def r_precision(image_emb: Any, caption_emb: Any, class_ids: Any, n_negatives: int = 99, seed: int = 0,
                pool_emb: Any | None = None, pool_class: Any | None = None) -> dict[str, float]:
    """Top-1 R-precision of generated images.

    ``image_emb`` (N, D): SEN image embeddings of the generated images; ``caption_emb`` (N, D): the
    embedding of the caption each was generated from; ``class_ids`` (N,): its class. Negatives are
    drawn (without replacement, from ``seed``) among the rows of ``pool_emb`` / ``pool_class``
    (default: the captions themselves; pass the distinct test captions when several images share
    a caption) whose class differs; fewer than ``n_negatives`` when there are not that many.
    Returns ``r_precision``, ``n``, ``n_negatives_min`` (the fewest any image got) and ``chance``
    (the mean of 1 / (1 + negatives))."""
    img, cap = _normalise(_as_array(image_emb)), _normalise(_as_array(caption_emb))
    cls = np.asarray(class_ids)
    if img.shape != cap.shape:
        raise ValueError(f"need one caption embedding per image: {img.shape} vs {cap.shape}")
    if cls.shape != (len(img),):
        raise ValueError(f"need one class id per image ({len(img)}), got shape {cls.shape}")
    if (pool_emb is None) != (pool_class is None):
        raise ValueError("pass both pool_emb and pool_class, or neither")
    pool = cap if pool_emb is None else _normalise(_as_array(pool_emb))
    pcls = cls if pool_class is None else np.asarray(pool_class)
    if pcls.shape != (len(pool),) or pool.shape[1] != img.shape[1]:
        raise ValueError(f"pool: need (P, {img.shape[1]}) embeddings and P class ids, got {pool.shape} "
                         f"and {pcls.shape}")
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be at least 1, got {n_negatives}")
    if len(img) == 0:
        raise ValueError("no generated image to score")
    rng = np.random.default_rng(seed)
    rows_by_class = {c: np.flatnonzero(pcls != c) for c in np.unique(cls)}
    hits = np.zeros(len(img), dtype=bool)
    n_neg = np.zeros(len(img), dtype=np.int64)
    for i in range(len(img)):
        others = rows_by_class[cls[i]]
        if others.size == 0:
            raise ValueError(f"image {i}: no caption of another class than {cls[i]!r} to compare with")
        neg = rng.choice(others, size=min(n_negatives, others.size), replace=False)
        hits[i] = float(img[i] @ cap[i]) > float((pool[neg] @ img[i]).max())
        n_neg[i] = neg.size
    return {"r_precision": float(hits.mean()), "n": int(len(img)), "n_negatives_min": int(n_neg.min()),
            "chance": float(np.mean(1.0 / (1.0 + n_neg)))}
