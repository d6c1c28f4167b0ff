"""The evaluation step's own logic: query groups, the colour-swap draw, the results table."""
import dataclasses
import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest

from s2i_lib.data.captions import make_captions
from s2i_lib.data import toy_birds
from s2i_lib.data.toy_birds import class_table
from s2i_lib.evaluation.protocol import QueryGroup, colour_swaps, map_gallery, swap_outcomes, swap_voice
from s2i_lib.evaluation.table import results_table, to_markdown


def test_one_query_per_image_is_each_images_own_and_seeded():
    pos = np.array([2, 0, 1, 0, 2, 1, 2])
    q = QueryGroup(np.zeros((7, 4)), pos, np.arange(7), ["v"] * 7)
    one = q.one_per_image(3, seed=0)
    assert pos[one].tolist() == [0, 1, 2]
    assert one.tolist() == q.one_per_image(3, seed=0).tolist()
    draws = {tuple(q.one_per_image(3, seed=s)) for s in range(20)}
    assert len(draws) > 1                       # the seed decides among an image's captions
    with pytest.raises(ValueError, match="have no utterance"):
        q.one_per_image(4, seed=0)


def test_colour_swaps_change_one_mentioned_colour_to_another():
    records = []
    for cls in class_table()[:20]:
        caps = make_captions("toybirds", cls.attributes, seed=0, class_id=cls.id, index=0)
        records.append(SimpleNamespace(captions=[c.text for c in caps], mentions=[c.mentions for c in caps],
                                       attributes=cls.attributes))
    swaps = colour_swaps(records, 5, "toybirds", n=25, seed=1)
    assert len(swaps) == 25
    assert swaps == colour_swaps(records, 5, "toybirds", n=25, seed=1)
    for s in swaps:
        r = records[s["image"]]
        assert s["caption_index"] < 5 and s["caption"] == r.captions[s["caption_index"]]
        # a coloured part: the four part colours and the wing bars' colour
        assert s["attribute"] in toy_birds.COLOR_PARTS and s["old"] == r.attributes[s["attribute"]] != s["new"]
        assert s["new"] != "none"
        assert s["swapped"] != s["caption"] and s["new"] in s["swapped"]


def test_a_swap_succeeds_when_the_part_takes_the_new_colour_and_the_rest_reads_as_before():
    mentions = {"belly_color": "red", "wing_color": "blue", "size": "small"}
    swaps = [{"attribute": "belly_color", "old": "red", "new": "yellow", "mentions": mentions},
             {"attribute": "belly_color", "old": "red", "new": "green", "mentions": mentions},
             {"attribute": "wing_color", "old": "blue", "new": "white", "mentions": mentions}]
    # the original images as the judge reads them: the first draws a grey wing (not as said)
    before = [{"belly_color": "red", "wing_color": "grey", "size": "small"},
              {"belly_color": "red", "wing_color": "blue", "size": "small"},
              {"belly_color": "red", "wing_color": "blue", "size": "small"}]
    after = [{"belly_color": "yellow", "wing_color": "grey", "size": "small"},   # only the belly changed
             {"belly_color": "green", "wing_color": "blue", "size": "large"},    # the size changed too
             {"belly_color": "red", "wing_color": "black", "size": "small"}]     # the wrong new colour
    figures, success = swap_outcomes(swaps, before, after)
    assert success.tolist() == [True, False, False]
    assert figures["success"] == pytest.approx(1 / 3)
    assert figures["part_took_new_colour"] == pytest.approx(2 / 3)
    assert figures["other_attributes_kept"] == pytest.approx(2 / 3)
    assert figures["swapped_caption_all_drawn"] == 0.0   # the first never drew the blue wing
    assert figures["per_attribute"] == {"belly_color": {"n": 2, "success": 0.5, "part_took_new_colour": 1.0},
                                        "wing_color": {"n": 1, "success": 0.0, "part_took_new_colour": 0.0}}


def test_per_part_table_gives_each_attribute_and_each_swapped_part_a_column():
    from s2i_lib.reports.evaluation import per_part_table
    results = {"real test images": {"attribute accuracy per attribute": {"size": 1.0, "wing_color": 0.9}},
               "real training images (FID floor)": {"fid": 14.0},
               "model, voices": {"attribute accuracy per attribute": {"size": 0.5, "wing_color": 0.25},
                                 "colour swap": {"success": 0.1, "per_attribute": {
                                     "wing_color": {"n": 4, "success": 0.25, "part_took_new_colour": 0.5}}}}}
    table = per_part_table(results)
    assert list(table.index) == ["real test images", "model, voices"]       # the floor has neither
    assert table.loc["model, voices", "drawn: wing_color"] == 0.25
    assert table.loc["model, voices", "swap: wing_color"] == 0.25
    assert np.isnan(table.loc["real test images", "swap: wing_color"])


