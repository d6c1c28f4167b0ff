"""The interactive demo (notebook 05) and ``python -m s2i_lib generate``: a typed caption spoken by a
voice, or a recording, -> SEN speech embedding -> generated images; beside them the nearest real
training images, and the same caption with other colour words drawn with the same noise.

    demo = Demo.load(cfg)                                  # builds the missing steps first
    result = demo.from_text("a bird with a red crown", voice="espeak:en-us", seed=0, n=4)
    result.images                                          # (4, S, S, 3) uint8
    demo.nearest_images(result.embedding, k=5)             # real training images, by SEN retrieval
    demo.swap_colours("a bird with a red crown", {"crown_color": "blue"})
    build_widgets(demo)                                    # the ipywidgets front end

Every widget callback is a method of ``DemoWidgets`` that calls the functions here, so pytest
exercises the demo without a browser; a callback never raises: errors become a message.

Recordings (uploads, ``--wav``): at most 10 MB and 30 s; stereo is averaged, other rates are
resampled; leading and trailing silence is trimmed (``trim_silence``) because the speech encoder was
trained on TTS utterances that start and stop with the speech, and the per-utterance mean and
variance normalisation of the features would otherwise be computed mostly over silence.
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import pipeline
from .artifacts import METRICS_FILE, load_array, read_json
from .config import STEPS, Config, SpeechConfig
# the colour words of a caption: one reading for the demo, the evaluation and notebook 03
from .data.captions import colour_attributes, colour_mentions, part_name, swap_colours
from .data.layout import read_dataset
from .inference import MAX_SEED
from .speech.features import AudioError, read_audio
from .speech.synthesis import normalise_caption
from .speech.tts import UnknownVoiceError, WeightsNotAvailableError
from .steps.profile import speech_to_image

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_RECORDING_SECONDS = 30.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_IMAGES = 64

# Silence trimming, on the RMS of 20 ms frames every 10 ms: a frame is sound if it is above the
# silence level (speech.silence_rms), within 40 dB of the loudest frame, and 10 dB above the noise
# floor (the 5th percentile of the frames) unless that is within 30 dB of the loudest frame: an
# utterance without pauses has no noise floor, its quietest frames are speech. 30 ms are kept on
# each side: the TTS utterances the encoder learnt from start and end within ~50 ms of the speech,
# and more silence moves the embedding (default profile, 0.1 s of digital silence on each side:
# cosine 0.88 to the unpadded utterance's embedding; 30 ms: 0.95).
TRIM_FRAME_S = 0.02
TRIM_BELOW_PEAK_DB = 40.0
TRIM_ABOVE_NOISE_DB = 10.0
TRIM_NOISE_CAP_DB = 30.0
TRIM_MARGIN_S = 0.03


# ------------------------------------------------------------------------------------ recordings
def speech_bounds(wave: np.ndarray, sample_rate: int, floor_rms: float = 1e-3) -> tuple[int, int] | None:
    """(start, end) sample of the span from the first to the last frame that sounds like speech,
    or None if no frame does (thresholds above)."""
    return speech_activity(wave, sample_rate, floor_rms)[0]


def speech_activity(wave: np.ndarray, sample_rate: int, floor_rms: float = 1e-3
                    ) -> tuple[tuple[int, int] | None, float]:
    """``speech_bounds`` and the seconds of sound inside them (the frames above the threshold,
    hop by hop): two clicks far apart span seconds but sound for a few milliseconds.

    An energy threshold, not ``torchaudio.functional.vad``: on clean TTS utterances vad with its
    defaults cut the first 0.3 s of speech (it needs 0.25 s of activity to trigger and keeps
    nothing before the trigger), it trims only the front (the end needs a second pass on the
    reversed audio), and two passes cost ~0.2 s per 2.4 s of audio on this CPU: most of the
    0.5 s latency budget of ``generate``. The threshold costs under a millisecond.
    """
    wave = np.asarray(wave, dtype=np.float32)
    frame = max(1, int(TRIM_FRAME_S * sample_rate))
    hop = max(1, frame // 2)
    if len(wave) < frame:
        frames = wave[None, :]
    else:
        frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop]
    if frames.size == 0:
        return None, 0.0
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    peak, noise = float(rms.max()), float(np.percentile(rms, 5))
    threshold = max(floor_rms, peak * _gain(-TRIM_BELOW_PEAK_DB),
                    min(noise * _gain(TRIM_ABOVE_NOISE_DB), peak * _gain(-TRIM_NOISE_CAP_DB)))
    active = np.nonzero(rms >= threshold)[0]
    if len(active) == 0:
        return None, 0.0
    bounds = int(active[0] * hop), int(min(len(wave), active[-1] * hop + frame))
    return bounds, min(len(active) * hop, bounds[1] - bounds[0]) / sample_rate


def _gain(db: float) -> float:
    return 10 ** (db / 20)


def trim_silence(wave: np.ndarray, sample_rate: int, floor_rms: float = 1e-3,
                 margin_s: float = TRIM_MARGIN_S) -> np.ndarray:
    """``wave`` without its leading and trailing silence (``margin_s`` of it kept on each side);
    empty if it is all silence."""
    return _cut(wave, speech_bounds(wave, sample_rate, floor_rms), sample_rate, margin_s)


def _cut(wave: np.ndarray, bounds: tuple[int, int] | None, sample_rate: int,
         margin_s: float = TRIM_MARGIN_S) -> np.ndarray:
    if bounds is None:
        return wave[:0]
    margin = int(margin_s * sample_rate)
    return wave[max(0, bounds[0] - margin): bounds[1] + margin]


def load_recording(path: str | Path, speech: SpeechConfig, name: str | None = None) -> np.ndarray:
    """A recording as the speech encoder wants it: mono float32 at ``speech.sample_rate``, silence
    trimmed. A file that is missing, empty, not audio, corrupt, silent, longer than 30 s or with
    too little speech is an ``AudioError`` (``FileNotFoundError`` if missing) naming the file, or
    ``name`` in its place (an upload is read from a temporary copy)."""
    path = Path(path)
    shown = name or str(path)
    limit = min(MAX_RECORDING_SECONDS, speech.max_audio_seconds)
    try:
        wave = read_audio(path, speech.sample_rate, limit, speech.silence_rms).numpy()
    except (AudioError, FileNotFoundError) as e:
        if name is None:
            raise
        # the temporary path means nothing to the user: name the file they gave
        raise type(e)(str(e).replace(str(path), name)) from None
    bounds, spoken = speech_activity(wave, speech.sample_rate, speech.silence_rms)
    if spoken < speech.min_speech_seconds:
        raise AudioError(f"{shown} has {spoken:.2f} s of sound above the silence level; at least "
                         f"{speech.min_speech_seconds} s of speech is needed")
    return _cut(wave, bounds, speech.sample_rate)   # the bounds found above: one pass over the audio


def check_voice(cfg: Config, voice: str) -> str:
    """``voice`` if the profile has it (a training or a held-out voice), else a ValueError naming them."""
    voices = list(cfg.speech.voices) + list(cfg.speech.heldout_voices)
    if voice not in voices:
        raise ValueError(f"unknown voice {voice!r} for profile {cfg.profile}; expected one of "
                         f"{', '.join(voices)} (speech.voices and speech.heldout_voices)")
    return voice


def draw(s2i, wave: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Speech -> embedding -> ``n`` images: (embedding (D,), uint8 images (n, S, S, 3), seconds of
    ``embedding`` and ``generation``). What the demo, ``generate`` and its benchmark time."""
    t0 = time.perf_counter()
    features = s2i.features(wave)
    # NaN in, NaN out: the generator would draw all-black images and the run would look fine
    if not np.isfinite(np.asarray(features)).all():
        raise ValueError("the speech features of the audio are not finite (NaN or infinite): its "
                         "samples are corrupt or far outside [-1, 1]")
    embedding = s2i.embed([features])
    if not np.isfinite(np.asarray(embedding)).all():
        raise ValueError(f"the speech embedding is not finite (NaN or infinite): the speech encoder "
                         f"is damaged; rebuild it: python -m s2i_lib sen --profile "
                         f"{s2i.profile} --force")
    t1 = time.perf_counter()
    images = s2i.generate(embedding, n=n, seed=seed)[0]
    t2 = time.perf_counter()
    return embedding[0].numpy(), images, {"embedding": t1 - t0, "generation": t2 - t1}


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A waveform as the bytes of a 16-bit WAV file (for an audio player or a download)."""
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1, 1), sample_rate, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ the demo
@dataclass
class Generated:
    """What one request produced."""
    source: str                    # the caption, or the recording's file name
    voice: str | None              # the TTS voice (None for a recording)
    wave: np.ndarray               # what the speech encoder heard, at sample_rate
    sample_rate: int
    embedding: np.ndarray          # (D,) unit-norm SEN speech embedding
    images: np.ndarray             # (n, S, S, 3) uint8, the last stage
    seed: int
    timings: dict[str, float] = field(default_factory=dict)   # seconds: speech, embedding, generation


@dataclass
class Neighbour:
    key: str
    class_name: str
    similarity: float              # cosine similarity of the image's SEN embedding to the query
    image: np.ndarray              # (H, W, 3) uint8


def warm_up(s2i: Any) -> None:
    """One throw-away pass: the first forward of a model pays for lazy initialisation (a few
    hundred ms on CPU), which belongs to loading, not to a request."""
    s2i.generate(s2i.embed([s2i.features(np.sin(np.arange(8000, dtype=np.float32) / 5))]), n=1)


class Demo:
    """The trained models of a profile, the SEN embeddings of its training images (for
    retrieval) and the voices it can speak in: the training voices, then the held-out ones."""

    def __init__(self, cfg: Config, s2i: Any, index: Any, image_embeddings: np.ndarray):
        self.s2i = s2i
        self.cfg = cfg
        self.index = index
        self.train_records = index.split("train")
        if len(image_embeddings) != len(self.train_records):
            raise ValueError(f"{len(image_embeddings)} image embeddings for {len(self.train_records)} "
                             f"training images: the sen step does not match the data step; rebuild it")
        self.image_embeddings = np.asarray(image_embeddings, dtype=np.float32)
        self.training_voices = list(self.cfg.speech.voices)
        self.heldout_voices = list(self.cfg.speech.heldout_voices)
        self.voices = self.training_voices + self.heldout_voices

    @classmethod
    def load(cls, cfg: Config, runs_dir: str | Path | None = None, build: bool = True) -> "Demo":
        """The demo of ``cfg``'s profile; with ``build`` the missing steps are built first (with
        progress bars), else a missing step is a FileNotFoundError."""
        if build:
            pipeline.ensure("gan", cfg, runs_dir)
        s2i = speech_to_image(cfg, runs_dir)
        warm_up(s2i)
        index = read_dataset(pipeline.step_dir("data", cfg, runs_dir))
        path = pipeline.step_dir("sen", cfg, runs_dir) / "embeddings" / "image_train.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: rebuild the sen step "
                                    f"(python -m s2i_lib sen --profile {cfg.profile} --force)")
        return cls(cfg, s2i, index, load_array(path))

    @property
    def dataset(self) -> str:
        return self.cfg.data.dataset

    def example_captions(self, k: int = 5) -> list[str]:
        """The first caption of ``k`` test images of different classes (classes never trained on)."""
        out, seen = [], set()
        for r in self.index.split("test"):
            if r.class_id not in seen:
                seen.add(r.class_id)
                out.append(r.captions[0])
            if len(out) == k:
                break
        return out

    def check_voice(self, voice: str) -> str:
        return check_voice(self.cfg, voice)

    # --- speech in
    def from_text(self, caption: str, voice: str | None = None, seed: int = 0, n: int = 4) -> Generated:
        """``caption`` spoken by ``voice`` (default: the first training voice), then drawn."""
        voice = self.check_voice(voice or self.voices[0])
        _check_request(seed, n)
        text = normalise_caption(caption, self.cfg.speech.max_caption_chars)
        t0 = time.perf_counter()
        wave = self.s2i.speak(text, voice, seed)
        return self._draw(wave, caption, voice, seed, n, time.perf_counter() - t0)

    def from_file(self, path: str | Path, seed: int = 0, n: int = 4, name: str | None = None) -> Generated:
        """A recording (WAV/FLAC/OGG/MP3, at most 30 s), then drawn; see ``load_recording``."""
        _check_request(seed, n)
        t0 = time.perf_counter()
        wave = load_recording(path, self.cfg.speech, name)
        return self._draw(wave, name or Path(path).name, None, seed, n, time.perf_counter() - t0)

    def from_upload(self, name: str, content: bytes | memoryview, seed: int = 0, n: int = 4) -> Generated:
        """A file as a browser uploads it (its name and bytes): size checked before anything is
        decoded, then read from a temporary copy."""
        size = len(content)
        if size == 0:
            raise AudioError(f"{name} is empty (0 bytes)")
        if size > MAX_UPLOAD_BYTES:
            raise AudioError(f"{name} is {size / 2**20:.1f} MB; the limit is "
                             f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB (and {MAX_RECORDING_SECONDS:.0f} s)")
        suffix = Path(name).suffix.lower()   # the name is the user's: keep only a plain suffix
        if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            suffix = ""
        with tempfile.TemporaryDirectory(prefix="s2i-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(bytes(content))
            return self.from_file(path, seed, n, name=name)

    def _draw(self, wave: np.ndarray, source: str, voice: str | None, seed: int, n: int,
              speech_s: float) -> Generated:
        embedding, images, timings = draw(self.s2i, wave, n, seed)
        return Generated(source, voice, np.asarray(wave), self.cfg.speech.sample_rate,
                         embedding, images, seed, {"speech": speech_s, **timings})

    # --- retrieval and colours
    def nearest_images(self, embedding: np.ndarray, k: int = 5) -> list[Neighbour]:
        """The ``k`` training images whose SEN image embeddings are closest (cosine) to a speech
        embedding, most similar first."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        sims = self.image_embeddings @ np.asarray(embedding, dtype=np.float32).reshape(-1)
        order = np.argsort(-sims, kind="stable")[:k]
        out = []
        for i in order:
            r = self.train_records[int(i)]
            image = np.asarray(self.index.load_image(r.key))
            out.append(Neighbour(r.key, r.class_name, float(sims[i]), image))
        return out

    def colour_attributes(self) -> dict[str, list[str]]:
        return colour_attributes(self.dataset)

    def colour_mentions(self, caption: str) -> dict[str, str]:
        return colour_mentions(caption, self.dataset)

    def swap_colours(self, caption: str, changes: dict[str, str]) -> str:
        return swap_colours(caption, changes, self.dataset)


