"""Listening tests: test captions as training never hears them.

The speech step's held-out voices are variants of the training voices (another eSpeak pitch and
timbre of the same accents). The groups here are further away, each measured on the same test
captions after the SEN is trained (``steps/sen.py``) and by the evaluation (``evaluation/protocol.py``):

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

The degradations are the room, noise and telephone line of ``acoustics.py`` (torchaudio's
functional ops), which the training augmentation (``augment.py``) draws from too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.captions import rephrase
from ..device import cpu_count
from ..progress import tqdm
from ..voices import DEGRADATIONS, parse_voice
from .acoustics import REVERB_RT60_S, _generator, add_white_noise, reverberate, telephone
from .features import log_mel
from .synthesis import imap_unordered, normalise_caption
from .tts import load_synthesizer, sample_params

LABELS = {"noise_10db": "noise at 10 dB SNR", "reverb": "reverberation (RT60 0.6 s)",
          "telephone": "telephone band (8 kHz)"}


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


def speak_groups(jobs: Sequence[tuple[ListeningGroup, Sequence[str]]], speech_cfg, seed: int = 0,
                 workers: int = 1, progress: bool = True, min_parallel: int = 200,
                 chunk: int = 25) -> list[list[torch.Tensor]]:
    """Log-mel features (T, n_mels) of every text of each ``(group, texts)`` of ``jobs``, said as
    the group hears it: the speech step's normalisation, prosody drawn per utterance from ``seed``,
    then the group's degradation. One list of features per job, in the order of its texts.

    From ``min_parallel`` utterances on, chunks of ``chunk`` utterances are shared among ``workers``
    spawned processes, one synthesizer and torch thread each, as the speech step synthesizes: the
    natural voice is the bulk of the work, and one process with two threads per library is
    slower than two processes with one (x1.49 on the default profile, docs/experiments.md). Each
    utterance's prosody and noise are drawn from ``(seed, its index in its group)``, so how the
    work is shared changes only what the synthesizers themselves vary from run to run (Piper's
    unseeded noise, eSpeak's dependence on what its process said before: ``tts.py``)."""
    s = speech_cfg
    settings = {"sample_rate": s.sample_rate, "n_mels": s.n_mels, "win_ms": s.win_ms, "hop_ms": s.hop_ms,
                "max_caption_chars": s.max_caption_chars}
    n_utts = sum(len(texts) for _, texts in jobs)
    starts = [(j, start) for j, (_, texts) in enumerate(jobs) for start in range(0, len(texts), chunk)]
    workers = max(1, min(int(workers), cpu_count(), len(starts)))
    parallel = workers > 1 and n_utts >= min_parallel
    threads = 1 if parallel else None     # None: one process, the libraries' own thread counts
    chunks = [(j, start, jobs[j][0].voice, jobs[j][0].degradation, list(jobs[j][1][start:start + chunk]),
               settings, seed, threads) for j, start in starts]
    out: list[list] = [[None] * len(texts) for _, texts in jobs]
    results = imap_unordered(_speak_chunk, chunks, workers) if parallel else map(_speak_chunk, chunks)
    try:
        with tqdm(total=n_utts, unit="utt", desc="listening tests", disable=not progress, leave=False) as bar:
            for j, start, feats in results:
                out[j][start:start + len(feats)] = [torch.from_numpy(f) for f in feats]
                bar.update(len(feats))
    finally:
        _SYNTHS.clear()   # in this process (one-process mode): free the models once the groups are said
    return out


_SYNTHS: dict[tuple[str, int, int | None], object] = {}   # per process: loaded once, used by every chunk


def _speak_chunk(args: tuple) -> tuple[int, int, list[np.ndarray]]:
    """Worker: the features of ``texts``, the utterances ``start``, ``start + 1``, ... of job ``j``."""
    j, start, voice, degradation, texts, s, seed, threads = args
    if threads:
        torch.set_num_threads(threads)    # a worker process of speak_groups: the parallelism is across them
    key = (voice, s["sample_rate"], threads)
    if key not in _SYNTHS:
        _SYNTHS[key] = load_synthesizer(voice, s["sample_rate"], threads=threads)
    synth = _SYNTHS[key]
    feats = []
    for i, text in enumerate(texts, start):
        key_i = f"listening-{i}"
        wave = synth.synthesize(normalise_caption(text, s["max_caption_chars"]), sample_params(voice, seed, key_i))
        if degradation:
            wave = degrade(wave, s["sample_rate"], degradation, seed, key_i)
        feats.append(log_mel(wave, s["sample_rate"], s["n_mels"], s["win_ms"], s["hop_ms"]).numpy())
    return j, start, feats