def test_judges_table_shows_both_judges_with_their_heldout_accuracy(tmp_path):
    """The results' "judges" as the eval step writes them: the attribute judge's held-out accuracy sits
    under ``heldout_rendered`` (``overall``, ``per_attribute``), beside counts and timings that are not
    accuracies."""
    import json
    from s2i_lib.reports.evaluation import judges_table
    judges = {"is_classifier": {"backbone": "efficientnet_lite0", "n_classes": 50, "heldout_accuracy": 0.998,
                                "train_accuracy": 1.0, "counts": {"train_images": 500, "heldout_images": 500}},
              "attribute_judge": {"dataset": "toybirds_plain", "image_size": 64, "n_heldout": 1000, "epochs": 10,
                                  "train_s": 144.5, "loss_curve": [24.4, 0.2],
                                  "heldout_rendered": {"overall": 0.97,
                                                       "per_attribute": {"belly_color": 0.99, "crown_color": 0.91,
                                                                         "size": 1.0},
                                                       "counts": {"belly_color": 1000, "crown_color": 1000,
                                                                  "size": 1000},
                                                       "n": 3000, "n_images": 1000}}}
    (tmp_path / "results.json").write_text(json.dumps({"results": {}, "listening": {}, "judges": judges}))
    table = judges_table(tmp_path)
    assert table["accuracy"].to_dict() == {"IS classifier (test classes, held-out real images)": 0.998,
                                           "attribute judge (held-out rendered images): all attributes": 0.97,
                                           "attribute judge (held-out rendered images): lowest attribute, crown_color": 0.91}
    # beside each, a uniform guess: 1 / classes, 1 / values (all attributes: their mean)
    values = toy_birds.ATTRIBUTES
    guess = {a: 1 / len(values[a]) for a in ("belly_color", "crown_color", "size")}
    assert table["chance (a uniform guess)"].tolist() == pytest.approx(
        [1 / 50, np.mean(list(guess.values())), guess["crown_color"]], abs=5e-4)


def test_judge_robustness_ends_with_a_uniform_guess():
    from s2i_lib.evaluation.attribute_judge import DEGRADATIONS, attribute_accuracy
    from s2i_lib.reports.evaluation import judge_robustness
    truth = [{"colour": "red", "size": "small"}, {"colour": "blue", "size": "small"}, {"colour": "red", "size": "large"}]
    judge = SimpleNamespace(attributes={"colour": ["red", "blue", "green", "grey"], "size": ["small", "large"]},
                            accuracy=lambda images, attributes: attribute_accuracy(
                                [{"colour": "red", "size": "small"}] * len(attributes), attributes))
    table = judge_robustness(judge, np.zeros((3, 8, 8, 3), np.uint8), truth)
    assert list(table.index) == list(DEGRADATIONS) + ["chance (a uniform guess)"]
    assert table.loc["clean", "colour"] == pytest.approx(0.667, abs=1e-3)
    assert table.loc["chance (a uniform guess)"].to_dict() == pytest.approx(
        {"colour": 0.25, "size": 0.5, "overall": 0.375})


def test_swap_voice_prefers_espeak():
    assert swap_voice(["piper:joe", "espeak:en-us"]) == "espeak:en-us"
    assert swap_voice(["piper:joe"]) == "piper:joe"


def test_results_table_scales_like_the_paper_and_leaves_gaps():
    table = results_table({
        "model": {"inception_score": 3.2, "fid": 41.0, "kid_mean": 0.012, "mAP": 0.0904, "R-precision": 0.5,
                  "attribute accuracy": 0.75, "colour swap": {"success": 0.6}},
        "real": {"inception_score": 4.0, "R-precision": 0.9, "attribute accuracy": 0.99}})
    assert table.loc["model", "mAP (paper)"] == pytest.approx(9.04)     # a percentage, as the paper
    assert table.loc["model", "KID x 1000"] == pytest.approx(12.0)
    assert table.loc["model", "colour swap"] == pytest.approx(0.6)
    assert math.isnan(table.loc["real", "FID"])
    md = to_markdown(table)
    assert md.splitlines()[2].startswith("| model | 3.2 | 41 | 12 | 9.04 |") and "| real | 4 |  |" in md


