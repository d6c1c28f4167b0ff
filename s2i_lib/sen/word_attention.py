"""What the speech encoder listens to: its attention over time, against the words said.

The SEN pools its GRU frames with feature-wise attention (``speech_encoder.AttentionPooling``):
every feature dimension has its own weights over time. Averaged over the dimensions they give one
curve per utterance that sums to 1, the share of the embedding each moment contributes; the frame
where each dimension's weights peak says where that dimension looks hardest. eSpeak NG
says when each word starts (its word events; ``tts.SpokenWord``), so the curve can be cut at the
words and summed: how much of the embedding comes from "yellow", from "belly", from "the".

Two cautions, said again in notebook 02. The GRU is bidirectional, so the frame under "yellow" has
heard the whole sentence: attention there is a statement about where the pooling *reads*, not about
what that frame alone contains. And an output frame sees 16 input frames (150 ms), so a short word's
edges blur into its neighbours.

    rows = listen(encoder, cfg.speech, cfg.data.dataset, captions, voice="espeak:en-us")  # a row per word
    shares_by_kind(rows)                                            # attention vs duration per kind
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.captions import word_kind
from ..progress import tqdm
from ..speech.features import log_mel
from ..speech.tts import ESpeakSynthesizer, SpokenWord, parse_voice, sample_params
from ..step_configs import SpeechConfig
from .speech_encoder import MIN_FRAMES, SpeechEncoder, frame_centres_s

PAUSE = "(pause)"
KINDS = ("colour", "part", "size or shape", "count", "other", PAUSE)
ATTRIBUTE_KINDS = KINDS[:4]


def mass_per_word(weights: np.ndarray, centres_s: np.ndarray, words: Sequence[SpokenWord]) -> tuple[np.ndarray, float]:
    """Attention mass of each word (the weights of the frames centred inside it) and of the rest
    (pauses, the silence before and after)."""
    weights = np.asarray(weights, dtype=np.float64)
    mass = np.zeros(len(words))
    taken = np.zeros(len(weights), dtype=bool)
    for i, w in enumerate(words):
        inside = (centres_s >= w.start_s) & (centres_s < w.end_s) & ~taken
        mass[i] = weights[inside].sum()
        taken |= inside
    return mass, float(weights[~taken].sum())


@dataclass
class Listening:
    """One utterance as the encoder hears it."""
    text: str
    wave: np.ndarray            # at the speech step's sample rate
    features: np.ndarray        # (T, n_mels) log-mel
    words: list[SpokenWord]
    centres_s: np.ndarray       # (T2,) centre of each output frame
    weights: np.ndarray         # (T2,) attention averaged over the feature dimensions, sums to 1
    peaks: np.ndarray           # (T2,) share of the feature dimensions whose weights peak there


@torch.no_grad()
def listen_one(encoder: SpeechEncoder, speech: SpeechConfig, text: str, voice: str = "espeak:en-us",
               utterance_id: str = "listen-0", seed: int = 0) -> Listening | None:
    """Speak ``text`` with an eSpeak ``voice`` (rate and pitch drawn as the speech step does) and
    run the encoder on it, with the speech step's features (``speech``: sample rate, log-mel
    settings); None if eSpeak said no word or the utterance is too short to encode."""
    if parse_voice(voice)[0] != "espeak":
        raise ValueError(f"voice {voice!r}: word timings come from eSpeak NG's word events; "
                         f"use an espeak voice, e.g. espeak:en-us")
    s = speech
    wave, words = ESpeakSynthesizer(voice, s.sample_rate).synthesize_with_words(
        text, sample_params(voice, seed, utterance_id))
    feats = log_mel(wave, s.sample_rate, s.n_mels, s.win_ms, s.hop_ms)
    if len(feats) < MIN_FRAMES or not words:
        return None
    encoder.eval()
    device = next(encoder.parameters()).device
    alpha = encoder.attention_weights(feats.unsqueeze(0).to(device), [len(feats)])[0].float().cpu().numpy()
    peaks = np.bincount(alpha.argmax(axis=0), minlength=len(alpha)) / alpha.shape[1]
    return Listening(text, wave, feats.numpy(), words, frame_centres_s(len(alpha), s.hop_ms / 1000),
                     alpha.mean(axis=1), peaks)


def listen(encoder: SpeechEncoder, speech: SpeechConfig, dataset: str, captions: Sequence[str],
           voice: str = "espeak:en-us", seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """``listen_one`` on every caption: one row per word (and one per utterance for its pauses):
    caption index, word, kind (in ``dataset``'s vocabulary), start and end (s), and the word's
    share of the utterance's duration, of its attention and of the feature dimensions whose weights
    peak in it."""
    rows = []
    for i, text in enumerate(tqdm(captions, desc=f"listening ({voice})", disable=not progress, leave=False)):
        heard = listen_one(encoder, speech, text, voice, f"listen-{i}", seed)
        if heard is None:
            continue
        mass, pause_mass = mass_per_word(heard.weights, heard.centres_s, heard.words)
        peak, pause_peak = mass_per_word(heard.peaks, heard.centres_s, heard.words)
        total_s = len(heard.wave) / speech.sample_rate
        said = sum(w.end_s - w.start_s for w in heard.words)
        for w, m, p in zip(heard.words, mass, peak):
            rows.append({"caption": i, "word": w.word, "kind": word_kind(w.word, dataset),
                         "start_s": w.start_s, "end_s": w.end_s, "duration_share": (w.end_s - w.start_s) / total_s,
                         "attention_share": float(m), "peak_share": float(p)})
        rows.append({"caption": i, "word": PAUSE, "kind": PAUSE, "start_s": np.nan, "end_s": np.nan,
                     "duration_share": max(0.0, total_s - said) / total_s, "attention_share": pause_mass,
                     "peak_share": pause_peak})
    return pd.DataFrame(rows)


def shares_by_kind(rows: pd.DataFrame) -> pd.DataFrame:
    """Per kind of word: its mean share of an utterance's duration and of its attention, and their
    ratio (above 1: the encoder reads these words more than their length alone would give)."""
    # an utterance without a kind of word counts as 0 of it
    values = ["duration_share", "attention_share", "peak_share"]
    per_utt = rows.pivot_table(index="caption", columns="kind", values=values, aggfunc="sum", fill_value=0.0)
    table = per_utt.mean().unstack(0)[values]
    table = table.reindex([k for k in KINDS if k in table.index])
    table.insert(2, "attention / duration", table["attention_share"] / table["duration_share"])
    table.columns = ["share of duration", "share of attention", "attention / duration",
                     "share of dimensions peaking here"]
    table.index.name = f"words ({rows['caption'].nunique()} utterances)"
    return table


def attribute_word_share(rows: pd.DataFrame) -> dict[str, float]:
    """The attribute words' (colour, part, size or shape, count) share of an utterance's duration, of its
    attention mass and of the feature dimensions peaking in them, averaged over utterances."""
    attr = rows[rows["kind"].isin(ATTRIBUTE_KINDS)]
    per_utt = attr.groupby("caption")[["duration_share", "attention_share", "peak_share"]].sum()
    per_utt = per_utt.reindex(sorted(rows["caption"].unique()), fill_value=0.0)
    return {"utterances": int(len(per_utt)),
            "duration_share": float(per_utt["duration_share"].mean()),
            "attention_share": float(per_utt["attention_share"].mean()),
            "peak_share": float(per_utt["peak_share"].mean())}
