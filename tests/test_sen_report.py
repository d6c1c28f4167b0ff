"""The attribute probe of notebook 02 on features with a known answer."""
from types import SimpleNamespace

import numpy as np

from s2i_lib.reports.sen import attribute_probe, mention_probe


def _records(colours, sizes):
    return [SimpleNamespace(attributes={"colour": c, "size": s}) for c, s in zip(colours, sizes)]


def test_probe_reads_what_the_features_encode_and_nothing_else(one_thread):
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.integers(0, 3, 2 * n)
    size = rng.integers(0, 2, 2 * n)
    # the colour is written into the features (one-hot + noise); the size is not there at all
    feats = np.eye(3)[colour] * 3 + rng.normal(0, 0.5, (2 * n, 3))
    feats = np.concatenate([feats, rng.normal(0, 1, (2 * n, 5))], axis=1)
    records = _records([f"c{c}" for c in colour], [f"s{s}" for s in size])
    acc = attribute_probe(feats[:n], records[:n], feats[n:], records[n:], steps=300)
    assert acc["colour"] > 0.95
    assert 0.3 < acc["size"] < 0.7   # chance for two balanced values


def test_mention_probe_scores_only_captions_that_mention_the_attribute(one_thread):
    rng = np.random.default_rng(1)
    n = 400
    colour = rng.integers(0, 3, 2 * n)
    said = rng.random(2 * n) < 0.5            # half the captions mention the colour
    # a caption's embedding carries its colour only when the caption says it
    emb = np.where(said[:, None], np.eye(3)[colour] * 3, 0.0) + rng.normal(0, 0.3, (2 * n, 3))
    mentions = [{"colour": f"c{c}"} if s else {} for c, s in zip(colour, said)]
    acc = mention_probe(emb[:n], mentions[:n], emb[n:], mentions[n:])
    assert list(acc.index) == ["colour"]
    assert acc["colour"] > 0.95               # the silent captions are neither trained on nor scored
    # scored on every caption instead, the silent half would pull it towards chance
    everyone = attribute_probe(emb[:n], _records([f"c{c}" for c in colour[:n]], ["s"] * n),
                               emb[n:], _records([f"c{c}" for c in colour[n:]], ["s"] * n), steps=300)
    assert everyone["colour"] < 0.8