def test_map_gallery_takes_each_caption_of_the_query_images_once():
    # 3 images x 2 captions, each caption said by two voices (rows interleaved by voice)
    image_pos = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    caption = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
    rows = map_gallery(image_pos, caption, np.array([0, 2]))
    assert rows.tolist() == [0, 2, 8, 10]          # the first utterance of each caption, in order
    assert map_gallery(image_pos, caption, np.array([], dtype=int)).tolist() == []


def test_mention_onehots_mark_each_mentioned_value_in_its_attribute_block():
    from s2i_lib.data.toy_birds import ATTRIBUTES
    from s2i_lib.reports.evaluation import mention_onehots

    x = mention_onehots([{"belly_color": "yellow", "size": "small"}, {}, {"wing_color": "brown"}], ATTRIBUTES)
    assert x.shape == (3, sum(len(v) for v in ATTRIBUTES.values())) == (3, 52)
    names = [f"{a}={v}" for a, values in ATTRIBUTES.items() for v in values]
    assert [names[i] for i in np.flatnonzero(x[0])] == ["belly_color=yellow", "size=small"]
    assert np.allclose(np.linalg.norm(x, axis=1), [1, 0, 1])
    assert [names[i] for i in np.flatnonzero(x[2])] == ["wing_color=brown"]
    with pytest.raises(ValueError, match="caption 0 mentions size='huge'"):
        mention_onehots([{"size": "huge"}], ATTRIBUTES)


def _tiny_judge(cfg, dirs, size):
    """A quick attribute judge, saved where the evaluation's cached judge goes (loaded if there)."""
    from s2i_lib.evaluation import train_attribute_judge
    from s2i_lib.evaluation.protocol import attribute_judge_path
    return train_attribute_judge(cfg.data.dataset, size, cfg.seed, attribute_judge_path(dirs["data"] / "cache", size, cfg.seed),
                                 n_images=32, epochs=1, n_heldout=8, width=4, batch_size=16, workers=1,
                                 progress=False)


def _judged_test_captions(cfg, dirs, n):
    """The test captions that ``report._judged_captions`` draws, redrawn by hand (the training split's
    draw comes first from the same generator): (index, test records, their query group, the pick)."""
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.evaluation.protocol import GROUPS, test_queries
    index = read_dataset(dirs["data"])
    records = index.split("test")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x10C]))
    train_n = len(test_queries(dirs["speech"], np.load(dirs["sen"] / "embeddings" / "speech_train.npy"),
                               index.split("train"), "train")[GROUPS[0]].embeddings)
    rng.choice(train_n, min(n, train_n), replace=False)
    group = test_queries(dirs["speech"], np.load(dirs["sen"] / "embeddings" / "speech_test.npy"), records)[GROUPS[0]]
    return index, records, group, rng.choice(len(group.embeddings), n, replace=False)


