"""Retrieval metrics of the speech embedding network, from embedding matrices.

All rankings use cosine similarity. **Ties count against the model**: an item that scores exactly
as high as a relevant one is ranked before it. Without that rule a collapsed embedding (every
similarity equal) would get a perfect score from the gallery order alone; with it, it gets the
worst one. Work is done in blocks of queries, so CUB-sized sets (29 330 captions x 2 933 images)
never build the whole similarity matrix.

- ``recall_at_k``: R@1/5/10 and median rank, speech->image and image->speech, at the *image*
  level (the protocol of the original's Flickr8k/Places evaluation, docs/paper_notes.md §4.5):
  several captions may describe one image (``image_index`` maps each caption to its image row).
  Speech->image: every caption is a query, and its one hit is its own image. Image->speech: every
  image is a query, and its rank is that of the best-placed of its own captions (any of them is a hit).
- ``class_map``: class-level mean average precision, speech->image, ``AP = (1/n_rel) sum_k k/rank_k``
  over the images of the query's class. ``class_map_one_query_per_class`` is the original's
  variant (paper notes §4.5, ``pre_util.calc_mAP``): one query per class, the first after a *stable* sort
  by class id (the original's sort was not stable), normally among the caption-0 utterances.
- ``attribute_precision_at_k``: share of the top-k retrieved images whose ground-truth attributes
  agree with every attribute the spoken query mentions (toy datasets only).
- ``expected_average_precision`` and ``attribute_precision_chance``: what a uniformly random ranking
  scores on average (the chance levels the notebooks read the figures against).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np

_BLOCK = 1024  # queries per block


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a (N, D) matrix, got shape {x.shape}")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_similarity(queries: Any, gallery: Any) -> np.ndarray:
    """(Q, G) cosine similarities (float32); for small sets (the metrics below work in blocks)."""
    return _normalise(_as_array(queries)) @ _normalise(_as_array(gallery)).T


def _blocks(n: int):
    for i in range(0, n, _BLOCK):
        yield slice(i, min(n, i + _BLOCK))


def _ranks_of_first_hit(sims: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best-placed relevant item per row, ties against the model:
    1 + the number of irrelevant items scoring at least as high as the best relevant one."""
    best = np.where(relevant, sims, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((sims >= best) & ~relevant).sum(axis=1)


def _recall_summary(ranks: np.ndarray, ks: Sequence[int], prefix: str) -> dict[str, float]:
    out = {f"{prefix}_R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out[f"{prefix}_median_rank"] = float(np.median(ranks))
    return out


def recall_at_k(sp_emb: Any, img_emb: Any, image_index: Any | None = None,
                ks: Sequence[int] = (1, 5, 10), both_ways: bool = True) -> dict[str, float]:
    """Image-level recall both ways.

    ``sp_emb`` (Ns, D): one row per spoken caption; ``img_emb`` (Ni, D): one row per distinct
    image; ``image_index`` (Ns,): the image row of each caption (None: caption i is image i).
    Returns ``speech_to_image_R@k``, ``speech_to_image_median_rank`` and the same for
    ``image_to_speech``. Every image needs at least one caption, unless ``both_ways`` is False:
    then only speech->image is measured (captions of some of the images, searching all of them).
    """
    sp, im = _normalise(_as_array(sp_emb)), _normalise(_as_array(img_emb))
    idx = np.arange(len(sp)) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if idx.shape != (len(sp),):
        raise ValueError(f"image_index must have one entry per caption ({len(sp)}), got shape {idx.shape}")
    if len(sp) and (idx.min() < 0 or idx.max() >= len(im)):
        raise ValueError(f"image_index must lie in [0, {len(im)}), got values in [{idx.min()}, {idx.max()}]")
    missing = np.setdiff1d(np.arange(len(im)), idx)
    if missing.size and both_ways:
        raise ValueError(f"images {missing[:10].tolist()} have no caption; image->speech recall "
                         f"needs at least one per image")
    s2i = np.empty(len(sp), dtype=np.int64)
    for b in _blocks(len(sp)):
        sims = sp[b] @ im.T
        relevant = np.zeros_like(sims, dtype=bool)
        relevant[np.arange(sims.shape[0]), idx[b]] = True
        s2i[b] = _ranks_of_first_hit(sims, relevant)
    if not both_ways:
        return _recall_summary(s2i, ks, "speech_to_image")
    i2s = np.empty(len(im), dtype=np.int64)
    for b in _blocks(len(im)):
        sims = im[b] @ sp.T
        relevant = idx[None, :] == np.arange(b.start, b.stop)[:, None]
        i2s[b] = _ranks_of_first_hit(sims, relevant)
    return {**_recall_summary(s2i, ks, "speech_to_image"), **_recall_summary(i2s, ks, "image_to_speech")}


def _average_precisions(sims: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP per row, ``(1/n_rel) sum_k k / rank_k``; among equal scores the irrelevant come first."""
    order = np.lexsort((relevant, -sims), axis=-1)
    rel = np.take_along_axis(relevant, order, axis=1)
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, sims.shape[1] + 1)
    return (rel * hits / ranks).sum(axis=1) / rel.sum(axis=1)


def average_precision(scores: Any, relevant: Any) -> float:
    """AP of one ranking: ``scores`` (G,) (higher first), ``relevant`` (G,) bool."""
    scores = np.asarray(scores, dtype=np.float64)[None]
    relevant = np.asarray(relevant, dtype=bool)[None]
    if relevant.shape != scores.shape:
        raise ValueError("scores and relevant must have the same length")
    if not relevant.any():
        raise ValueError("no relevant item: average precision is undefined")
    return float(_average_precisions(scores, relevant)[0])


def expected_average_precision(n_relevant: int, n_items: int) -> float:
    r"""The mean AP of a uniformly random ranking of ``n_items`` (N) items of which ``n_relevant`` (R)
    are relevant. Rank k holds a relevant item with probability R/N, and given that, the other k - 1
    items above it hold (k - 1)(R - 1)/(N - 1) relevant ones on average, so

    $$\mathbb{E}[\mathrm{AP}] = \frac{1}{R}\sum_{k=1}^{N} \frac{R}{N}\cdot\frac{1 + (k-1)\frac{R-1}{N-1}}{k}
      = \frac{1}{N}\Big(H_N + \frac{R-1}{N-1}\,(N - H_N)\Big),$$

    with $H_N$ the N-th harmonic number: above R/N, the share of relevant items (the relevant item
    that a random ranking happens to put near the top weighs most)."""
    if not 1 <= n_relevant <= n_items:
        raise ValueError(f"need 1 <= n_relevant <= n_items, got {n_relevant} and {n_items}")
    if n_items == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, n_items + 1)))
    return (harmonic + (n_relevant - 1) / (n_items - 1) * (n_items - harmonic)) / n_items


def class_map(query_emb: Any, query_class: Any, gallery_emb: Any, gallery_class: Any) -> float:
    """Mean over queries of the class-level AP (relevant = the gallery items of the query's class).

    With speech queries and an image gallery this is the SEN's mAP over *all* speech queries.
    Every query class must occur in the gallery.
    """
    q, g = _normalise(_as_array(query_emb)), _normalise(_as_array(gallery_emb))
    qc, gc = np.asarray(query_class), np.asarray(gallery_class)
    if qc.shape != (len(q),) or gc.shape != (len(g),):
        raise ValueError("need one class id per query and per gallery item")
    absent = np.setdiff1d(qc, gc)
    if absent.size:
        raise ValueError(f"query classes {absent[:10].tolist()} have no item in the gallery")
    aps = np.empty(len(q))
    for b in _blocks(len(q)):
        aps[b] = _average_precisions(q[b] @ g.T, qc[b, None] == gc[None, :])
    return float(aps.mean())


def first_query_per_class(class_ids: Any) -> np.ndarray:
    """Indices of one query per class, in class order: the first after a stable sort by class id
    (= the first occurrence of each class)."""
    class_ids = np.asarray(class_ids)
    order = np.argsort(class_ids, kind="stable")
    first = np.ones(len(order), dtype=bool)
    first[1:] = class_ids[order][1:] != class_ids[order][:-1]
    return order[first]


def class_map_one_query_per_class(sp_emb: Any, sp_class: Any, img_emb: Any, img_class: Any) -> float:
    """The original's SEN mAP (paper notes §4.5): one speech query per class (``first_query_per_class``) against
    every image. Pass the caption-0 utterances (one per image, in image order) to reproduce it."""
    pick = first_query_per_class(sp_class)
    return class_map(_as_array(sp_emb)[pick], np.asarray(sp_class)[pick], img_emb, img_class)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _agreement(img_attributes: Sequence[dict]) -> Callable[[dict], np.ndarray]:
    """A function of a query's mentions (attribute -> value) giving the boolean vector of the images
    whose attributes agree with all of them; one vector per (attribute, value), built once."""
    cache: dict[tuple[str, str], np.ndarray] = {}

    def agreement(mentions: dict) -> np.ndarray:
        agree = np.ones(len(img_attributes), dtype=bool)
        for attr, value in mentions.items():
            key = (attr, _key(value))
            if key not in cache:
                cache[key] = np.array([attr in a and _key(a[attr]) == key[1] for a in img_attributes], dtype=bool)
            agree &= cache[key]
        return agree

    return agreement


def attribute_precision_chance(mentions: Sequence[dict | None], img_attributes: Sequence[dict]) -> float:
    """``attribute_precision_at_k`` of a uniformly random ranking, on average, for any k up to the
    number of images: each of the top k is a random image, so the precision of a query is the share
    of the images that agree with everything it mentions. Averaged over the queries that mention
    something (the others are skipped, as there); NaN if none does."""
    agreement = _agreement(img_attributes)
    shares = [float(agreement(m).mean()) for m in mentions if m]
    return float(np.mean(shares)) if shares else float("nan")


def attribute_precision_at_k(sp_emb: Any, mentions: Sequence[dict | None], img_emb: Any,
                             img_attributes: Sequence[dict], k: int = 10) -> float:
    """Mean over queries of the share of the top-k images (by cosine) whose attributes agree with
    *every* attribute the query mentions (``mentions[q]``: attribute -> value; ``img_attributes[g]``:
    attribute -> value). Queries that mention nothing are skipped (any image would agree); NaN if
    no query mentions anything. Ties at the k-th place count against the model."""
    sp, im = _normalise(_as_array(sp_emb)), _normalise(_as_array(img_emb))
    if len(mentions) != len(sp) or len(img_attributes) != len(im):
        raise ValueError(f"need one mention dict per query ({len(sp)}) and one attribute dict per "
                         f"image ({len(im)}), got {len(mentions)} and {len(img_attributes)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, len(im))
    agreement = _agreement(img_attributes)
    queries = [q for q, m in enumerate(mentions) if m]
    if not queries:
        return float("nan")
    precisions = []
    for start in range(0, len(queries), _BLOCK):
        block = queries[start:start + _BLOCK]
        sims = sp[block] @ im.T
        agree = np.stack([agreement(mentions[q]) for q in block])
        order = np.lexsort((agree, -sims), axis=-1)[:, :k]
        precisions.append(np.take_along_axis(agree, order, axis=1).mean(axis=1))
    return float(np.concatenate(precisions).mean())
