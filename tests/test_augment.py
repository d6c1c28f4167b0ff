"""Acoustic augmentation of training speech: the chains drawn, what they do to a waveform, and the
augmented copies the speech step plans and featurises next to the clean utterances."""
from collections import Counter

import numpy as np
import pytest

from s2i_lib.config import ConfigError, load_config
from s2i_lib.data.layout import read_dataset
from s2i_lib.speech import augment
from s2i_lib.speech.features import log_mel
from s2i_lib.speech.synthesis import plan_utterances, write_caption_dataset
from s2i_lib.speech.tts import ESpeakSynthesizer

RATE = 22050


@pytest.fixture(scope="module")
def speech():
    return ESpeakSynthesizer("espeak:en-us").synthesize("a small bird with a yellow belly and brown wings")


def test_chains_are_reproducible_never_empty_and_drawn_at_their_rates():
    chains = [augment.sample_augmentation(0, f"u{i}") for i in range(3000)]
    assert chains[:50] == [augment.sample_augmentation(0, f"u{i}") for i in range(50)]
    assert chains[:50] != [augment.sample_augmentation(1, f"u{i}") for i in range(50)]
    assert all(set(c) - {"seed"} for c in chains)
    counts = Counter(k for c in chains for k in c)
    for step, key in (("speed", "speed"), ("reverb", "reverb_rt60_s"), ("noise", "noise_snr_db"),
                      ("telephone", "telephone"), ("gain", "gain_db")):
        assert abs(counts[key] / 3000 - augment.PROBABILITIES[step]) < 0.06, (step, counts)
    assert {c["speed"] for c in chains if "speed" in c} == set(augment.SPEEDS)
    assert all(augment.SNR_RANGE_DB[0] <= c["noise_snr_db"] <= augment.SNR_RANGE_DB[1] for c in chains if "noise_snr_db" in c)
    share = sum(augment.wants_copy(0.3, 0, f"u{i}") for i in range(3000)) / 3000
    assert abs(share - 0.3) < 0.03 and not augment.wants_copy(0.0, 0, "u1")


@pytest.mark.parametrize("chain", [{"speed": 0.9}, {"speed": 1.1, "noise_snr_db": 20.0, "seed": 3},
                                   {"reverb_rt60_s": 0.5, "telephone": True, "seed": 1}, {"telephone": True}])
def test_apply_gives_the_length_the_feature_store_allocates(speech, chain):
    y = augment.apply(speech, RATE, chain)
    assert len(y) == augment.output_samples(len(speech), RATE, chain)
    assert y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1
    np.testing.assert_array_equal(y, augment.apply(speech, RATE, chain))
    if "speed" in chain:   # faster speech is shorter
        assert (len(y) < len(speech)) == (chain["speed"] > 1)


def test_noise_is_added_at_the_drawn_snr(speech):
    y = augment.apply(speech, RATE, {"noise_snr_db": 15.0, "seed": 7})
    noise = y - speech
    assert 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)) == \
        pytest.approx(15, abs=0.3)


def test_gain_scales_clips_and_still_reaches_the_features(speech):
    quiet = augment.apply(speech, RATE, {"gain_db": -20.0})
    np.testing.assert_allclose(quiet, speech * 0.1, atol=1e-6)
    assert np.abs(augment.apply(speech, RATE, {"gain_db": 40.0})).max() == 1     # clipped
    # CMVN does not cancel it: the log's floor meets the quiet frames at another level
    assert float((log_mel(speech) - log_mel(quiet)).abs().mean()) > 0.01


def test_copies_are_planned_for_training_utterances_only(tmp_path):
    index = read_dataset(write_caption_dataset(tmp_path / "data", n_train_classes=10, n_test_classes=2))
    cfg = load_config("smoke", {"speech.augment_share": 0.5, "speech.voices": ["espeak:en-us"],
                                "speech.voice_weights": [], "speech.captions_per_image": 2})
    plan = plan_utterances(index.records, cfg.speech, seed=0)
    copies = [u for u in plan if u.augment is not None]
    clean = {u.id: u for u in plan if u.augment is None}
    assert copies and all(u.split == "train" and u.id.endswith("~aug") for u in copies)
    n_train = sum(u.split == "train" for u in clean.values())
    assert 0.3 < len(copies) / n_train < 0.7
    for u in copies:
        original = clean[u.id.removesuffix("~aug")]
        assert (u.path, u.text, u.voice, u.params) == (original.path, original.text, original.voice, original.params)
        assert u.augment == augment.sample_augmentation(0, original.id)
    off = load_config("smoke", {"speech.voices": ["espeak:en-us"], "speech.voice_weights": [], "speech.augment_share": 0})
    assert not any(u.augment for u in plan_utterances(index.records, off.speech, seed=0))
    with pytest.raises(ConfigError, match="speech.augment_share"):
        load_config("smoke", {"speech.augment_share": 1.5})


def test_the_speech_step_featurises_each_copy_through_its_chain(tmp_path):
    from s2i_lib.speech.features import FeatureStore, num_frames
    from s2i_lib.steps.speech import build_speech_step
    from s2i_lib.speech.synthesis import read_jsonl
    data = write_caption_dataset(tmp_path / "data", n_train_classes=3, n_test_classes=1, images_per_class=2)
    cfg = load_config("smoke", {"speech.augment_share": 1.0, "speech.voices": ["espeak:en-us"],
                                "speech.voice_weights": [], "speech.heldout_voices": [],
                                "speech.captions_per_image": 2, "speech.workers": 1})
    out = tmp_path / "speech"
    figures = build_speech_step(cfg, out, {"data": data}, progress=False)
    manifest = read_jsonl(out / "manifest.jsonl")
    copies = [r for r in manifest if r.get("augment")]
    assert len(copies) == 3 * 2 * 2 == figures["augmented"]                # every training utterance once
    assert figures["unique_wavs"] == len(manifest) - len(copies)          # no WAV of their own
    store = FeatureStore(out, "train")
    by_id = {r["id"]: r for r in manifest}
    for r in copies:
        clean = by_id[r["id"].removesuffix("~aug")]
        assert r["path"] == clean["path"]
        feats = store.by_id(r["id"])
        assert feats.shape == (num_frames(r["samples"]), 40)
        assert r["samples"] == augment.output_samples(clean["samples"], RATE, r["augment"])
        original = store.by_id(clean["id"])
        if feats.shape == original.shape:
            assert float((feats - original).abs().mean()) > 0.05                # not the clean features
