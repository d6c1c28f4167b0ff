"""Batch synthesis: the plan, text normalisation, output checks, the WAV cache, crash safety, the step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2i_lib.config import load_config
from s2i_lib.data.layout import read_dataset
from s2i_lib.speech import synthesis, tts
from s2i_lib.speech.synthesis import (AudioChecks, CaptionError, check_waveform, normalise_caption,
                                      number_to_words, plan_utterances, read_jsonl, synthesize_plan,
                                      write_caption_dataset)

REPO = Path(__file__).resolve().parent.parent
ESPEAK_ONLY = {"speech.voices": ["espeak:en-us", "espeak:en-us+f3"], "speech.voice_weights": [],
               "speech.heldout_voices": ["espeak:en-gb-x-rp+m3", "espeak:en-us+f5"],
               "speech.augment_share": 0}   # one row per WAV here; the augmented copies: test_augment.py


# -------------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("raw, spoken", [
    ("A small bird with a yellow belly.", "A small bird with a yellow belly."),
    ("  a   bird\twith\nbrown\x00wings\u200b ", "a bird with brown wings"),        # control/format
    ("ａ ｓｍａｌｌ ｂｉｒｄ", "a small bird"),                                       # NFKC
    ("a café-coloured bird with a ﬁne crest", "a cafe-coloured bird with a fine crest"),
    ("the bird’s “crown” is red — not orange…", "the bird's \"crown\" is red - not orange..."),
    ("12 birds", "twelve birds"),
    ("a bird with 3.5 stripes and 2 wings", "a bird with three point five stripes and two wings"),
    ("the 2nd bird, 1,250 feathers, 101 spots", "the second bird, one thousand two hundred and fifty feathers, one hundred and one spots"),
    ("a bird 🐦 with red wings 😀", "a bird with red wings"),                          # emoji dropped
    ("a red bird 鸟", "a red bird"),                                                   # CJK dropped
    ("black & white, 50% grey", "black and white, fifty percent grey"),
])
def test_normalise_caption(raw, spoken):
    assert normalise_caption(raw) == spoken


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"), ("   \t\n ", "empty"), ("😀😀😀", "unspeakable"), ("鸟鸟鸟鸟鸟 bird", "unspeakable"),
    ("\x01\x02\x03", "unspeakable"), ("...", "unspeakable"), ("鸟鸟鸟鸟 bird", None),
    ("a very long caption " * 30, "too_long"),
])
def test_unspeakable_captions_are_refused_with_a_reason(raw, reason):
    if reason is None:  # at most half of the characters dropped: what is left is spoken
        assert normalise_caption(raw) == "bird"
        return
    with pytest.raises(CaptionError) as e:
        normalise_caption(raw, max_chars=300)
    assert e.value.reason == reason and str(e.value)


def test_number_to_words():
    assert number_to_words(0) == "zero" and number_to_words(21) == "twenty-one"
    assert number_to_words(700) == "seven hundred"
    assert number_to_words(1_000_005) == "one million and five"
    assert normalise_caption("1234567890123") == ("one two three four five six seven eight nine "
                                                  "zero one two three")


# ----------------------------------------------------------------------------------------- plan
def _dataset(tmp_path, **kw):
    return read_dataset(write_caption_dataset(tmp_path / "data", **kw))


def test_plan(tmp_path):
    index = _dataset(tmp_path)
    cfg = load_config("smoke", {"speech.voices": ["espeak:en-us", "espeak:en-us+f3", "piper:joe"],
                                "speech.voice_weights": ["piper:joe=0.25"],
                                "speech.heldout_voices": ["espeak:en-gb-x-rp+m3", "espeak:en-us+f5"],
                                "speech.captions_per_image": 3, "speech.voices_per_caption": 2,
                                "speech.augment_share": 0})   # the copies: test_augment.py
    plan = plan_utterances(index.records, cfg.speech, seed=0)
    n_train = sum(r.split == "train" for r in index.records)
    n_test = len(index.records) - n_train
    assert len(plan) == 3 * 2 * n_train + 3 * (2 + 2) * n_test
    assert len({u.id for u in plan}) == len(plan)
    assert not any(u.heldout for u in plan if u.split == "train")
    assert {u.voice for u in plan if u.split == "train"} <= set(cfg.speech.voices)
    assert {u.voice for u in plan if u.heldout} == set(cfg.speech.heldout_voices)
    for r in index.records:                         # the first 3 captions, each by 2 distinct voices
        mine = [u for u in plan if u.key == r.key and not u.heldout]
        assert sorted({u.caption_index for u in mine}) == [0, 1, 2]
        for ci in range(3):
            vs = [u.voice for u in mine if u.caption_index == ci]
            assert len(vs) == len(set(vs)) == 2
            assert all(u.text == r.captions[u.caption_index] for u in mine)
        if r.split == "test":
            assert sum(u.heldout for u in plan if u.key == r.key) == 3 * 2
    for u in plan:
        assert u.params == tts.sample_params(u.voice, 0, u.id)
    again = plan_utterances(index.records, cfg.speech, seed=0)
    assert [(u.id, u.params, u.path) for u in again] == [(u.id, u.params, u.path) for u in plan]
    other = plan_utterances(index.records, cfg.speech, seed=1)
    assert [u.id for u in other] != [u.id for u in plan]
    # weights: with 1 voice per caption, piper (0.25 of 2.25) takes about 11 % of many captions
    big = _dataset(tmp_path / "big", n_train_classes=20, n_test_classes=1, images_per_class=10)
    one = load_config("smoke", {"speech.voices": ["espeak:en-us", "espeak:en-us+f3", "piper:joe"],
                                "speech.voice_weights": ["piper:joe=0.25"],
                                "speech.captions_per_image": 10})
    counts = Counter(u.voice for u in plan_utterances(big.records, one.speech, 0) if not u.heldout)
    share = counts["piper:joe"] / sum(counts.values())
    assert 0.07 < share < 0.16, counts


# -------------------------------------------------------------------------------- output checks
def test_check_waveform_rejects_silence_and_junk():
    c = AudioChecks()
    t = np.arange(22050) / 22050
    speech = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert check_waveform(speech, c) is None
    assert check_waveform(np.zeros(22050, np.float32), c)[0] == "silent_output"
    assert check_waveform(np.full(22050, 1e-5, np.float32), c)[0] == "silent_output"
    burst = np.zeros(5 * 22050, np.float32)
    burst[:300] = 0.9                                      # a click in 5 s of silence
    assert check_waveform(burst, c)[0] == "silent_output"
    assert check_waveform(np.zeros(0, np.float32), c)[0] == "empty_output"
    assert check_waveform(speech[:1000], c)[0] == "too_short_output"
    assert check_waveform(np.tile(speech, 61), c)[0] == "too_long_output"
    nan = speech.copy()
    nan[5] = np.nan
    assert check_waveform(nan, c)[0] == "invalid_output"


# --------------------------------------------------------------------------- bad input, the cache
def _assert_wavs_ok(step_dir: Path, manifest: list[dict]) -> None:
    for row in manifest:
        p = step_dir / row["path"]
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "PCM_16", "WAV")
        audio, sr = sf.read(str(p), dtype="float32")
        assert len(audio) == row["samples"] == info.frames
        assert row["duration"] == pytest.approx(len(audio) / 22050, abs=1e-3)
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1e-3


def test_bad_captions_and_silent_output_never_stop_the_batch(tmp_path, monkeypatch):
    bad = {"001.Class_1/img_0000": ["", "   "],
           "002.Class_2/img_0001": ["a bird 😀 with 2 red wings", "😀😀😀🐦🐦"],
           "010.Class_10/img_0002": ["鸟的翅膀是红色的", "x " * 400],
           "003.Class_3/img_0000": ["this caption comes out silent", "\x07\x08\x1b"]}
    index = _dataset(tmp_path, captions=bad)
    cfg = load_config("smoke", {**ESPEAK_ONLY, "speech.workers": 1})
    plan = plan_utterances(index.records, cfg.speech, seed=0)

    real = tts.ESpeakSynthesizer._synthesize

    def sometimes_silent(self, text, params):           # a backend that returns silence
        audio, rate = real(self, text, params)
        return (audio * 0 if "silent" in text else audio), rate

    monkeypatch.setattr(tts.ESpeakSynthesizer, "_synthesize", sometimes_silent)
    out = tmp_path / "speech"
    synthesize_plan(plan, out, cfg.speech, workers=1, progress=False)
    errors = read_jsonl(out / "errors.jsonl")
    manifest = read_jsonl(out / "manifest.jsonl")
    reasons = Counter(e["reason"] for e in errors)
    # test images: 1 training voice + 2 held-out voices per caption
    assert reasons == {"empty": 2, "unspeakable": 1 + 3 + 1, "too_long": 3,
                       "silent_output": 1}, reasons
    assert len(manifest) + len(errors) == len(plan)
    assert {r["id"] for r in manifest}.isdisjoint({e["id"] for e in errors})
    assert not any("silent" in r["spoken_text"] for r in manifest)
    spoken = [r for r in manifest if r["text"].startswith("a bird 😀")]
    assert spoken and spoken[0]["spoken_text"] == "a bird with two red wings"
    assert all(e["message"] for e in errors)
    _assert_wavs_ok(out, manifest)
    summary = synthesis.utterance_summary(manifest, errors)
    assert summary["errors"] == dict(reasons) and summary["errors_total"] == len(errors)


def test_same_text_voice_and_params_are_synthesized_once(tmp_path):
    cfg = load_config("smoke", {**ESPEAK_ONLY, "speech.workers": 1})
    params = {"rate": 170, "pitch": 50, "range": 50}
    text = "a small bird with a red crown"
    path = synthesis.wav_relpath(text, "espeak:en-us", params, 22050)
    assert path.startswith("wavs/") and path.split("/")[1] == Path(path).stem[:2]
    plan = [synthesis.Utterance(id=f"k{i}#0@espeak:en-us", key=f"c/k{i}", split="train",
                                caption_index=0, text=text, voice="espeak:en-us", heldout=False,
                                params=params, spoken_text=text, path=path) for i in range(3)]
    out = tmp_path / "speech"
    first = synthesize_plan(plan, out, cfg.speech, workers=1, progress=False)
    assert first.figures["unique_wavs"] == 1 and first.figures["wavs_synthesized"] == 1
    assert [r["path"] for r in first.manifest] == [path] * 3
    assert len(list((out / "wavs").rglob("*.wav"))) == 1
    again = synthesize_plan(plan, out, cfg.speech, workers=1, progress=False)
    assert again.figures["wavs_synthesized"] == 0 and again.figures["wavs_reused"] == 1
    # another voice or other parameters are another file
    assert synthesis.wav_relpath(text, "espeak:en-us+f3", params, 22050) != path
    assert synthesis.wav_relpath(text, "espeak:en-us", {**params, "rate": 171}, 22050) != path


# ------------------------------------------------------------------------------ crash and resume
_RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from s2i_lib.config import load_config
    from s2i_lib.steps.speech import build_speech_step
    if __name__ == "__main__":
        cfg = load_config("smoke", json.loads(sys.argv[3]))
        build_speech_step(cfg, Path(sys.argv[1]), {"data": Path(sys.argv[2])}, progress=False)
""")


