"""The demo's functions and widget callbacks (s2i_lib.demo), without a browser."""
import datetime
import io

import numpy as np
import pytest
import soundfile as sf

from s2i_lib.data import toy_birds, toy_flowers
from s2i_lib.data.captions import make_captions
from s2i_lib.demo import (KEEP, MAX_UPLOAD_BYTES, Demo, build_widgets, colour_attributes,
                          colour_mentions, speech_activity, speech_bounds, swap_colours,
                          trim_silence)
from s2i_lib.speech.features import AudioError

SR = 22050


def tone(seconds: float, amplitude: float = 0.3, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def wav_file(wave: np.ndarray, rate: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ------------------------------------------------------------------------------ silence trimming
def test_trim_silence_keeps_the_sound_and_a_margin():
    quiet = np.random.default_rng(0).normal(0, 1e-4, SR).astype(np.float32)   # -80 dB
    wave = np.concatenate([np.zeros(SR // 2, np.float32), tone(1.0), quiet])
    start, end = speech_bounds(wave, SR)
    assert abs(start - SR // 2) <= 0.02 * SR and abs(end - 1.5 * SR) <= 0.02 * SR
    trimmed = trim_silence(wave, SR, margin_s=0.1)
    assert abs(len(trimmed) / SR - 1.2) < 0.03


def test_trim_silence_removes_background_noise():
    noise = np.random.default_rng(0).normal(0, 3e-3, 3 * SR).astype(np.float32)  # 37 dB below the tone
    wave = noise + np.concatenate([np.zeros(SR, np.float32), tone(1.0), np.zeros(SR, np.float32)])
    start, end = speech_bounds(wave, SR)
    assert abs(start - SR) <= 0.02 * SR and abs(end - 2 * SR) <= 0.02 * SR


def test_trim_silence_keeps_soft_speech_without_pauses():
    # no silence at all: the quietest frames (23 dB down) are speech, not a noise floor
    wave = np.concatenate([tone(0.2, 0.3 / 14), tone(0.8)])
    assert speech_bounds(wave, SR)[0] == 0


def test_speech_activity_counts_the_sound_not_the_span():
    wave = np.concatenate([tone(0.5), np.zeros(SR, np.float32), tone(0.5)])
    bounds, seconds = speech_activity(wave, SR)
    assert bounds == speech_bounds(wave, SR) and abs((bounds[1] - bounds[0]) / SR - 2.0) <= 0.02
    assert abs(seconds - 1.0) <= 0.03
    assert speech_activity(np.zeros(SR, np.float32), SR) == (None, 0.0)


def test_trim_silence_of_silence_is_empty():
    assert speech_bounds(np.zeros(SR, np.float32), SR) is None
    assert len(trim_silence(np.zeros(SR, np.float32), SR)) == 0


# ------------------------------------------------------------------------------ colour words
def grammar_captions(dataset, module, images=1):
    for cls in module.class_table():
        for index in range(images):
            yield from make_captions(dataset, cls.attributes, seed=0, class_id=cls.id, index=index)


@pytest.mark.parametrize("dataset, module", [("toybirds", toy_birds), ("toyflowers", toy_flowers)])
def test_colour_mentions_read_every_grammar_caption(dataset, module):
    n = 0
    for c in grammar_captions(dataset, module):
        said = {k: v for k, v in c.mentions.items() if k in module.COLOR_PARTS and v != "none"}
        assert colour_mentions(c.text, dataset) == said, c.text
        n += bool(said)
    assert n > 500


@pytest.mark.parametrize("dataset, module", [("toybirds", toy_birds), ("toyflowers", toy_flowers)])
def test_swap_colours_rewrites_only_the_asked_parts(dataset, module):
    allowed = colour_attributes(dataset)
    rng = np.random.default_rng(0)
    for c in grammar_captions(dataset, module, images=1):
        said = colour_mentions(c.text, dataset)
        if not said:
            continue
        part = sorted(said)[int(rng.integers(len(said)))]
        new_colour = next(x for x in allowed[part] if x != said[part])
        swapped = swap_colours(c.text, {part: new_colour}, dataset)
        assert colour_mentions(swapped, dataset) == {**said, part: new_colour}, (c.text, swapped)
        assert len(swapped.split()) in (len(c.text.split()), len(c.text.split()) - 1)  # a dropped shade


@pytest.mark.parametrize("caption, changes, expected", [
    ("this bird has an orange belly and a bright red crown", {"belly_color": "red", "crown_color": "blue"},
     "this bird has a red belly and a bright blue crown"),
    ("the bird is small and its cap is pale yellow", {"crown_color": "red"},   # no "pale red" in the grammar
     "the bird is small and its cap is red"),
    ("a bird with brown wings with white wing bars and a long grey bill",
     {"wing_bars": "yellow", "beak_color": "orange"},
     "a bird with brown wings with yellow wing bars and a long orange bill"),
    ("a bird whose breast is dark green, whose back is grey", {"belly_color": "orange", "wing_color": "white"},
     "a bird whose breast is dark orange, whose back is white"),
    ("the bird has a red crown", {"belly_color": "blue"}, "the bird has a red crown"),   # not said: kept
])
def test_swap_colours_examples(caption, changes, expected):
    assert swap_colours(caption, changes) == expected


def test_swap_colours_flowers():
    caption = "the five petals of this flower are pink and pointed and the center is yellow"
    assert swap_colours(caption, {"petal_color": "orange", "center_color": "black"}, "toyflowers") == \
        "the five petals of this flower are orange and pointed and the center is black"


def test_swap_colours_rejects_unknown_parts_and_colours():
    with pytest.raises(ValueError, match="tail_color"):
        swap_colours("a red crown", {"tail_color": "red"})
    with pytest.raises(ValueError, match="'blue'.*black"):   # ToyBirds has no blue beaks
        swap_colours("a red beak", {"beak_color": "blue"})


# ------------------------------------------------------------------------------ the demo itself
@pytest.fixture(scope="module")
def demo(smoke_gan, one_thread):
    return Demo.load(smoke_gan.cfg, smoke_gan.runs_dir, build=False)


def test_from_text(demo):
    caption = demo.example_captions(1)[0]
    a = demo.from_text(caption, demo.voices[0], seed=3, n=3)
    size = demo.cfg.gan.stage_sizes[-1]
    assert a.images.shape == (3, size, size, 3) and a.images.dtype == np.uint8
    assert a.embedding.shape == (demo.cfg.sen.embed_dim,)
    assert np.isclose(np.linalg.norm(a.embedding), 1, atol=1e-4)
    assert len(a.wave) > 0.3 * a.sample_rate and set(a.timings) == {"speech", "embedding", "generation"}
    assert all(t > 0 for t in a.timings.values())


def test_the_seed_fixes_the_noise(demo, tmp_path):
    # through a file: eSpeak's waveform of a caption can differ a little from one call to the next
    sf.write(tmp_path / "a.wav", demo.s2i.speak("a bird with a red crown", demo.voices[0]), SR)
    a = demo.from_file(tmp_path / "a.wav", seed=3, n=3)
    assert np.array_equal(a.images, demo.from_file(tmp_path / "a.wav", seed=3, n=3).images)
    assert not np.array_equal(a.images, demo.from_file(tmp_path / "a.wav", seed=4, n=3).images)


def test_from_text_held_out_voice_and_bad_requests(demo):
    assert demo.heldout_voices
    held = demo.from_text("a bird with a red crown", demo.heldout_voices[0], n=1)
    assert held.voice == demo.heldout_voices[0] and held.images.shape[0] == 1
    with pytest.raises(ValueError, match="espeak:en-us\\+m7"):
        demo.from_text("a bird with a red crown", "espeak:en-us+m7")
    with pytest.raises(ValueError, match="empty"):
        demo.from_text("   ", demo.voices[0])
    with pytest.raises(ValueError, match="between 1 and"):
        demo.from_text("a bird", demo.voices[0], n=0)


def test_from_file_trims_silence(demo, tmp_path):
    silence = np.zeros(int(0.1 * SR), np.float32)    # more than the margin trim_silence keeps
    wave = np.concatenate([silence, demo.s2i.speak("a small bird with a yellow belly", demo.voices[0]), silence])
    pad = np.zeros(200 * 220, np.float32)            # ~2 s, whole hops of the trimming's frames
    padded = np.concatenate([pad, wave, pad])
    sf.write(tmp_path / "plain.wav", wave, SR)
    sf.write(tmp_path / "padded.flac", np.stack([padded, padded], axis=1), SR)   # stereo FLAC
    plain = demo.from_file(tmp_path / "plain.wav", seed=1, n=2)
    trimmed = demo.from_file(tmp_path / "padded.flac", seed=1, n=2)
    assert trimmed.source == "padded.flac" and trimmed.voice is None
    assert len(trimmed.wave) == len(plain.wave) < len(wave)
    assert float(plain.embedding @ trimmed.embedding) > 0.999
    untrimmed = demo.s2i.embed([demo.s2i.features(padded)])[0].numpy()
    assert float(plain.embedding @ untrimmed) < 0.999


def test_from_file_resamples(demo, tmp_path):
    sf.write(tmp_path / "low.wav", tone(1.0, rate=8000), 8000)
    result = demo.from_file(tmp_path / "low.wav", n=1)
    assert abs(len(result.wave) - SR) < 0.25 * SR


@pytest.mark.parametrize("name, fmt, subtype", [("memo.ogg", "OGG", "VORBIS"),
                                                  ("memo.mp3", "MP3", "MPEG_LAYER_III")])
def test_compressed_uploads(demo, name, fmt, subtype):
    buf = io.BytesIO()
    sf.write(buf, tone(1.0, rate=44100), 44100, format=fmt, subtype=subtype)
    result = demo.from_upload(name, buf.getvalue(), n=1)
    assert result.source == name and abs(len(result.wave) / SR - 1.0) < 0.1


@pytest.mark.parametrize("name, content, message", [
    ("notes.wav", b"these are not audio samples, just text" * 10, "not a readable audio file"),
    ("empty.wav", b"", "empty"),
    ("long.wav", wav_file(tone(31.0, rate=8000), 8000), "31.0 s long"),
    ("silent.wav", wav_file(np.zeros(SR, np.float32)), "silent"),
    ("click.wav", wav_file(np.concatenate([np.zeros(SR, np.float32), tone(0.01, 0.9)])), "speech is needed"),
    # two clicks 2 s apart: a long span, but 0.02 s of sound
    ("clicks.wav", wav_file(np.concatenate([tone(0.01, 0.9), np.zeros(2 * SR, np.float32), tone(0.01, 0.9)])),
     r"has 0.0\d s of sound.*speech is needed"),
])
def test_bad_uploads_are_refused_by_name(demo, name, content, message):
    with pytest.raises(AudioError, match=message) as e:
        demo.from_upload(name, content)
    assert name in str(e.value) and "s2i-upload" not in str(e.value)


def test_too_large_upload_is_refused_before_decoding(demo):
    with pytest.raises(AudioError, match="big.wav is 10.0 MB; the limit is 10 MB"):
        demo.from_upload("big.wav", bytes(MAX_UPLOAD_BYTES + 1))


def test_missing_file(demo, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        demo.from_file(tmp_path / "nope.wav")


def test_nearest_images_ranks(demo):
    for i in (0, len(demo.train_records) - 1):
        nearest = demo.nearest_images(demo.image_embeddings[i], k=4)
        assert nearest[0].key == demo.train_records[i].key
        assert np.isclose(nearest[0].similarity, 1, atol=1e-4)
        sims = [nb.similarity for nb in nearest]
        assert sims == sorted(sims, reverse=True) and len(nearest) == 4
        assert nearest[0].image.shape == (demo.cfg.data.image_size, demo.cfg.data.image_size, 3)
    assert len(demo.nearest_images(demo.image_embeddings[0], k=10_000)) == len(demo.train_records)
    with pytest.raises(ValueError):
        demo.nearest_images(demo.image_embeddings[0], k=0)


# ------------------------------------------------------------------------------ widget callbacks
def test_widgets_speak_and_recolour(demo):
    ui = build_widgets(demo)
    ui.caption.value = "this bird has a bright yellow belly and a red crown"
    ui.n.value = 3
    first = ui.speak_and_draw()
    assert first is not None and len(ui.generated.children) == 3 and len(ui.nearest.children) == ui.k
    assert ui.audio.value[:4] == b"RIFF" and "ms" in ui.message.value
    assert ui.colours["belly_color"].value == "yellow" and ui.colours["wing_color"].value == KEEP

    ui.colours["belly_color"].value = "blue"
    recoloured = ui.recolour()
    assert ui.caption.value == "this bird has a bright blue belly and a red crown"
    assert recoloured.seed == first.seed and recoloured.source == ui.caption.value
    assert ui.colours["belly_color"].value == "blue"

    ui.colours["wing_color"].value = "green"    # a part the caption does not colour
    assert ui.recolour() is None and "no colour for the wings" in ui.message.value
    ui.colours["crown_color"].value = "black"
    assert ui.recolour() is not None and ui.caption.value == "this bird has a bright blue belly and a black crown"
    assert "no colour for the wings" in ui.message.value


def test_widgets_show_errors_as_messages(demo):
    ui = build_widgets(demo)
    ui.caption.value = "  "
    assert ui.speak_and_draw() is None and "empty" in ui.message.value
    ui.upload.value = ({"name": "notes.ogg", "type": "audio/ogg", "size": 20,
                        "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                        "content": memoryview(b"not an ogg file at all")},)
    assert "notes.ogg" in ui.message.value and "not a readable audio file" in ui.message.value
    assert ui.upload.value == ()
