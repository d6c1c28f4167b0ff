"""What the speech encoder listens to: eSpeak's word timings, the encoder's attention weights, and
their shares per kind of word (notebook 02's last section)."""
import re

import numpy as np
import pytest
import torch

from s2i_lib.config import load_config
from s2i_lib.data import toy_birds, toy_flowers
from s2i_lib.data.captions import make_captions, word_kind
from s2i_lib.sen import word_attention as wa
from s2i_lib.sen.speech_encoder import SpeechEncoder, frame_centres_s
from s2i_lib.speech.tts import ESpeakSynthesizer, SpokenWord, _word_spans, sample_params

TEXT = "a small bird with a yellow belly, and brown wings"


@pytest.fixture(scope="module")
def espeak():
    return ESpeakSynthesizer("espeak:en-us")


def test_espeak_word_events_give_every_word_in_order(espeak):
    audio, words = espeak.synthesize_with_words(TEXT, sample_params("espeak:en-us", 0, "t"))
    assert [w.word for w in words] == re.findall(r"[a-z]+", TEXT)
    duration = len(audio) / espeak.sample_rate
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(w.start_s <= w.end_s <= duration + 1e-6 for w in words)
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(words, words[1:]))
    # the words cover most of the utterance: the timings are on the audio's scale, not off by a factor
    assert 0.7 * duration < sum(w.end_s - w.start_s for w in words) <= duration


def test_slower_speech_moves_the_words_later(espeak):
    _, fast = espeak.synthesize_with_words(TEXT, {"rate": 200})
    _, slow = espeak.synthesize_with_words(TEXT, {"rate": 120})
    assert slow[-1].start_s > 1.3 * fast[-1].start_s


def test_a_pause_is_not_counted_as_the_word_before_it():
    rate = 1000
    t = np.arange(rate) / rate
    audio = np.where(t < 0.3, np.sin(2 * np.pi * 50 * t), 0.0).astype(np.float32)   # 0.3 s loud, then silence
    audio[600:900] = np.sin(2 * np.pi * 50 * t[600:900])                              # the next word at 0.6 s
    events = [(1, 1, 3, 0), (1, 5, 3, 600), (5, 8, 0, 1000)]                          # word, word, end
    words = _word_spans("one two", events, audio, rate)
    assert [w.word for w in words] == ["one", "two"]
    assert words[0].start_s == 0 and abs(words[0].end_s - 0.3) <= 0.011
    assert words[1].start_s == 0.6 and abs(words[1].end_s - 0.9) <= 0.011


def test_frame_centres_follow_the_two_convolutions():
    c = frame_centres_s(3, 0.01)
    np.testing.assert_allclose(c, [0.075, 0.115, 0.155])


def test_attention_weights_sum_to_one_over_real_frames_and_ignore_padding():
    torch.manual_seed(0)
    enc = SpeechEncoder(n_mels=40, conv_channels=(8, 8), gru_hidden=8, gru_layers=1, attention_hidden=4).eval()
    short, long = torch.randn(60, 40), torch.randn(100, 40)
    batch = torch.zeros(2, 100, 40)
    batch[0, :60], batch[1] = short, long
    with torch.no_grad():
        alpha = enc.attention_weights(batch, [60, 100])
        alone = enc.attention_weights(short.unsqueeze(0), [60])
        emb = enc(batch, [60, 100])
    real = 12                                   # 60 frames -> (60 - 6) // 2 + 1 = 28 -> 12; 100 -> 48 -> 22
    assert alpha.shape == (2, 22, 16)
    torch.testing.assert_close(alpha[0, :real].sum(0), torch.ones(16))
    assert float(alpha[0, real:].abs().sum()) == 0
    torch.testing.assert_close(alpha[0, :real], alone[0], atol=1e-5, rtol=1e-4)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2))


def test_mass_per_word_splits_the_weights_between_words_and_pauses():
    centres = np.array([0.05, 0.15, 0.25, 0.35, 0.45])
    weights = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    words = [SpokenWord("red", 0.0, 0.2), SpokenWord("wings", 0.3, 0.4)]
    mass, pause = wa.mass_per_word(weights, centres, words)
    np.testing.assert_allclose(mass, [0.3, 0.15])
    assert pause == pytest.approx(0.55)


def test_word_kinds_find_every_colour_the_caption_mentions():
    for module, dataset in ((toy_birds, "toybirds"), (toy_flowers, "toyflowers")):
        for cls in module.class_table()[:20]:
            for cap in make_captions(dataset, cls.attributes, 0, cls.id, 0, n=3):
                kinds = {w: word_kind(w, dataset) for w in re.findall(r"[a-z]+", cap.text)}
                for attribute, value in cap.mentions.items():
                    if attribute.endswith("_color") and value != "none":
                        assert kinds.get(value) == "colour", (cap.text, attribute)
                assert "part" in kinds.values() or set(cap.mentions) <= {"size", "bloom_count", "petal_count"}, cap.text
    assert word_kind("the", "toybirds_plain") == "other" and word_kind("Belly,", "toybirds_plain") == "part"


def test_listen_gives_shares_that_add_up(tmp_path):
    cfg = load_config("smoke")
    torch.manual_seed(0)
    enc = SpeechEncoder.from_config(cfg.sen, cfg.speech.n_mels)
    captions = [c.text for cls in toy_birds.class_table()[:3]
                for c in make_captions("toybirds", cls.attributes, 0, cls.id, 0, n=2)]
    rows = wa.listen(enc, cfg.speech, cfg.data.dataset, captions)
    assert rows["caption"].nunique() == len(captions)
    per_utt = rows.groupby("caption")[["attention_share", "peak_share", "duration_share"]].sum()
    np.testing.assert_allclose(per_utt["attention_share"], 1, atol=1e-5)
    np.testing.assert_allclose(per_utt["peak_share"], 1, atol=1e-9)
    np.testing.assert_allclose(per_utt["duration_share"], 1, atol=1e-6)
    table = wa.shares_by_kind(rows)
    assert {"colour", "part", "other"} <= set(table.index)
    np.testing.assert_allclose(table[["share of duration", "share of attention"]].sum(), 1, atol=1e-5)
    figure = wa.attribute_word_share(rows)
    kinds = table.loc[[k for k in wa.ATTRIBUTE_KINDS if k in table.index]]
    assert figure["attention_share"] == pytest.approx(kinds["share of attention"].sum())
    with pytest.raises(ValueError, match="eSpeak"):
        wa.listen_one(enc, cfg.speech, "a red bird", voice="piper:joe")