def test_drawn_by_snapshot_judges_every_snapshot_on_both_splits(smoke_gan, one_thread, tmp_path):
    from s2i_lib import pipeline
    from s2i_lib.evaluation.attribute_judge import attribute_accuracy
    from s2i_lib.reports.evaluation import drawn_by_snapshot
    from s2i_lib.gan import load_generator
    from s2i_lib.inference import SpeechToImage, load_speech_encoder

    cfg, runs = smoke_gan.cfg, smoke_gan.runs_dir
    dirs = {s: pipeline.step_dir(s, cfg, runs) for s in ("data", "speech", "sen", "gan")}
    judge = _tiny_judge(cfg, dirs, 64)
    table = drawn_by_snapshot(cfg, dirs["gan"], runs, n=6)
    snapshots = sorted(dirs["gan"].glob("checkpoints/generator_ema_*.pt"))
    assert snapshots and table.index.tolist() == [(int(p.stem[-7:]), split) for p in snapshots
                                                  for split in ("train", "test")]
    assert table["overall"].between(0, 1).all()
    # the last snapshot's test row, computed by hand: only the first 6 of the seeded draw's captions
    # are judged, each on the image of that snapshot's generator
    index, records, group, pick = _judged_test_captions(cfg, dirs, 6)
    s2i = SpeechToImage(load_speech_encoder(dirs["sen"]), load_generator(snapshots[-1]), cfg.speech, "cpu")
    images = s2i.generate_each(group.embeddings[pick], seed=cfg.seed)
    mentions = group.mentions(records)
    expected = attribute_accuracy(judge.predict(images), [mentions[i] for i in pick])["overall"]
    assert table.loc[(int(snapshots[-1].stem[-7:]), "test"), "overall"] == pytest.approx(expected, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="generator_ema"):
        drawn_by_snapshot(cfg, tmp_path, runs)

    # the oracle: a generator trained on the captions' one-hots is judged on the same
    from s2i_lib.data.toy_birds import ATTRIBUTES
    from s2i_lib.reports.evaluation import mention_onehots
    from s2i_lib.steps.gan import train_gan_step
    onehots = np.stack([mention_onehots(list(r.mentions), ATTRIBUTES) for r in index.split("train")])
    train_gan_step(cfg, tmp_path / "oracle", {s: dirs[s] for s in ("data", "speech", "sen")}, embeddings=onehots)
    last = sorted((tmp_path / "oracle").glob("checkpoints/generator_ema_*.pt"))[-1]
    oracle = SpeechToImage(load_speech_encoder(dirs["sen"]), load_generator(last), cfg.speech, "cpu")
    images = oracle.generate_each(mention_onehots([mentions[i] for i in pick], ATTRIBUTES), seed=cfg.seed)
    expected = attribute_accuracy(judge.predict(images), [mentions[i] for i in pick])["overall"]
    table = drawn_by_snapshot(cfg, tmp_path / "oracle", runs, n=6, oracle=True)
    assert table.loc[(int(last.stem[-7:]), "test"), "overall"] == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match=r"expected embeddings \(B, 52\)"):   # speech's do not fit it
        drawn_by_snapshot(cfg, tmp_path / "oracle", runs, n=6)


def test_resolution_ladder_and_other_species():
    from s2i_lib.reports.evaluation import other_species, resolution_ladder
    assert resolution_ladder(64) == [64, 32, 24, 16, 12, 8]
    assert resolution_ladder(16) == [16, 8, 6, 4, 3, 2]
    classes = np.array([0, 0, 1, 1, 2, 2, 2])
    picks = other_species(classes, np.arange(7).repeat(20), seed=3)
    assert (classes[picks] != classes[np.arange(7).repeat(20)]).all()
    assert set(picks[classes[np.arange(7).repeat(20)] == 2]) == {0, 1, 2, 3}   # any image of another class
    np.testing.assert_array_equal(picks, other_species(classes, np.arange(7).repeat(20), seed=3))
    with pytest.raises(ValueError, match="at least two classes"):
        other_species(np.zeros(3), np.arange(3), seed=0)


def test_attribute_accuracy_references_judge_the_captions_own_and_other_images(smoke_gan, one_thread):
    from s2i_lib import pipeline
    from s2i_lib.data.torch_datasets import image_cache
    from s2i_lib.evaluation.attribute_judge import attribute_accuracy, through_resolution
    from s2i_lib.reports.evaluation import (attribute_accuracy_references, drawn_test_captions, other_species,
                                           plot_references, resolution_ladder)

    cfg, runs = smoke_gan.cfg, smoke_gan.runs_dir
    dirs = {s: pipeline.step_dir(s, cfg, runs) for s in ("data", "speech", "sen")}
    size = cfg.gan.stage_sizes[-1]
    judge = _tiny_judge(cfg, dirs, size)
    table, examples = attribute_accuracy_references(cfg, runs, n=6)
    ladder = resolution_ladder(size)
    assert table.index.tolist() == (["own image"] + [f"own image through {px} px" for px in ladder[1:]]
                                    + ["another species' image"])
    assert table["overall"].between(0, 1).all()
    # by hand: the same seeded draw of test captions as drawn_by_snapshot (the training split's draw first)
    index, records, group, pick = _judged_test_captions(cfg, dirs, 6)
    positions = group.image_pos[pick]
    said = [group.mentions(records)[i] for i in pick]
    got_positions, got_said = drawn_test_captions(cfg, runs, n=6)   # what bench_reference_cgan.py judges
    np.testing.assert_array_equal(got_positions, positions)
    assert got_said == said
    real = image_cache(index, "test", size)
    own = np.asarray(real[positions])
    others = np.asarray(real[other_species(np.array([r.class_id for r in records]), positions, cfg.seed)])
    expected = {"own image": own, f"own image through {ladder[3]} px": through_resolution(own, ladder[3]),
                "another species' image": others}
    for name, images in expected.items():
        assert table.loc[name, "overall"] == pytest.approx(
            attribute_accuracy(judge.predict(images), said)["overall"], abs=1e-3), name
    assert examples.shape == (6, len(ladder) + 1, size, size, 3)
    np.testing.assert_array_equal(examples[:, 0], own)
    np.testing.assert_array_equal(examples[:, -1], others)
    fig = plot_references(examples, table.index.tolist())
    assert len(fig.axes) == 6 * (len(ladder) + 1)