def _count_wavs(wav_root: Path) -> int:
    n = 0
    if wav_root.exists():
        for d in os.scandir(wav_root):
            if d.is_dir():
                n += sum(1 for f in os.scandir(d.path) if f.name.endswith(".wav")
                         and not f.name.startswith("."))
    return n


def _run_and_kill(script, out, data, overrides, at_least, timeout=60.0):
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(data), json.dumps(overrides)],
                            cwd=REPO, start_new_session=True,  # its own process group: workers too
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while _count_wavs(out / "wavs") < at_least:
            if proc.poll() is not None:
                raise AssertionError(f"finished before it could be killed: {proc.stderr.read()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError("synthesis too slow to test the kill")
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)              # the main process and its workers
        proc.wait()
        proc.stderr.close()
    return _count_wavs(out / "wavs")


def test_sigkill_at_any_moment_then_resume(tmp_path):
    data = write_caption_dataset(tmp_path / "data")
    overrides = {**ESPEAK_ONLY, "speech.captions_per_image": 10, "speech.voices_per_caption": 2,
                 "speech.workers": 2}
    cfg = load_config("smoke", overrides)
    plan = plan_utterances(read_dataset(data).records, cfg.speech, cfg.seed)
    n_wavs = len({u.path for u in plan if u.error is None})
    script = tmp_path / "run_speech.py"
    script.write_text(_RUNNER)
    out = tmp_path / "speech"

    first = _run_and_kill(script, out, data, overrides, at_least=40)
    assert 40 <= first < n_wavs and not (out / "manifest.jsonl").exists()
    second = _run_and_kill(script, out, data, overrides, at_least=first + n_wavs // 3)
    assert first < second < n_wavs and not (out / "manifest.jsonl").exists()
    from_killed_runs = {str(p.relative_to(out)) for p in (out / "wavs").rglob("*.wav")
                        if not p.name.startswith(".")}

    from s2i_lib.steps.speech import build_speech_step
    figures = build_speech_step(cfg, out, {"data": data}, progress=False)
    assert figures["wavs_reused"] >= second and figures["wavs_synthesized"] == n_wavs - figures["wavs_reused"]
    manifest = read_jsonl(out / "manifest.jsonl")
    errors = read_jsonl(out / "errors.jsonl")
    ids = [r["id"] for r in manifest]
    assert len(ids) == len(set(ids)) == len(plan) and not errors     # each utterance exactly once
    assert set(ids) == {u.id for u in plan}
    assert not list((out / "wavs").rglob(".*"))                      # no temporary files left
    assert _count_wavs(out / "wavs") == n_wavs
    _assert_wavs_ok(out, manifest)
    from s2i_lib.speech.features import FeatureStore, num_frames
    stores = {s: FeatureStore(out, s) for s in ("train", "test")}
    assert sum(len(s) for s in stores.values()) == len(manifest)
    for row in manifest[::50]:
        assert stores[row["split"]].by_id(row["id"]).shape == (num_frames(row["samples"]), 40)
    # every WAV the killed runs left is whole, so a half-written file cannot pass as a short
    # utterance: its header declares exactly the samples it holds (a writer killed mid-way leaves
    # a header that was never finalised, or fewer bytes than it declares)
    by_path = {r["path"]: r for r in manifest}
    for rel in sorted(from_killed_runs):
        assert _declared_wav_samples(out / rel) == by_path[rel]["samples"], rel


def _declared_wav_samples(path: Path) -> int:
    """Samples a 16-bit mono WAV's header declares; fails unless the file holds exactly those."""
    import struct
    blob = path.read_bytes()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE"
    assert struct.unpack("<I", blob[4:8])[0] == len(blob) - 8, "RIFF size disagrees with the file"
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = struct.unpack("<4sI", blob[pos:pos + 8])
        if cid == b"data":
            assert pos + 8 + size == len(blob), "data chunk size disagrees with the file"
            return size // 2
        pos += 8 + size + (size & 1)
    raise AssertionError(f"{path}: no data chunk")


# ------------------------------------------------------------------ the step through the pipeline
def test_smoke_step_through_ensure(tmp_path, monkeypatch):
    """The smoke profile as shipped (Piper included), run by pipeline.ensure with a stand-in data step."""
    import s2i_lib.pipeline as pipeline

    real = pipeline._work_function

    def fake_data(cfg, out_dir, inputs):
        write_caption_dataset(out_dir, cfg.data.n_train_classes, cfg.data.n_test_classes,
                              cfg.data.images_per_class, seed=cfg.seed)
        return {}

    monkeypatch.setattr(pipeline, "_work_function", lambda step: fake_data if step == "data" else real(step))
    cfg = load_config("smoke")
    t0 = time.perf_counter()
    folder = pipeline.ensure("speech", cfg, runs_dir=tmp_path / "runs", log=lambda m: None)
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, elapsed
    metrics = json.loads((folder / "metrics.json").read_text())
    f = metrics["figures"]
    n_img = (cfg.data.n_train_classes + cfg.data.n_test_classes) * cfg.data.images_per_class
    n_test = cfg.data.n_test_classes * cfg.data.images_per_class
    cpi = cfg.speech.captions_per_image
    assert f["utterances"] == n_img * cpi + n_test * cpi * len(cfg.speech.heldout_voices) + f["augmented"]
    assert 0 < f["augmented"] < (n_img - n_test) * cpi             # a share of the training utterances
    assert f["errors_total"] == 0 and f["per_split"]["test"] == n_test * cpi * 3
    assert f["heldout"] == n_test * cpi * len(cfg.speech.heldout_voices)
    assert set(f["per_voice"]) == set(cfg.speech.voices) | set(cfg.speech.heldout_voices)
    assert f["per_backend"]["piper"] > 0 and f["real_time_factor"]["piper"] > 0
    for key in ("synthesis_time_s", "synthesis_utt_per_s", "features_time_s", "frames",
                "feature_utt_per_s", "audio_hours"):
        assert f[key] > 0, key
    assert {p.name for p in folder.iterdir()} >= {"wavs", "features", "manifest.jsonl",
                                                  "errors.jsonl", "metrics.json"}
    t0 = time.perf_counter()
    pipeline.ensure("speech", cfg, runs_dir=tmp_path / "runs", log=lambda m: None)  # up to date
    assert time.perf_counter() - t0 < 5

    # the notebook's helpers
    import matplotlib
    matplotlib.use("Agg")
    from s2i_lib.reports import speech as report
    table = report.voice_table(folder)
    assert table["utterances"].sum() == f["utterances"]
    assert set(table.loc[table["heldout"], "voice"]) == set(cfg.speech.heldout_voices)
    assert (table.loc[table["heldout"], "train"] == 0).all()
    assert len(report.load_errors(folder)) == 0
    assert report.plot_durations(folder) is not None
    first = report.load_manifest(folder)["path"].iloc[0]
    assert len(report.plot_waveform_and_logmel(folder / first).axes) >= 3
    # the log-mel grid: one colour scale for every panel, and its colour bar
    wave, sr = sf.read(folder / first, dtype="float32")
    fig = report.plot_logmel_grid({"clean": wave, "quieter": 0.1 * wave}, sample_rate=sr)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 and all(ax.images[0].get_clim() == (-3, 3) for ax in panels)
    assert len(fig.axes) == 3   # the two panels and the colour bar
