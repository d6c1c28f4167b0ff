"""Notebook 02's reports: the attribute probe on features with a known answer, and the chance
levels (losses and retrieval figures of a model that knows nothing) its plots and tables show."""
from types import SimpleNamespace

import numpy as np
import pytest

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


# ------------------------------------------------------------------------------ chance levels
def test_chance_losses_are_the_loss_functions_on_chance_inputs():
    import math

    import torch

    from s2i_lib.config import SenConfig
    from s2i_lib.reports.sen import chance_losses
    from s2i_lib.sen.losses import distinctive_loss, matching_loss
    sen = SenConfig(batch_size=6, embed_dim=16, gru_hidden=8, gamma=10.0)
    chance = chance_losses(sen, n_classes=5)
    # every similarity equal: random unit vectors with their cosines flattened out by a tiny gamma
    same = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    assert chance["matching"] == pytest.approx(float(matching_loss(same, same, None, gamma=1e-9)), abs=1e-5)
    assert chance["matching"] == pytest.approx(2 * math.log(6), abs=1e-5)
    flat = torch.nn.Linear(16, 5)
    torch.nn.init.zeros_(flat.weight), torch.nn.init.zeros_(flat.bias)
    labels = torch.arange(6) % 5
    with torch.no_grad():
        assert chance["distinctive"] == pytest.approx(float(distinctive_loss(flat, same, same, labels)), abs=1e-5)
    assert chance["total"] == pytest.approx(chance["matching"] + chance["distinctive"])
    assert set(chance_losses(sen)) == {"matching"}                          # no C: no total
    off = chance_losses(SenConfig(batch_size=6, embed_dim=16, gru_hidden=8, distinctive_loss=False))
    assert off["total"] == off["matching"]


def _sen_run(tmp_path):
    import json
    history = {"epoch": [1, 2, 3], "loss": [9.0, 8.0, 7.0], "matching": [5.0, 4.5, 4.0],
               "val_epoch": [3], "val_class_mAP": [0.3], "best_epoch": 3}
    (tmp_path / "metrics.json").write_text(json.dumps({"figures": {"speech_history": history}}))
    return tmp_path


def test_plot_training_draws_the_chance_lines(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from s2i_lib.config import SenConfig
    from s2i_lib.reports.sen import chance_losses, plot_training
    sen = SenConfig(batch_size=8, embed_dim=16, gru_hidden=8)
    ax = plot_training(_sen_run(tmp_path), sen, n_classes=20).axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    chance = chance_losses(sen, n_classes=20)
    for key in ("total", "matching"):
        assert list(lines[f"chance ({key})"].get_ydata()) == [chance[key]] * 2
    assert "chance (total)" in [t.get_text() for t in ax.get_legend().get_texts()]
    bare = plot_training(tmp_path).axes[0]                                   # without the config: none
    assert not any(line.get_label().startswith("chance") for line in bare.lines)


def _toy_records(classes, mentions):
    return [SimpleNamespace(class_id=c, attributes={"colour": f"c{c % 2}"}, mentions=tuple(m))
            for c, m in zip(classes, mentions)]


def test_retrieval_chance_is_what_random_embeddings_score_on_average():
    from s2i_lib.reports.sen import retrieval_chance
    from s2i_lib.sen.training import Queries, retrieval_figures
    classes = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]                                  # classes of unequal size
    mentions = [({"colour": f"c{c % 2}"}, {}) for c in classes]               # caption 1 says nothing
    records = _toy_records(classes, mentions)
    image_pos = np.repeat(np.arange(10), 2)
    caption_index = np.tile([0, 1], 10)
    chance = retrieval_chance(records, image_pos, caption_index)
    queries = Queries(image_pos=image_pos, caption_index=caption_index, lengths=np.ones(20, int),
                      heldout=np.zeros(20, bool), voices=["v"] * 20, fetch=None)
    rng = np.random.default_rng(0)
    runs = [retrieval_figures(rng.normal(size=(20, 8)), queries, rng.normal(size=(10, 8)), records)
            for _ in range(600)]
    for key, value in chance.items():
        if key.endswith("median_rank"):
            continue
        assert np.mean([r[key] for r in runs]) == pytest.approx(value, abs=0.03), key
    assert chance["speech_to_image_R@5"] == 0.5
    # 7 images of colour c0 (classes 0 and 2) and 3 of c1: a caption of c0 finds 7 in 10 agreeing images
    assert chance["attribute_precision@10"] == pytest.approx((7 * 0.7 + 3 * 0.3) / 10)
    with pytest.raises(ValueError, match="one image position"):
        retrieval_chance(records, image_pos, caption_index[:3])


def test_results_table_ends_with_the_chance_row(tmp_path):
    import json
    from s2i_lib.reports.sen import CHANCE_ROW, results_table
    (tmp_path / "results.json").write_text(json.dumps({"speech (training voices)": {
        "speech_to_image_R@10": 0.5, "class_mAP_all_queries": 0.4, "queries": 20}}))
    table = results_table(tmp_path, {"speech_to_image_R@10": 0.123456, "class_mAP_all_queries": 0.25})
    assert list(table.index) == ["speech (training voices)", CHANCE_ROW]
    assert table.loc[CHANCE_ROW, "query→image_R@10"] == 0.1235
    assert np.isnan(table.loc[CHANCE_ROW, "queries"])
    assert list(results_table(tmp_path).index) == ["speech (training voices)"]


def test_listening_table_ends_with_the_chance_row_of_its_captions(tmp_path):
    import json
    from s2i_lib.reports.sen import CHANCE_ROW, listening_table
    group = {"attribute_precision@10": 0.4, "speech_to_image_R@10": 0.5, "class_mAP_all_queries": 0.3, "queries": 6}
    (tmp_path / "results.json").write_text(json.dumps({"speech (training voices)": group,
                                                       "speech (a listening group)": {**group, "queries": 3}}))
    table = listening_table(tmp_path, chance={"attribute_precision@10": 0.25, "speech_to_image_R@10": 0.1,
                                              "image_to_speech_R@10": 0.2})
    assert list(table.index) == ["speech (training voices)", "speech (a listening group)", CHANCE_ROW]
    assert table.loc[CHANCE_ROW, "attribute_precision@10"] == 0.25
    assert "image_to_speech_R@10" not in table.columns                       # only the table's own columns
    assert np.isnan(table.loc[CHANCE_ROW, "vs training voices"])
