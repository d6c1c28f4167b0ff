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


def test_similarity_blocks_group_images_and_captions_by_species():
    """The heatmap's rows are the first images of the first species, its columns the first-voice
    captions about exactly those images, both in species order (so the blocks are species)."""
    from s2i_lib.reports.sen import similarity_blocks
    rng = np.random.default_rng(0)
    class_of_image = np.array([3, 1, 3, 2, 1, 3, 2, 1, 9])          # 9 images of 4 species, interleaved
    image_of_query = np.repeat(np.arange(9), 3)                      # 3 captions per image...
    heldout = np.tile([False, False, True], 9)                       # ...the third in a held-out voice
    emb = SimpleNamespace(store=SimpleNamespace(heldout=heldout), class_of_image=class_of_image,
                          image_of_query=image_of_query, images=rng.normal(size=(9, 4)),
                          speech=rng.normal(size=(27, 4)))
    sims, rows, cols = similarity_blocks(emb, n_classes=2, per_class=2)
    assert rows.tolist() == [1, 1, 2, 2]                             # species 1 and 2, two images each
    assert cols.tolist() == [1] * 4 + [2] * 4                        # two first-voice captions per image
    assert sims.shape == (4, 8)
    np.testing.assert_allclose(sims[0, 0], emb.images[1] @ emb.speech[3])   # image 1's first caption
