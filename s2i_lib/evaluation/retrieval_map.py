"""The paper's mAP of generated images (docs/paper_notes.md §10.3), without the original's input-range bug.

S2IGAN's "mAP" is not a speech-retrieval number: the *real* test images of two images per test
class are the queries, the images *generated* from those same images' captions are the gallery
(10 captions each: 20 relevant items per query), the features are ImageNet Inception-v3 2048-d pool
features on both sides, the ranking is by cosine similarity and relevance is the class. It measures
whether a generated image looks like its class to an ImageNet network.

The original fed the generated images to Inception in [0, 1] instead of the [-1, 1] its weights
expect (paper notes §13.1, bug 10), and computed the real images' features with unshipped code. Here
both sides go through the same network the same way: the TF Inception-v3 pool features of
``evaluation.fid`` (the FID features, so they are computed once). The queries are the first
``per_class`` test images of each class in dataset order (the original used a fixed list from
StackGAN's pickles, which the toy datasets do not have). The AP is ``s2i_lib.sen.retrieval``'s
(ties against the model). The paper prints it x100 (e.g. 9.04); this returns the fraction.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..sen.retrieval import class_map


def paper_queries(class_ids: Any, per_class: int | None = 2) -> np.ndarray:
    """Indices of the query images: the first ``per_class`` images of every class, in row order
    (all images if None)."""
    class_ids = np.asarray(class_ids)
    if per_class is None:
        return np.arange(len(class_ids))
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    seen: dict[Any, int] = {}
    pick = []
    for i, c in enumerate(class_ids.tolist()):
        if seen.get(c, 0) < per_class:
            seen[c] = seen.get(c, 0) + 1
            pick.append(i)
    return np.asarray(pick, dtype=np.int64)


def retrieval_map(real_features: Any, real_class: Any, generated_features: Any, generated_source: Any,
                  per_class: int | None = 2) -> dict[str, float]:
    """Real-image queries against the images generated from the same real images' captions.

    ``real_features`` (N, D) and ``real_class`` (N,): the real test images;
    ``generated_features`` (M, D): the generated images; ``generated_source`` (M,): the row of the
    real image whose caption each one was generated from. Returns ``map`` (a fraction),
    ``n_queries``, ``n_gallery`` and ``relevant_per_query`` (mean number of same-class items)."""
    real = np.asarray(real_features, dtype=np.float32)
    gen = np.asarray(generated_features, dtype=np.float32)
    real_class = np.asarray(real_class)
    source = np.asarray(generated_source, dtype=np.int64)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D, got {real.shape} and {gen.shape}")
    if real_class.shape != (len(real),):
        raise ValueError(f"need one class per real image ({len(real)}), got shape {real_class.shape}")
    if source.shape != (len(gen),):
        raise ValueError(f"need one source row per generated image ({len(gen)}), got shape {source.shape}")
    if len(source) and (source.min() < 0 or source.max() >= len(real)):
        raise ValueError(f"generated_source must index the {len(real)} real images, got values in "
                         f"[{source.min()}, {source.max()}]")
    queries = paper_queries(real_class, per_class)
    gallery = np.flatnonzero(np.isin(source, queries))
    missing = np.setdiff1d(queries, source[gallery])
    if missing.size:
        raise ValueError(f"query images {missing[:10].tolist()} have no generated image: the gallery "
                         f"must contain the images generated from every query's captions")
    q_class, g_class = real_class[queries], real_class[source[gallery]]
    relevant = (q_class[:, None] == g_class[None, :]).sum(axis=1)
    return {"map": class_map(real[queries], q_class, gen[gallery], g_class),
            "n_queries": int(len(queries)), "n_gallery": int(len(gallery)),
            "relevant_per_query": float(relevant.mean())}
