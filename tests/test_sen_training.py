"""The sen step end to end on a tiny real run: validation classes, export, evaluation, resume."""
import json

import numpy as np
import pytest
import torch

from s2i_lib.config import load_config
from s2i_lib.pipeline import ensure
from s2i_lib.sen.training import (MIN_FRAMES, SenModel, TextEncoder, encode_text, speech_queries,
                                  train_sen_model, validation_classes)
from s2i_lib.speech.features import FeatureStore

TINY = {"data.n_train_classes": 5, "data.n_test_classes": 2, "data.images_per_class": 2,
        "data.workers": 1, "speech.voices": ["espeak:en-us", "espeak:en-us+f3"],
        "speech.voice_weights": [], "speech.heldout_voices": ["espeak:en-gb-x-rp+m3"],
        "speech.workers": 1, "sen.epochs": 3, "sen.batch_size": 4, "sen.feature_views": 2,
        "sen.val_fraction": 0.2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    cfg = load_config("smoke", TINY)
    sen_dir = ensure("sen", cfg, runs, log=lambda s: None)
    return cfg, runs, sen_dir


def test_validation_classes_are_train_classes_and_reproducible():
    classes = list(range(10, 40))
    val = validation_classes(classes * 2, 0.1, seed=0)
    assert len(val) == 3 and set(val) <= set(classes)
    assert val == validation_classes(classes, 0.1, seed=0) != validation_classes(classes, 0.1, seed=1)
    with pytest.raises(ValueError, match="too few"):
        validation_classes([1, 2], 0.4, seed=0)


def test_text_is_encoded_as_characters_padded_to_the_encoder_minimum():
    ids = encode_text("A red bird!")
    assert len(ids) == MIN_FRAMES and ids[0] == 2 + 1  # "a" is the second symbol of the alphabet
    assert ids[-1] == 2  # padded with spaces
    assert (encode_text("a") != encode_text("b")).any()
    assert encode_text("!")[0] == 1  # unknown character
    out = TextEncoder(load_config("smoke").sen).eval()(torch.stack([encode_text("a small red bird")]), torch.tensor([16]))
    assert torch.allclose(out.norm(dim=1), torch.ones(1), atol=1e-5)


def test_step_exports_embeddings_aligned_with_the_feature_store(run):
    cfg, runs, sen_dir = run
    metrics = json.loads((sen_dir / "metrics.json").read_text())
    val = json.loads((sen_dir / "val_classes.json").read_text())
    assert len(val) == 1 and metrics["figures"]["images"] == {"train": 8, "val": 2, "test": 4}
    for split in ("train", "test"):
        store = FeatureStore(runs / "smoke" / "speech", split)
        emb = np.load(sen_dir / "embeddings" / f"speech_{split}.npy")
        assert emb.shape == (len(store), cfg.sen.embed_dim)
        assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
        assert np.load(sen_dir / "embeddings" / f"image_{split}.npy").shape[1] == cfg.sen.embed_dim
    results = json.loads((sen_dir / "results.json").read_text())
    listening = {"speech (espeak:en-029)", "speech (piper:joe)", "speech (espeak:en-us, clean)",   # smoke.yaml's
                 "speech (espeak:en-us, noise at 10 dB SNR)", "speech (espeak:en-us, telephone band (8 kHz))",
                 "speech (espeak:en-us, held-out phrasings)"}
    assert set(results) == {"speech (training voices)", "speech (held-out voices)", "text"} | listening
    seen = results["speech (training voices)"]
    assert 0 <= seen["attribute_precision@10"] <= 1 and seen["queries"] == 4 * 2
    assert results["speech (held-out voices)"]["queries"] == 4 * 2  # every test caption, once more
    for name in ("speech_encoder.pt", "image_encoder.pt", "text_encoder.pt"):
        assert (sen_dir / name).exists()
    history = metrics["figures"]["speech_history"]
    assert history["epoch"] == [1, 2, 3] and history["best_epoch"] in history["val_epoch"]


def test_training_resumes_from_its_checkpoint(run, tmp_path, capsys):
    cfg, runs, sen_dir = run
    from s2i_lib.data.layout import read_dataset
    index = read_dataset(runs / "smoke" / "data")
    train = index.split("train")
    store = FeatureStore(runs / "smoke" / "speech", "train")
    q = speech_queries(store, {r.key: i for i, r in enumerate(train)})
    feats = np.random.default_rng(0).normal(size=(len(train), 2, 1280)).astype(np.float32)
    labels = np.array([r.class_id for r in train])
    _, labels = np.unique(labels, return_inverse=True)
    raw = np.array([r.class_id for r in train])

    def model():
        torch.manual_seed(0)
        from s2i_lib.sen.speech_encoder import SpeechEncoder
        return SenModel(SpeechEncoder.from_config(cfg.sen), 1280, cfg.sen, int(labels.max()) + 1)

    short = load_config("smoke", {**TINY, "sen.epochs": 1}).sen
    full = load_config("smoke", {**TINY, "sen.epochs": 2}).sen
    train_sen_model(model(), q, feats, labels, raw, q, feats, train, short, tmp_path, "t", torch.device("cpu"), 0)
    history = train_sen_model(model(), q, feats, labels, raw, q, feats, train, full, tmp_path, "t",
                              torch.device("cpu"), 0)
    assert "resuming at epoch 2/2" in capsys.readouterr().out
    assert history["epoch"] == [1, 2]


def _tiny_training_inputs(cfg, runs):
    from s2i_lib.data.layout import read_dataset
    train = read_dataset(runs / "smoke" / "data").split("train")
    q = speech_queries(FeatureStore(runs / "smoke" / "speech", "train"), {r.key: i for i, r in enumerate(train)})
    feats = np.random.default_rng(0).normal(size=(len(train), 2, 1280)).astype(np.float32)
    raw = np.array([r.class_id for r in train])
    _, labels = np.unique(raw, return_inverse=True)
    from s2i_lib.sen.speech_encoder import SpeechEncoder
    torch.manual_seed(0)
    model = SenModel(SpeechEncoder.from_config(cfg.sen), 1280, cfg.sen, int(labels.max()) + 1)
    return model, (q, feats, labels, raw, q, feats, train)


def test_a_step_with_a_non_finite_gradient_is_skipped(run, tmp_path):
    cfg, runs, _ = run
    model, inputs = _tiny_training_inputs(cfg, runs)
    calls = []

    def nan_once(grad):   # the first backward gives the GRU's weights a NaN gradient, as bf16 rarely does
        calls.append(1)
        return torch.full_like(grad, float("nan")) if len(calls) == 1 else grad

    model.query_encoder.gru.forward_layers[0].weight_hh_l0.register_hook(nan_once)
    sen = load_config("smoke", {**TINY, "sen.epochs": 2}).sen
    history = train_sen_model(model, *inputs, sen, tmp_path, "t", torch.device("cpu"), 0)
    assert len(calls) >= 2                       # trained on after the skipped step
    assert history["skipped_steps"] == [1, 0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_whose_every_step_is_non_finite_stops_with_one_clear_error(run, tmp_path):
    cfg, runs, _ = run
    model, inputs = _tiny_training_inputs(cfg, runs)
    model.query_encoder.gru.forward_layers[0].weight_hh_l0.register_hook(lambda g: torch.full_like(g, float("nan")))
    sen = load_config("smoke", {**TINY, "sen.epochs": 1}).sen
    with pytest.raises(FloatingPointError, match="non-finite loss or gradient.*lower sen.lr"):
        train_sen_model(model, *inputs, sen, tmp_path, "t", torch.device("cpu"), 0)
    assert not (tmp_path / "t_speech_checkpoint.pt").exists() and not list(tmp_path.glob("*checkpoint*"))


def test_more_skipped_steps_than_allowed_in_one_epoch_stop_the_training(run, tmp_path, monkeypatch):
    import s2i_lib.sen.training as training
    cfg, runs, _ = run
    model, inputs = _tiny_training_inputs(cfg, runs)
    calls = []

    def nan_once(grad):
        calls.append(1)
        return torch.full_like(grad, float("nan")) if len(calls) == 1 else grad

    model.query_encoder.gru.forward_layers[0].weight_hh_l0.register_hook(nan_once)
    monkeypatch.setattr(training, "MAX_SKIPPED_STEPS", 0)   # the one skip is already too many
    sen = load_config("smoke", {**TINY, "sen.epochs": 1}).sen
    with pytest.raises(FloatingPointError, match="1 steps of epoch 1 had a non-finite loss or gradient"):
        train_sen_model(model, *inputs, sen, tmp_path, "t", torch.device("cpu"), 0)
