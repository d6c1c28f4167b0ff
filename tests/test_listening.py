"""Listening tests: degraded audio, the groups a config asks for, and their rows in the sen and eval
results (on the smoke profile's real run)."""
import numpy as np
import pytest
import torch

from s2i_lib.config import ConfigError, load_config
from s2i_lib.speech.acoustics import room_impulse_response
from s2i_lib.speech.listening import (DEGRADATIONS, ListeningGroup, degrade, listening_captions,
                                      listening_groups, speak_groups)
from s2i_lib.speech.tts import ESpeakSynthesizer

RATE = 22050


@pytest.fixture(scope="module")
def speech():
    return ESpeakSynthesizer("espeak:en-us").synthesize("a small bird with a yellow belly and brown wings")


def _power(x):
    return float(np.mean(np.asarray(x, np.float64) ** 2))


def test_every_degradation_keeps_rate_length_and_range_and_is_repeatable(speech):
    for kind in DEGRADATIONS:
        y = degrade(speech, RATE, kind, seed=0, key="u1")
        assert y.shape == speech.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.abs(y).max() <= 1
        assert not np.allclose(y, speech, atol=1e-3), kind
        np.testing.assert_array_equal(y, degrade(speech, RATE, kind, seed=0, key="u1"))
    assert not np.array_equal(degrade(speech, RATE, "noise_10db", key="u1"), degrade(speech, RATE, "noise_10db", key="u2"))
    with pytest.raises(ValueError, match="unknown degradation 'underwater'"):
        degrade(speech, RATE, "underwater")


def test_noise_is_added_at_10_db_snr(speech):
    noise = degrade(speech, RATE, "noise_10db") - speech
    assert 10 * np.log10(_power(speech) / _power(noise)) == pytest.approx(10, abs=0.3)


def test_the_telephone_band_removes_what_is_above_4_khz_and_below_300_hz(speech):
    y = degrade(speech, RATE, "telephone")
    freqs = np.fft.rfftfreq(len(speech), 1 / RATE)

    def share(x, lo, hi):
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        return spectrum[(freqs >= lo) & (freqs < hi)].sum() / spectrum.sum()
    assert share(y, 4500, RATE / 2) < share(speech, 4500, RATE / 2) / 20     # eSpeak has some up there
    assert share(y, 0, 150) < share(speech, 0, 150) / 10


def test_reverberation_leaves_a_tail_after_the_sound_stops():
    burst = np.zeros(RATE, np.float32)
    burst[:2205] = np.random.default_rng(0).normal(0, 0.3, 2205)      # 0.1 s of sound, then silence
    y = degrade(burst, RATE, "reverb")
    tail = slice(int(0.2 * RATE), int(0.3 * RATE))                        # 0.1-0.2 s after it stopped
    assert _power(burst[tail]) == 0
    assert 10 * np.log10(_power(y[tail]) / _power(y[:2205])) > -40
    rir = room_impulse_response(RATE)
    late = rir[int(0.5 * RATE):]
    assert float((rir ** 2).sum()) == pytest.approx(1, abs=1e-5) and _power(late) < _power(rir[1:2205]) / 100


def test_groups_follow_the_config_and_say_which_voice_is_in_training():
    cfg = load_config("default")
    names = [g.name for g in listening_groups(cfg.speech, cfg.sen)]
    assert names[:4] == ["speech (espeak:en-gb-scotland)", "speech (espeak:en-029)", "speech (espeak:en-us-nyc)",
                         "speech (piper:joe, in training)"]
    assert names[4] == "speech (espeak:en-us, clean)" and len(names) == 4 + 1 + len(DEGRADATIONS) + 1
    assert names[-1] == "speech (espeak:en-us, held-out phrasings)"
    groups = listening_groups(cfg.speech, cfg.sen)
    assert [g.degradation for g in groups[5:-1]] == list(cfg.sen.listening_degradations)
    assert [g.held_out_phrasing for g in groups] == [False] * (len(groups) - 1) + [True]
    only_phrasings = load_config("default", {"sen.listening_voices": [], "sen.listening_degradations": []})
    assert [g.name for g in listening_groups(only_phrasings.speech, only_phrasings.sen)] == names[4:5] + names[-1:]
    assert ListeningGroup("speech (espeak:en-us, noise at 10 dB SNR)", "espeak:en-us").slug == \
        "speech__espeak_en_us__noise_at_10_dB_SNR"
    none = load_config("default", {"sen.listening_voices": [], "sen.listening_degradations": [],
                                   "sen.listening_held_out_phrasings": False})
    assert listening_groups(none.speech, none.sen) == []


def test_listening_captions_spread_over_the_test_images():
    pos, cap = listening_captions(1000, 5, 500)
    assert len(pos) == 500 and pos[0] == 0 and pos[-1] == 999 and len(set(pos)) == 500
    assert set(cap) == set(range(5))
    pos, cap = listening_captions(4, 2, 6)
    assert pos.tolist() == [0, 1, 2, 3] and cap.tolist() == [0, 1, 0, 1]