def _own_runs(smoke_gan, tmp_path):
    """A runs folder with the session's smoke steps up to the gan (linked) and no eval: the
    eval tests below must not see each other's evaluation."""
    runs = tmp_path / "runs"
    (runs / smoke_gan.cfg.profile).mkdir(parents=True)
    for s in ("data", "speech", "sen", "gan"):
        (runs / smoke_gan.cfg.profile / s).symlink_to(smoke_gan.runs_dir / smoke_gan.cfg.profile / s)
    return runs


FAKE_ABLATION = {"w/o RS, training voices": {"IS": 1.0}}


def _must_not_run(*args, **kwargs):
    raise AssertionError("the full model was evaluated again")


def _eval_with_ablations_without_the_full_model(cfg, runs, monkeypatch) -> dict:
    """``eval --ablations`` with the full model's evaluation forbidden and a stand-in for the
    ablations (the real ones are run by the last test of this file); its results."""
    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.steps import ablations
    from s2i_lib.steps import eval as eval_step

    monkeypatch.setattr(eval_step, "evaluate_model", _must_not_run)
    monkeypatch.setattr(ablations, "run_ablations", lambda *a, **k: dict(FAKE_ABLATION))
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, ablations=True))
    return read_json(pipeline.ensure("eval", cfg, runs) / "results.json")["results"]


