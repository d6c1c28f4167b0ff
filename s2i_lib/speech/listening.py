"""Listening tests: test captions as training never hears them.

The speech step's held-out voices are variants of the training voices (another eSpeak pitch and
timbre of the same accents). The groups here are further away, each measured on the same test
captions after the SEN is trained (``sen/training.py``) and by the evaluation (``evaluation/step.py``):

- **other voices** (``sen.listening_voices``): eSpeak NG's other English accents (Scottish,
  Caribbean, New York, West Midlands, ...), or a neural voice. A voice that is also a training voice
  is measured too, and its group says so;
- **degraded audio** (``sen.listening_degradations``): the first eSpeak training voice, then
  additive white noise at 10 dB SNR, a reverberant room, or an 8 kHz telephone line;
- a **clean** group of that voice on the same captions, so that a degradation's cost is read
  against the same utterances;
- **held-out phrasings** (``sen.listening_held_out_phrasings``): that voice again, each caption's
  attributes said in a sentence frame the caption grammar keeps out of training
  (``data.captions.rephrase``), read against the clean group. Toy datasets only: a real dataset's
  captions have no attribute list to say again.

The degradations use torchaudio's functional ops (``add_noise``, ``fftconvolve``, ``resample``, the
biquad filters, mu-law). The room's impulse response is written here: exponentially decaying noise
(Schroeder's statistical model of a diffuse late reverberation) after a direct-path impulse. A room
simulator (pyroomacoustics) would add early reflections, but not what the test needs: a long,
smearing tail at a known reverberation time.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from .tts import parse_voice

DEGRADATIONS = ("noise_10db", "reverb", "telephone")
LABELS = {"noise_10db": "noise at 10 dB SNR", "reverb": "reverberation (RT60 0.6 s)",
          "telephone": "telephone band (8 kHz)"}
REVERB_RT60_S = 0.6
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))


def room_impulse_response(sample_rate: int, rt60_s: float = REVERB_RT60_S, seed: int = 0) -> torch.Tensor:
    """A direct-path impulse, then Gaussian noise decaying by 60 dB over ``rt60_s``; unit energy."""
    n = int(rt60_s * sample_rate)
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    tail = torch.randn(n, generator=_generator(seed, "rir")) * torch.exp(-6.9078 * t / rt60_s)  # ln(1000)
    rir = 0.3 * tail
    rir[0] = 1.0
    return rir / rir.norm()


def reverberate(x: torch.Tensor, sample_rate: int, rt60_s: float, seed: int = 0) -> torch.Tensor:
    """``x`` in a room of ``rt60_s`` (``room_impulse_response``), cut to its length, same peak level."""
    y = AF.fftconvolve(x, room_impulse_response(sample_rate, rt60_s, seed=seed))[:len(x)]
    return y * (x.abs().max() / y.abs().max().clamp_min(1e-8))


def add_white_noise(x: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian white noise at ``snr_db`` (torchaudio's ``add_noise`` scales it)."""
    noise = torch.randn(x.shape, generator=generator)
    return AF.add_noise(x.unsqueeze(0), noise.unsqueeze(0), torch.tensor([float(snr_db)]))[0]


def telephone(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``x`` over a telephone line: down to 8 kHz, the 300-3400 Hz band, 8-bit mu-law (G.711), back
    up to ``sample_rate``, same length."""
    y = AF.resample(x, sample_rate, TELEPHONE_RATE)
    y = AF.highpass_biquad(y, TELEPHONE_RATE, TELEPHONE_BAND_HZ[0])
    y = AF.lowpass_biquad(y, TELEPHONE_RATE, TELEPHONE_BAND_HZ[1])
    y = AF.mu_law_decoding(AF.mu_law_encoding(y.clamp(-1, 1), 256), 256)
    y = AF.resample(y, TELEPHONE_RATE, sample_rate)[:len(x)]
    return torch.nn.functional.pad(y, (0, len(x) - len(y))).clamp(-1, 1)


def degrade(wave: np.ndarray, sample_rate: int, kind: str, seed: int = 0, key: str = "") -> np.ndarray:
    """``wave`` (float32 mono) as heard through ``kind`` (one of ``DEGRADATIONS``), same rate and
    length; the noise is drawn from ``(seed, key)``, so an utterance degrades the same way every time."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    x = torch.as_tensor(np.ascontiguousarray(wave, dtype=np.float32))
    if kind == "noise_10db":
        y = add_white_noise(x, 10.0, _generator(seed, f"noise:{key}"))
    elif kind == "reverb":
        y = reverberate(x, sample_rate, REVERB_RT60_S, seed)
    else:
        y = telephone(x, sample_rate)
    return y.clamp(-1, 1).numpy().astype(np.float32)


@dataclass(frozen=True)
class ListeningGroup:
    name: str                   # the row label of the sen and eval tables
    voice: str
    degradation: str | None = None
    held_out_phrasing: bool = False   # say the caption's attributes in a frame training never uses

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name).strip("_")