def _check_request(seed: int, n: int) -> None:
    if not 1 <= int(n) <= MAX_IMAGES:
        raise ValueError(f"--n (the number of images) must be between 1 and {MAX_IMAGES}, got {n}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"--seed (the noise seed) must be between 0 and {MAX_SEED} (2**63 - 1), "
                         f"got {seed}")


# ------------------------------------------------------------------------------------ plots
def show_images(images: np.ndarray, titles: list[str] | None = None, row_title: str | None = None,
                row_labels: list[str] | None = None, ax_size: float = 1.6):
    """A row of images (n, S, S, 3), or rows of them (rows, n, S, S, 3), with matplotlib;
    ``titles`` go over the first row, ``row_labels`` left of each row. Returns the figure."""
    import matplotlib.pyplot as plt
    grid = np.asarray(images)
    grid = grid[None] if grid.ndim == 4 else grid
    rows, n = grid.shape[:2]
    fig, axes = plt.subplots(rows, n, figsize=(ax_size * n, ax_size * rows * 1.1 + 0.3), squeeze=False)
    for i in range(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(grid[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if titles and i == 0:
                ax.set_title(titles[j], fontsize=8)
            if row_labels and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if row_title:
        fig.suptitle(row_title, fontsize=9)
    fig.tight_layout()
    return fig


def _species(class_name: str) -> str:
    """"017.Yellow_Bellied_Red_Finch" -> "Yellow Bellied Red Finch"."""
    return class_name.split(".", 1)[-1].replace("_", " ")


def show_neighbours(neighbours: list[Neighbour]):
    """The nearest training images with their class and similarity."""
    return show_images(np.stack([nb.image for nb in neighbours]),
                       [f"{_species(nb.class_name)[:18]}\n{nb.similarity:.2f}" for nb in neighbours],
                       "nearest real training images (SEN retrieval, cosine similarity)")


# ------------------------------------------------------------------------------------ widgets
KEEP = "(as said)"


def _png(image: np.ndarray, min_size: int = 128) -> bytes:
    from PIL import Image
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if im.width < min_size:   # small images: enlarge without blur so that pixels stay visible
        f = -(-min_size // im.width)
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class DemoWidgets:
    """The ipywidgets front end of a ``Demo``. ``layout`` is the widget to show (the object itself
    displays as it in Jupyter); the callbacks are plain methods: ``speak_and_draw``,
    ``upload_and_draw``, ``recolour``."""

    def __init__(self, demo: Demo, neighbours: int = 5):
        import ipywidgets as w
        self.demo = demo
        self.k = neighbours
        labels = [(f"{v} (training voice)", v) for v in demo.training_voices]
        labels += [(f"{v} (held-out voice)", v) for v in demo.heldout_voices]
        examples = demo.example_captions(1)
        self.caption = w.Textarea(value=examples[0] if examples else "", description="caption",
                                  layout=w.Layout(width="95%", height="3.5em"))
        self.voice = w.Dropdown(options=labels, value=demo.voices[0], description="voice")
        self.seed = w.IntSlider(value=0, min=0, max=99, description="noise seed")
        self.n = w.IntSlider(value=4, min=1, max=8, description="images")
        self.speak_button = w.Button(description="speak and draw", button_style="primary", icon="play")
        self.upload = w.FileUpload(accept=",".join(AUDIO_SUFFIXES), multiple=False,
                                   description="recording")
        self.colours = {a: w.Dropdown(options=[KEEP] + values, value=KEEP, description=part_name(a),
                                      layout=w.Layout(width="210px"))
                        for a, values in demo.colour_attributes().items()}
        self.recolour_button = w.Button(description="recolour, same noise", icon="paint-brush")
        self.message = w.HTML()
        self.heard = w.HTML()
        self.audio = w.Audio(format="wav", autoplay=False, controls=True)
        self.generated = w.HBox()
        self.nearest = w.HBox()
        self.speak_button.on_click(lambda _: self.speak_and_draw())
        self.recolour_button.on_click(lambda _: self.recolour())
        self.upload.observe(lambda _: self.upload_and_draw(), names="value")
        self.layout = w.VBox([
            self.caption, w.HBox([self.voice, self.speak_button]), w.HBox([self.seed, self.n]),
            w.HBox([w.HTML("or upload a recording (WAV/FLAC/OGG/MP3, at most 30 s, 10 MB):"), self.upload]),
            w.HTML("<b>colours</b> (rewrite the caption's colour words, same noise):"),
            w.HBox(list(self.colours.values()), layout=w.Layout(flex_flow="row wrap")),
            self.recolour_button, self.message, self.heard, self.audio,
            w.HTML("<b>generated</b>"), self.generated,
            w.HTML("<b>nearest real training images</b> (SEN retrieval)"), self.nearest,
        ])

    def _repr_mimebundle_(self, **kwargs):
        return self.layout._repr_mimebundle_(**kwargs)

    # --- callbacks: each returns the result (None on error) and never raises
    def speak_and_draw(self) -> Generated | None:
        return self._run(lambda: self.demo.from_text(self.caption.value, self.voice.value,
                                                     self.seed.value, self.n.value))

    def upload_and_draw(self) -> Generated | None:
        files = self.upload.value
        if not files:         # the uploader was cleared
            return None
        f = files[0]
        self.upload.value = ()   # so that uploading the same file again is a change too
        return self._run(lambda: self.demo.from_upload(f["name"], f["content"], self.seed.value,
                                                       self.n.value))

    def recolour(self) -> Generated | None:
        said = self.demo.colour_mentions(self.caption.value)
        chosen = {a: d.value for a, d in self.colours.items() if d.value != KEEP}
        unsaid = [part_name(a) for a in chosen if a not in said]
        changes = {a: c for a, c in chosen.items() if a in said and said[a] != c}
        if not changes:
            why = (f"the caption says no colour for the {', '.join(unsaid)}" if unsaid
                   else "choose a colour other than the one the caption says")
            return self._say(f"{why}: nothing to rewrite", error=True)
        try:
            self.caption.value = self.demo.swap_colours(self.caption.value, changes)
        except ValueError as e:
            return self._say(str(e), error=True)
        result = self.speak_and_draw()
        if result is not None and unsaid:
            self._say(f"the caption says no colour for the {', '.join(unsaid)}; the other parts "
                      f"were recoloured")
        return result

    # --- helpers
    def _run(self, request) -> Generated | None:
        self._say("working...")
        try:
            result = request()
        except Exception as e:  # noqa: BLE001 - a callback's exception would only reach the browser console
            self._say(str(e) or type(e).__name__, error=True)
            return None
        self.show(result)
        t = result.timings
        self._say(f"speech {t['speech'] * 1000:.0f} ms, speech to embedding {t['embedding'] * 1000:.0f} ms, "
                  f"generation {t['generation'] * 1000:.0f} ms")
        return result

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#555"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def show(self, result: Generated) -> None:
        import ipywidgets as w
        voice = f" ({html.escape(result.voice)})" if result.voice else " (recording)"
        self.heard.value = f"heard: <i>{html.escape(result.source)}</i>{voice}"
        self.audio.value = wav_bytes(result.wave, result.sample_rate)
        self.generated.children = [w.Image(value=_png(im), format="png") for im in result.images]
        self.nearest.children = [
            w.VBox([w.Image(value=_png(nb.image), format="png"),
                    w.HTML(f"<small>{html.escape(_species(nb.class_name))}<br>{nb.similarity:.2f}</small>")])
            for nb in self.demo.nearest_images(result.embedding, self.k)]
        said = self.demo.colour_mentions(result.source) if result.voice else {}
        for a, d in self.colours.items():
            d.value = said.get(a, KEEP)


def build_widgets(demo: Demo) -> DemoWidgets:
    """The demo's widgets; show the result (or its ``.layout``) in a notebook."""
    return DemoWidgets(demo)


# ------------------------------------------------------------------------------------ command line
def run_generate(cfg: Config, out: Path, wav: Path | None = None, text: str | None = None,
                 voice: str | None = None, seed: int = 0, n: int = 1,
                 runs_dir: str | Path | None = None) -> int:
    """``python -m s2i_lib generate``: images from a recording or a typed caption, written to ``out``.
    Returns the exit code: 2 for bad input (a bad file, option, damaged or stale model, an --out
    that cannot be written), with a one-line message on stderr and nothing written."""
    def fail(message: str) -> int:
        # one line, whatever the message holds (an OS error text, a path with a newline)
        print("error: " + " ".join(message.splitlines()), file=sys.stderr)
        return 2

    speech = cfg.speech
    try:
        _check_request(seed, n)
        check_out(out)
        if wav is not None:
            if voice is not None:
                return fail("--voice applies to --text only (a recording has its own voice)")
            t0 = time.perf_counter()
            wave = load_recording(wav, speech)
            speech_s = time.perf_counter() - t0
            source = f"{wav} ({len(wave) / speech.sample_rate:.2f} s after trimming silence)"
        else:
            voice = check_voice(cfg, voice or speech.voices[0])
            text = normalise_caption(text, speech.max_caption_chars)
        check_trained_config(cfg, runs_dir)
        t0 = time.perf_counter()
        s2i = speech_to_image(cfg, runs_dir)
        warm_up(s2i)
        load_s = time.perf_counter() - t0
        if wav is None:
            t0 = time.perf_counter()
            wave = s2i.speak(text, voice, seed)
            speech_s = time.perf_counter() - t0
            source = f'"{text}" spoken by {voice}'
        _, images, timings = draw(s2i, wave, n, seed)
        # everything is encoded before the first byte is written: a failure leaves nothing behind
        files = {"caption.wav": wav_bytes(wave, speech.sample_rate)} if wav is None else {}
        files.update({f"image_{i}.png": _png_bytes(im) for i, im in enumerate(images)})
        files["images_x4.png"] = _png_bytes(np.concatenate(list(images), axis=1), scale=4)  # for viewing
        write_outputs(out, files)
    # UnknownVoiceError, AudioError and FileNotFoundError are ValueError and OSError too; listed
    # so that a reader sees what lands here
    except (AudioError, FileNotFoundError, UnknownVoiceError, WeightsNotAvailableError, ValueError,
            OSError) as e:
        return fail(str(e))

    size = images.shape[1]
    print(f"heard: {source}")
    print(f"wrote {n} image{'s' if n > 1 else ''} of {size} px to {out}/image_<i>.png"
          f"{' and the speech to ' + str(out / 'caption.wav') if wav is None else ''}; "
          f"{out / 'images_x4.png'} for viewing")
    what = "reading + trimming" if wav is not None else "synthesis"
    print(f"latency: speech ({what}) {speech_s * 1000:.0f} ms, speech -> embedding "
          f"{timings['embedding'] * 1000:.0f} ms, generation {timings['generation'] * 1000:.0f} ms "
          f"(model loading {load_s:.1f} s, not counted)")
    return 0


def check_trained_config(cfg: Config, runs_dir: str | Path | None = None) -> None:
    """A ValueError if the trained gan step on disk was built from another config than ``cfg``
    (``--set gan.z_dim=32`` would otherwise silently draw with the old model), naming the keys
    that differ, or from another run of the sen step than the one on disk (its generator was
    trained on another encoder's embeddings). A step that never finished is left to the loaders,
    which say what to build."""
    gan_dir = pipeline.step_dir("gan", cfg, runs_dir)
    if not (gan_dir / METRICS_FILE).exists():
        return
    trained = read_json(gan_dir / METRICS_FILE)
    if not isinstance(trained, dict):
        raise ValueError(f"{gan_dir / METRICS_FILE} is damaged (not a step record); rebuild the "
                         f"step: python -m s2i_lib gan --profile {cfg.profile} --force")
    rebuild = f"run python -m s2i_lib gan --profile {cfg.profile}"
    if trained.get("config_hash") != cfg.step_hash("gan"):
        changes = _config_changes(cfg, runs_dir) or [
            f"config hash {trained.get('config_hash')} -> {cfg.step_hash('gan')}"]
        raise ValueError(f"the trained gan step in {gan_dir} was built with another config "
                         f"({', '.join(changes)}); {rebuild} (with the same --set options) to "
                         f"rebuild it")
    sen_metrics = pipeline.step_dir("sen", cfg, runs_dir) / METRICS_FILE
    sen = read_json(sen_metrics) if sen_metrics.exists() else None
    if isinstance(sen, dict) and trained.get("upstream_runs", {}).get("sen") != sen.get("run_id"):
        raise ValueError(f"the trained gan step in {gan_dir} was trained on another run of the "
                         f"sen step (the sen step was re-run since); {rebuild} to rebuild it")


def _config_changes(cfg: Config, runs_dir: str | Path | None) -> list[str]:
    """"section.key: trained -> asked" for each value that the metrics.json of the steps up to gan
    record differently from ``cfg`` (each step records its own section)."""
    def shown(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    asked = json.loads(json.dumps(cfg.to_dict(), default=str))   # tuples as lists, as recorded
    changes = []
    for step in STEPS[: STEPS.index("gan") + 1]:
        path = pipeline.step_dir(step, cfg, runs_dir) / METRICS_FILE
        try:
            recorded = read_json(path)["config"]
            section = recorded[step]
        except (FileNotFoundError, ValueError, KeyError, TypeError):   # nothing to compare with
            continue
        if step == "gan" and recorded.get("seed", cfg.seed) != cfg.seed:
            changes.append(f"seed: {recorded['seed']} -> {cfg.seed}")
        for key, value in asked[step].items():
            if key in section and section[key] != value:
                changes.append(f"{step}.{key}: {shown(section[key])} -> {shown(value)}")
    return changes


def check_out(out: Path) -> None:
    """A ValueError naming the problem if ``out`` cannot be a folder to write into (or be made
    one): a file in the way, a dangling symbolic link, a folder this user may not write into."""
    for p in (out, *out.parents):
        where = f"--out {out}" if p == out else f"--out {out}: {p}"
        if p.is_symlink() and not p.exists():
            raise ValueError(f"{where} is a symbolic link to {os.readlink(p)}, which does not exist")
        if not p.exists():
            continue          # made by write_outputs, if its nearest existing parent allows it
        if not p.is_dir():
            raise ValueError(f"{where} is a file, not a folder")
        # os.access, not a trial write: nothing is created before the images are ready. Root
        # passes it except on a read-only file system; write_outputs reports what the OS says then.
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError(f"{where} is not writable (permission denied)")
        return


def write_outputs(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into the folder ``out``: all of them or none.

    Each goes to a temporary file beside its target, then all are renamed into place. On a failure
    (a full disk, a permission, a folder where a file should go) the temporary files, the files this
    call added and the folders it created are removed, and the error is a ValueError naming the
    file. A file that was replaced before the failure keeps its new content (renames are not undone).
    """
    check_out(out)
    for name in files:
        if (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a folder, where {name} should be "
                             f"written; remove it or choose another --out")
    created = []            # the folders this call makes, deepest first
    p = out
    while not p.exists():
        created.append(p)
        p = p.parent
    temps: dict[str, Path] = {}
    added: list[Path] = []
    target = out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = out / name   # atomic_path's temporary name: the pipeline's cleaners know it
            temps[name] = tmp = out / f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}"
            with open(tmp, "wb") as f:
                f.write(data)
                os.fsync(f.fileno())   # durable before the rename publishes it
        for name, tmp in temps.items():
            target = out / name
            new = not target.exists()
            os.replace(tmp, target)
            if new:
                added.append(target)
    except BaseException as e:   # Ctrl-C included: nothing half-written stays
        for path in [*temps.values(), *added]:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        for folder in created:
            try:
                folder.rmdir()
            except OSError:    # not empty (someone else's files) or gone: leave it
                break
        if isinstance(e, OSError):
            raise ValueError(f"--out {out}: cannot write {target}: {e.strerror or e}") from e
        raise


def _png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes, enlarged ``scale`` times without blur."""
    from PIL import Image
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
