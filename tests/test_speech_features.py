"""S2IGAN's front end against a direct numpy computation; audio input errors; storage; batching."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from s2i_lib.speech.features import (AudioError, FeatureStore, build_feature_store, frame_params,
                                     log_mel, num_frames, pad_collate, read_audio)

SR = 22050


# ------------------------------------------------------------------ the reference computation
def _hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def reference_mel_filterbank(sr=SR, n_fft=551, n_mels=40, fmin=0.0, fmax=SR / 2):
    """librosa.filters.mel(htk=False, norm='slaney'), written out from its formulas."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    hz = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2:n_mels + 2] - hz[:n_mels]))[:, None]  # slaney area normalisation
    return weights


def reference_features(y, sr=SR, n_fft=551, hop=220, n_mels=40, cmvn=True):
    """Audio_to_mel.py's audio_processing with numpy: framing, Hann, rFFT, Slaney mel, log, CMVN."""
    y = np.asarray(y, dtype=np.float64)
    padded = np.pad(y, n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[t * hop: t * hop + n_fft] for t in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2
    mel = power @ reference_mel_filterbank(sr, n_fft, n_mels).T
    logmel = np.log(mel + 1e-6)
    if cmvn:
        logmel = (logmel - logmel.mean(axis=0)) / (logmel.std(axis=0) + 1e-16)
    return logmel


def _test_signal(seconds=1.37, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    chirp = np.sin(2 * np.pi * (150 * t + 1500 * t ** 2))
    am = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * chirp * am + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_frame_parameters_are_the_originals():
    assert frame_params(22050, 25.0, 10.0) == (551, 220)


def test_log_mel_matches_direct_numpy_reference():
    y = _test_signal()
    ours = log_mel(torch.from_numpy(y)).numpy()
    ref = reference_features(y)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (1 + len(y) // 220, 40)
    assert np.max(np.abs(ours - ref)) < 5e-4
    raw = log_mel(torch.from_numpy(y), cmvn=False).numpy()
    assert np.max(np.abs(raw - reference_features(y, cmvn=False))) < 5e-4
    # CMVN: every bin has zero mean and unit variance over time
    assert np.allclose(ours.mean(0), 0, atol=1e-4) and np.allclose(ours.std(0), 1, atol=1e-3)


def test_log_mel_equals_torchaudio_melspectrogram():
    import torchaudio
    y = torch.from_numpy(_test_signal(2.03))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=551, win_length=551, hop_length=220, f_min=0.0, f_max=SR / 2, n_mels=40,
        window_fn=torch.hann_window, power=2.0, center=True, pad_mode="reflect", norm="slaney",
        mel_scale="slaney")(y)
    expected = torch.log(mel + 1e-6).T
    assert torch.max(torch.abs(log_mel(y, cmvn=False) - expected)) < 1e-3
    cmvn = (expected - expected.mean(0)) / (expected.std(0, correction=0) + 1e-16)
    assert torch.max(torch.abs(log_mel(y) - cmvn)) < 1e-3


def test_reference_catches_a_wrong_front_end():
    """The comparison above can fail: an HTK-scale or un-normalised filterbank is far off."""
    import torchaudio
    y = _test_signal()
    htk = torchaudio.transforms.MelSpectrogram(SR, n_fft=551, hop_length=220, n_mels=40,
                                               mel_scale="htk", norm=None)(torch.from_numpy(y))
    wrong = torch.log(htk + 1e-6).T.numpy()
    assert np.max(np.abs(wrong - reference_features(y, cmvn=False))) > 0.1


@pytest.mark.parametrize("n", [276, 551, 552, 2199, 2200, 2201, 22050, 33333])
def test_frame_count(n):
    """T = 1 + (n - 1) // 220: "1 + n // 220" except when n is a multiple of 220 (odd n_fft)."""
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    assert log_mel(y).shape == (num_frames(n), 40) == (1 + (n - 1) // 220, 40)
    assert reference_features(y).shape == (num_frames(n), 40)


# ----------------------------------------------------------------------------------- read_audio
def test_read_audio_resamples_and_downmixes(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    for ext, fmt in ((".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3"), (".wav", "WAV")):
        p = tmp_path / f"tone{ext}"
        sf.write(p, stereo, 44100, format=fmt)
        wave = read_audio(p)
        assert wave.dtype == torch.float32 and wave.dim() == 1
        assert abs(wave.numel() - 22050) <= 1200, (ext, wave.numel())  # mp3 adds codec padding
        spectrum = np.abs(np.fft.rfft(wave.numpy()))
        peak_hz = np.argmax(spectrum) * SR / wave.numel()
        assert abs(peak_hz - 440) < 5, (ext, peak_hz)


def _expect(path, pattern, **kw):
    with pytest.raises(AudioError) as e:
        read_audio(path, **kw)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert pattern in msg, msg


def test_read_audio_rejects_bad_files_with_clear_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _expect(empty, "empty (0 bytes)")

    no_samples = tmp_path / "no_samples.wav"  # a valid header and no data
    sf.write(no_samples, np.zeros(0, np.float32), SR, format="WAV")
    assert no_samples.stat().st_size > 0
    _expect(no_samples, "no samples")

    silent = tmp_path / "silent.ogg"
    sf.write(silent, np.zeros(SR, np.float32), SR, format="OGG")
    _expect(silent, "silent")

    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("these are not the samples you are looking for\n" * 20)
    _expect(not_audio, "not a readable audio file")

    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _expect(garbage, "not a readable audio file")

    good = tmp_path / "good.wav"
    sf.write(good, _test_signal(1.0), SR, subtype="PCM_16")
    for cut in (44, 20000):  # a WAV cut short (header intact): libsndfile alone would not notice
        corrupt = tmp_path / f"cut{cut}.wav"
        corrupt.write_bytes(good.read_bytes()[:cut])
        _expect(corrupt, "truncated")
    assert read_audio(good).numel() == SR

    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")


def test_read_audio_refuses_hours_long_files_without_reading_them(tmp_path):
    hours = tmp_path / "two_hours.wav"  # 2 h at 1 kHz, 8 bit: 7 MB on disk
    with sf.SoundFile(hours, "w", samplerate=1000, channels=1, subtype="PCM_U8") as f:
        block = (0.5 * np.sin(np.arange(600_000) / 3)).astype(np.float32)
        for _ in range(12):
            f.write(block)
    t0 = time.perf_counter()
    _expect(hours, "2.00 h")
    assert time.perf_counter() - t0 < 0.5
    minute = tmp_path / "minute.wav"
    sf.write(minute, 0.3 * np.sin(np.arange(61 * 8000) / 5).astype(np.float32), 8000)
    _expect(minute, "the limit is 60.0 s")                 # the default maximum
    assert read_audio(minute, max_seconds=120).numel() == pytest.approx(61 * SR, abs=2)


# ------------------------------------------------------------------------- storage and batches
class _Cfg:
    sample_rate, n_mels, win_ms, hop_ms, max_audio_seconds, workers = SR, 40, 25.0, 10.0, 60.0, 2


def _make_manifest(step_dir, n=10):
    rows = []
    for i in range(n):
        seconds = 0.4 + 0.13 * i
        y = _test_signal(seconds, seed=i)
        rel = f"wavs/{i:02d}/{i:04d}.wav"
        (step_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(step_dir / rel, y, SR, subtype="PCM_16")
        split = "train" if i < 6 else "test"
        rows.append({"id": f"k{i}#0@espeak:en-us", "key": f"c/k{i}", "split": split,
                     "caption_index": 0, "voice": "espeak:en-us", "heldout": i >= 8,
                     "samples": len(y), "path": rel})
    # two utterances may share one WAV (the synthesis cache): both rows get the features
    rows.append(dict(rows[1], id="k1#0@copy"))
    return rows


def test_feature_store_round_trip_and_resume(tmp_path):
    rows = _make_manifest(tmp_path)
    figures = build_feature_store(tmp_path, rows, _Cfg(), workers=2, progress=False, min_parallel=0)
    assert figures["feature_utterances"] == len(rows)
    train, test = FeatureStore(tmp_path, "train"), FeatureStore(tmp_path, "test")
    assert len(train) == 7 and len(test) == 4
    for store in (train, test):
        for i, uid in enumerate(store.ids):
            row = next(r for r in rows if r["id"] == uid)
            expected = log_mel(read_audio(tmp_path / row["path"]))
            got = store[i]
            assert got.shape == (num_frames(row["samples"]), 40) and got.dtype == torch.float32
            assert torch.equal(got, expected)
            assert torch.equal(store.by_id(uid), got)
    assert torch.equal(train.by_id("k1#0@copy"), train.by_id("k1#0@espeak:en-us"))
    assert list(test.heldout_indices()) == [2, 3] and list(train.heldout_indices()) == []
    assert test.keys[2] == "c/k8"
    data = np.load(tmp_path / "features" / "train.npy", mmap_mode="r")
    assert isinstance(data, np.memmap) and data.shape == (int(train.offsets[-1]), 40)
    with pytest.raises(KeyError, match="nope"):
        train.index_of("nope")
    again = build_feature_store(tmp_path, rows, _Cfg(), workers=2, progress=False)
    assert again["feature_splits_reused"] == ["test", "train"] and again["feature_utterances"] == 0
    # a store pickles without its memory map (DataLoader worker processes re-open it)
    import pickle
    clone = pickle.loads(pickle.dumps(train))
    assert clone._data is None and torch.equal(clone[3], train[3])


def test_pad_collate():
    a, b, c = torch.randn(5, 40), torch.randn(9, 40), torch.randn(2, 40)
    padded, lengths = pad_collate([a, b, c])
    assert padded.shape == (3, 9, 40) and lengths.tolist() == [5, 9, 2]  # order kept
    assert torch.equal(padded[0, :5], a) and torch.all(padded[0, 5:] == 0)
    assert torch.equal(padded[2, :2], c) and torch.all(padded[2, 2:] == 0)
    padded, lengths, labels, keys = pad_collate([(a, 3, "x"), (b, 7, "y")])
    assert padded.shape == (2, 9, 40) and labels.tolist() == [3, 7] and list(keys) == ["x", "y"]
    with pytest.raises(ValueError):
        pad_collate([])


def test_store_with_dataloader(tmp_path):
    rows = _make_manifest(tmp_path, n=8)
    build_feature_store(tmp_path, rows, _Cfg(), workers=1, progress=False)
    store = FeatureStore(tmp_path, "train")
    loader = torch.utils.data.DataLoader(store, batch_size=4, collate_fn=pad_collate)
    padded, lengths = next(iter(loader))
    assert padded.shape == (4, int(lengths.max()), 40)
    assert lengths.tolist() == [int(x) for x in store.lengths[:4]]