def _correlation(x, y):
    n = min(len(x), len(y))
    return float(torch.corrcoef(torch.stack([x[:n].flatten(), y[:n].flatten()]))[0, 1])


def test_speaking_the_groups_in_two_processes_says_what_one_process_says():
    """The listening tests share their utterances among worker processes: each group must hear
    each of its captions as one process would have said it, in its order. (Not bit for bit: eSpeak's
    output depends a little on what its process said before, tts.py.)"""
    from s2i_lib.device import cpu_count
    if cpu_count() < 2:
        pytest.skip("one core: speak_groups would say everything in one process")
    cfg = load_config("smoke")
    texts = ["a small bird with a yellow belly and brown wings", "this bird has a red crown",
             "a large bird with blue wings, a white belly and a long pointed beak"]
    jobs = [(ListeningGroup("clean", "espeak:en-us"), texts),
            (ListeningGroup("noisy", "espeak:en-us", "noise_10db"), texts),
            (ListeningGroup("caribbean", "espeak:en-029"), texts[::-1])]
    one = speak_groups(jobs, cfg.speech, seed=3, workers=1, progress=False)
    two = speak_groups(jobs, cfg.speech, seed=3, workers=2, progress=False, min_parallel=0, chunk=2)
    assert [len(f) for f in two] == [3, 3, 3]
    for a, b in zip(one, two):
        for x, y in zip(a, b):
            assert y.shape[1] == cfg.speech.n_mels and abs(len(x) - len(y)) <= 0.02 * len(x)
            assert _correlation(x, y) > 0.85
    # the captions differ in length, so one said in another's place would show
    assert len({len(f) for f in two[0]}) == 3
    # the same caption with the same prosody draw (index 1) in another accent is heard otherwise
    assert _correlation(two[0][1], two[2][1]) < 0.8
    # the noisy group says each caption as the clean one does (same length), through noise
    for clean, noisy in zip(two[0], two[1]):
        assert abs(len(clean) - len(noisy)) <= 0.02 * len(clean) and _correlation(clean, noisy) < 0.8


@pytest.mark.parametrize("key,value,match", [
    ("sen.listening_degradations", ["underwater"], "must be one of noise_10db"),
    ("sen.listening_voices", ["espeak:en-us", "espeak:en-us"], "lists a voice twice"),
    ("sen.listening_voices", ["festival:kal"], "festival"),
    ("sen.listening_captions", 1, "at least 2"),
])
def test_bad_listening_config_names_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config("smoke", {key: value})
    assert key in str(e.value)


def test_sen_and_eval_report_every_listening_group(smoke_gan, one_thread):
    from s2i_lib import pipeline
    from s2i_lib.artifacts import read_json
    from s2i_lib.reports import evaluation as eval_report
    from s2i_lib.reports import sen as sen_report
    cfg, runs = smoke_gan.cfg, smoke_gan.runs_dir
    groups = [g.name for g in listening_groups(cfg.speech, cfg.sen)]
    assert len(groups) >= 3
    sen_dir = pipeline.step_dir("sen", cfg, runs)
    results = read_json(sen_dir / "results.json")
    n_test = len(np.load(sen_dir / "embeddings" / "image_test.npy"))
    n = min(cfg.sen.listening_captions, n_test)
    for name in groups:
        assert results[name]["queries"] == n and 0 <= results[name]["attribute_precision@10"] <= 1
    index = read_json(sen_dir / "embeddings" / "listening.json")
    assert list(index["groups"]) == groups and len(index["image_pos"]) == n
    # the held-out phrasings say the same test captions' attributes in other words
    from s2i_lib.data.layout import read_dataset
    test = read_dataset(pipeline.step_dir("data", cfg, runs)).split("test")
    said = index["groups"][groups[-1]]["texts"]
    assert groups[-1].endswith("held-out phrasings)") and len(said) == n
    assert all(t != test[p].captions[c] for t, p, c in zip(said, index["image_pos"], index["caption_index"]))
    emb = np.load(sen_dir / "embeddings" / "listening" / index["groups"][groups[0]]["file"])
    assert emb.shape == (n, cfg.sen.embed_dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3)
    table = sen_report.listening_table(sen_dir)
    assert set(groups) <= set(table.index) and table.loc["speech (training voices)", "vs training voices"] == 0

    eval_dir = pipeline.ensure("eval", cfg, runs)
    full = read_json(eval_dir / "results.json")
    assert list(full["listening"]) == groups
    assert all(0 <= full["listening"][g]["attribute accuracy"] <= 1 and full["listening"][g]["queries"] == n
               for g in groups)
    table = eval_report.listening_table(full)
    assert list(table.index) == ["training voices", "held-out voices", *groups]
    assert table.loc[groups[0], "vs training voices"] == pytest.approx(
        full["listening"][groups[0]]["attribute accuracy"] - full["results"]["S2IGAN, training voices"]["attribute accuracy"], abs=1e-3)
