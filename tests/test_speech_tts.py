"""TTS backends: voice names, output format, per-utterance parameters, resampling, Tacotron2 offline."""
from __future__ import annotations

import numpy as np
import pytest

from s2i_lib.config import ConfigError, load_config
from s2i_lib import voices
from s2i_lib.speech import tts

TEXT = "a small bird with a yellow belly and brown wings"


def test_voice_names():
    assert tts.parse_voice("espeak:en-us+f3") == ("espeak", "en-us+f3")
    assert tts.parse_voice("espeak:en-gb-x-rp") == ("espeak", "en-gb-x-rp")
    assert tts.parse_voice("piper:joe") == ("piper", "joe")
    assert tts.parse_voice("tacotron2:ljspeech") == ("tacotron2", "ljspeech")
    assert "espeak:en-us" in voices.available_voices() and "piper:joe" in voices.available_voices()
    assert {"f3", "m3", "Alicia"} <= set(voices.espeak_variants())


@pytest.mark.parametrize("bad", ["joe", "festival:kal", "piper:amy", "espeak:xx-nope",
                                 "espeak:en-us+nobody", "tacotron2:lj"])
def test_unknown_voice_is_a_clear_error_listing_the_valid_ones(bad):
    with pytest.raises(tts.UnknownVoiceError) as e:
        tts.load_synthesizer(bad)
    msg = str(e.value)
    assert repr(bad) in msg and "piper:joe" in msg and "espeak:" in msg and "en-us" in msg


def test_config_rejects_unknown_voices_naming_the_key():
    with pytest.raises(ConfigError, match=r"speech\.heldout_voices.*no voice variant 'nobody'"):
        load_config("smoke", {"speech.heldout_voices": ["espeak:en-us+nobody"]})
    with pytest.raises(ConfigError, match=r"speech\.voice_weights.*'voice=weight'"):
        load_config("smoke", {"speech.voice_weights": ["piper:joe"]})
    with pytest.raises(ConfigError, match=r"speech\.voice_weights.*'piper:joe=-1'"):
        load_config("smoke", {"speech.voice_weights": ["piper:joe=-1"]})
    with pytest.raises(ConfigError, match=r"speech\.voice_weights.*unknown backend"):
        load_config("smoke", {"speech.voice_weights": ["pipr:joe=0.5"]})
    cfg = load_config("smoke", {"speech.voices": ["espeak:en-us", "piper:joe"],
                                "speech.voice_weights": ["piper:joe=0.25"]})
    assert cfg.speech.weights() == [1.0, 0.25]
    # overriding the voices alone keeps working: weights of absent voices are ignored
    assert load_config("smoke", ["speech.voices=[espeak:en-us, espeak:en-us+f3]"]).speech.weights() == [1.0, 1.0]


def test_params_are_reproducible_per_utterance_and_in_range():
    a = tts.sample_params("piper:joe", 0, "k#0@piper:joe")
    assert a == tts.sample_params("piper:joe", 0, "k#0@piper:joe")
    assert a != tts.sample_params("piper:joe", 1, "k#0@piper:joe")
    assert a != tts.sample_params("piper:joe", 0, "k#1@piper:joe")
    for i in range(200):
        p = tts.sample_params("piper:joe", 0, f"u{i}")
        for k, (lo, hi) in tts.PIPER_RANGES.items():
            assert lo <= p[k] <= hi
        e = tts.sample_params("espeak:en-us", 0, f"u{i}")
        for k, (lo, hi) in tts.ESPEAK_RANGES.items():
            assert lo <= e[k] <= hi and isinstance(e[k], int)
    assert set(tts.sample_params("tacotron2:ljspeech", 0, "u")) == {"seed"}


def _rms(a):
    return float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))


def test_espeak_voices_speak_float32_mono_22050():
    f3 = tts.load_synthesizer("espeak:en-us+f3")
    m3 = tts.load_synthesizer("espeak:en-gb-x-rp+m3")
    p = {"rate": 170, "pitch": 50, "range": 50}
    a, b = f3.synthesize(TEXT, p), m3.synthesize(TEXT, p)
    for x in (a, b):
        assert x.dtype == np.float32 and x.ndim == 1
        assert 1.0 < len(x) / 22050 < 6.0 and _rms(x) > 0.02 and np.abs(x).max() <= 1.0
    assert f3.sample_rate == 22050
    assert not np.array_equal(a[:5000], b[:5000])              # two different speakers
    again = f3.synthesize(TEXT, p)                            # same params: the same utterance
    assert len(again) == len(a) and np.corrcoef(a, again)[0, 1] > 0.5  # (+f3 breathes noise)
    slow = f3.synthesize(TEXT, {"rate": 140, "pitch": 50, "range": 50})
    fast = f3.synthesize(TEXT, {"rate": 200, "pitch": 50, "range": 50})
    assert len(slow) > 1.25 * len(fast)                        # the rate parameter is applied


def test_piper_speaks_and_length_scale_is_applied():
    piper = tts.load_synthesizer("piper:joe", threads=1)
    quiet = {"noise_scale": 0.0, "noise_w_scale": 0.0}        # noise 0: deterministic
    short = piper.synthesize(TEXT, {"length_scale": 0.85, **quiet})
    long = piper.synthesize(TEXT, {"length_scale": 1.2, **quiet})
    assert short.dtype == np.float32 and short.ndim == 1 and piper.sample_rate == 22050
    assert _rms(short) > 0.02 and 1.0 < len(short) / 22050 < 6.0
    assert len(long) > 1.1 * len(short)
    assert np.array_equal(short, piper.synthesize(TEXT, {"length_scale": 0.85, **quiet}))


def test_resampling_to_22050():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    out = tts.to_sample_rate(np.stack([tone, tone], 1), 16000, 22050)  # stereo is averaged
    assert out.dtype == np.float32 and out.shape == (22050,)
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) - 300) <= 1       # 1 s: bin = Hz

    class SixteenKilohertz(tts.Synthesizer):                          # any backend at another rate
        backend = "espeak"

        def _synthesize(self, text, params):
            return tone, 16000

    audio = SixteenKilohertz("espeak:en-us").synthesize("x")
    assert audio.shape == (22050,) and audio.dtype == np.float32


def test_tacotron2_never_downloads_and_says_what_to_put_where(tmp_path, monkeypatch):
    import torch
    import torchaudio._internal

    def no_network(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torchaudio._internal, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(tts.WeightsNotAvailableError) as e:
        tts.load_synthesizer("tacotron2:ljspeech")
    msg = str(e.value)
    folder = str(tmp_path / "hub" / "checkpoints")
    assert folder in msg
    assert "tacotron2_english_characters_1500_epochs_wavernn_ljspeech.pth" in msg
    assert "wavernn_10k_epochs_8bits_ljspeech.pth" in msg
    assert "https://download.pytorch.org/torchaudio/models/" in msg
    # with one of the two files in place, only the other one is asked for
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "wavernn_10k_epochs_8bits_ljspeech.pth").write_bytes(b"")
    with pytest.raises(tts.WeightsNotAvailableError) as e:
        tts.load_synthesizer("tacotron2:ljspeech-gl")
    assert "tacotron2_english_characters_1500_epochs_ljspeech.pth" in str(e.value)
    assert "wavernn" not in str(e.value)