def listening_groups(speech_cfg, sen_cfg) -> list[ListeningGroup]:
    """The groups a configuration asks for, in table order."""
    groups = []
    for voice in sen_cfg.listening_voices:
        where = ", in training" if voice in speech_cfg.voices else ""
        groups.append(ListeningGroup(f"speech ({voice}{where})", voice))
    base = degraded_voice(speech_cfg.voices)
    if sen_cfg.listening_degradations or sen_cfg.listening_held_out_phrasings:
        groups.append(ListeningGroup(f"speech ({base}, clean)", base))
    groups += [ListeningGroup(f"speech ({base}, {LABELS[d]})", base, d) for d in sen_cfg.listening_degradations]
    if sen_cfg.listening_held_out_phrasings:
        groups.append(ListeningGroup(f"speech ({base}, held-out phrasings)", base, held_out_phrasing=True))
    return groups


def group_texts(group: ListeningGroup, texts: Sequence[str], mentions: Sequence[dict[str, str]] | None,
                dataset: str, seed: int) -> list[str] | None:
    """What ``group`` says for the listening captions ``texts``: the captions themselves, or their
    ``mentions`` in held-out frames (None where there are no mentions to say: real datasets)."""
    if not group.held_out_phrasing:
        return list(texts)
    if mentions is None:
        return None
    from ..data.captions import rephrase
    return [rephrase(dataset, m, seed, key=t) for t, m in zip(texts, mentions)]


def degraded_voice(voices: Sequence[str]) -> str:
    """The voice the degradations are applied to: the first eSpeak training voice (eSpeak is fast,
    and a training voice separates what the degradation costs from what a new voice costs)."""
    return next((v for v in voices if parse_voice(v)[0] == "espeak"), voices[0])


def listening_captions(n_images: int, captions_per_image: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(image positions, caption indices) of ``n`` test captions: evenly spaced test images, their
    caption index cycling through the spoken ones, so the groups share every caption."""
    n = min(n, n_images)
    pos = np.linspace(0, n_images - 1, n).round().astype(int)
    return pos, np.arange(n) % captions_per_image


def speak_group(group: ListeningGroup, texts: Sequence[str], speech_cfg, seed: int = 0,
                progress: bool = True) -> list[torch.Tensor]:
    """Log-mel features (T, n_mels) of every text said as ``group`` hears it: the speech step's
    normalisation, prosody drawn per utterance from ``seed``, then the group's degradation."""
    from ..progress import tqdm
    from .features import log_mel
    from .synthesis import normalise_caption
    from .tts import load_synthesizer, sample_params
    s = speech_cfg
    synth = load_synthesizer(group.voice, s.sample_rate)
    out = []
    for i, text in enumerate(tqdm(texts, desc=f"listening: {group.name}", disable=not progress, leave=False)):
        key = f"listening-{i}"
        wave = synth.synthesize(normalise_caption(text, s.max_caption_chars), sample_params(group.voice, seed, key))
        if group.degradation:
            wave = degrade(wave, s.sample_rate, group.degradation, seed, key)
        out.append(log_mel(wave, s.sample_rate, s.n_mels, s.win_ms, s.hop_ms))
    return out