def test_eval_interrupted_in_the_ablations_resumes_after_the_full_model(smoke_gan, one_thread, monkeypatch,
                                                                         tmp_path):
    """The full model's figures are written before the ablations start: a resumed run reads them
    instead of generating and judging again, and the final table still has them."""
    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.steps import ablations

    cfg = dataclasses.replace(smoke_gan.cfg, eval=dataclasses.replace(smoke_gan.cfg.eval, ablations=True))
    runs = _own_runs(smoke_gan, tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(ablations, "run_ablations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.ensure("eval", cfg, runs)
    eval_dir = pipeline.step_dir("eval", cfg, runs)
    kept = read_json(eval_dir / "model_results.json")
    assert set(kept) == {"real test images", "real training images (FID floor)", "S2IGAN, training voices",
                         "S2IGAN, held-out voices"}
    assert not (eval_dir / "metrics.json").exists()

    results = _eval_with_ablations_without_the_full_model(cfg, runs, monkeypatch)
    assert results == {**kept, **FAKE_ABLATION}


def test_ablations_after_a_plain_eval_extend_it_and_a_plain_eval_keeps_them(smoke_gan, one_thread, monkeypatch,
                                                                             tmp_path):
    """``eval --ablations`` after ``eval`` reuses the full model's figures; ``eval`` after it (as a
    later ``make run``) keeps the ablations instead of throwing them away."""
    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.steps import ablations

    plain = smoke_gan.cfg
    runs = _own_runs(smoke_gan, tmp_path)
    eval_dir = pipeline.ensure("eval", plain, runs)
    full = read_json(eval_dir / "results.json")["results"]
    asked = dataclasses.replace(plain, eval=dataclasses.replace(plain.eval, ablations=True))
    assert pipeline.state("eval", asked, runs).status == "partial"

    extended = _eval_with_ablations_without_the_full_model(plain, runs, monkeypatch)
    assert extended == {**full, **FAKE_ABLATION}
    assert read_json(eval_dir / "metrics.json")["config"]["eval"]["ablations"] is True

    monkeypatch.setattr(ablations, "run_ablations", _must_not_run)
    assert pipeline.state("eval", plain, runs).status == "done"
    pipeline.ensure("eval", plain, runs)
    assert read_json(eval_dir / "results.json")["results"] == extended


def test_ablations_train_each_variant_with_its_change_on_the_same_judges(smoke_gan, one_thread, tmp_path):
    """A real ``eval --ablations`` on smoke: one row per variant and voice group, each variant's
    generator trained with the change the paper's ablation names, "w/o SEN" on other embeddings."""
    import torch

    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.steps.ablations import VARIANTS, untrained_speech_encoder, utterance_embeddings
    from s2i_lib.inference import load_speech_encoder

    runs = _own_runs(smoke_gan, tmp_path)
    cfg = dataclasses.replace(smoke_gan.cfg, eval=dataclasses.replace(smoke_gan.cfg.eval, ablations=True))
    eval_dir = pipeline.ensure("eval", cfg, runs)
    results = read_json(eval_dir / "results.json")["results"]
    voiced = [f"{v}, {g}" for v in ("S2IGAN", "w/o dense", "w/o RS", "w/o SEN")
              for g in ("training voices", "held-out voices")]
    assert set(results) == {"real test images", "real training images (FID floor)", *voiced, "text-conditioned, written captions"}
    # the floor: as many real training images (other species) as test images, against the test images
    floor = results["real training images (FID floor)"]
    assert floor["n_real"] == floor["n_fake"] == len(read_dataset(runs / "smoke" / "data").split("test"))
    assert 0 < floor["fid"] < results["S2IGAN, training voices"]["fid"]
    assert all("colour swap" in results[k] for k in voiced)
    assert "colour swap" not in results["text-conditioned, written captions"]   # no voice to re-speak

    def trained_with(name):
        folder = eval_dir / "ablations" / name.replace("/", "").replace(" ", "_") / "gan"
        return torch.load(folder / "generator.pt", weights_only=True)["meta"]["gan"]
    for name, change in VARIANTS.items():
        gan = trained_with(name)
        assert {k: gan[k] for k in change} == change
        assert {k: v for k, v in gan.items() if k not in change} == {
            k: v for k, v in dataclasses.asdict(cfg.gan).items() if k not in change}

    test = read_dataset(runs / "smoke" / "data").split("test")
    sen_dir = runs / "smoke" / "sen"
    untrained = untrained_speech_encoder(cfg, load_speech_encoder(sen_dir, "cpu").n_mels)
    random_emb = utterance_embeddings(untrained, runs / "smoke" / "speech", "test", test, torch.device("cpu"))
    trained_emb = np.load(sen_dir / "embeddings" / "speech_test.npy")
    assert random_emb.shape == trained_emb.shape and not np.allclose(random_emb, trained_emb, atol=1e-3)


def _not_again(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was computed again")
    return fail


def test_the_data_step_builds_the_instruments_and_the_eval_step_only_loads_them(smoke_gan, runs_copy, one_thread,
                                                                                monkeypatch):
    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.evaluation import attribute_judge, fid, protocol
    from s2i_lib.steps.profile import evaluation_settings
    inception_score = importlib.import_module("s2i_lib.evaluation.inception_score")  # the package re-exports
                                                                                      # a function of that name
    cfg, size = smoke_gan.cfg, smoke_gan.cfg.gan.stage_sizes[-1]
    data_dir = pipeline.step_dir("data", cfg, runs_copy)   # a copy: the last call writes into its cache
    figures = read_json(data_dir / "metrics.json")["figures"]["instruments"]
    assert figures["size"] == size and figures["time_s"] > 0
    assert 0 <= figures["is_classifier_heldout_accuracy"] <= 1
    assert 0 <= figures["attribute_judge_lowest_heldout_accuracy"] <= 1
    cache = data_dir / "cache"
    for name in (f"inception_test_{size}.npy", f"is_classifier_{size}_seed{cfg.seed}.pt",
                 f"is_features_{size}_seed{cfg.seed}.npy",
                 f"attribute_judge_{size}_seed{cfg.seed}.pt"):
        assert (cache / name).is_file(), name
    # what the eval step asks for is loaded, not computed or trained again
    monkeypatch.setattr(fid, "inception_features", _not_again("the real test images' Inception features"))
    monkeypatch.setattr(inception_score, "cache_backbone_features", _not_again("the IS classifier"))
    monkeypatch.setattr(attribute_judge, "render_attribute_set", _not_again("the attribute judge"))
    built = protocol.instruments(evaluation_settings(cfg), data_dir, size)
    assert built.real.shape[1:] == (size, size, 3) and len(built.real_features) == len(built.real)
    assert built.attribute_judge is not None
    assert round(built.is_classifier.report["heldout_accuracy"], 4) == figures["is_classifier_heldout_accuracy"]
    # another size (a GAN whose last stage is not the data's) builds its own, in the eval step
    with pytest.raises(AssertionError, match="computed again"):
        protocol.instruments(evaluation_settings(cfg), data_dir, size // 2)
