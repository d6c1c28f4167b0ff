"""Acoustic augmentation of training speech: the same caption, as if said faster or slower, in a
room, in noise, or over a telephone line.

A share of the training utterances (``speech.augment_share``) gets one augmented copy, planned with
the rest (``synthesis.plan_utterances``: the copy reuses the clean WAV and records its augmentation
in the manifest) and computed into the feature store next to the clean one
(``features.build_feature_store``). Cached copies, not augmentation on the fly: the SEN trains on
cached log-mel features (~5 ms per utterance in bf16 on 2 cores), and reading, augmenting and
featurising each WAV again in every epoch would cost more than the training itself; a cached copy is
computed once, in the speech step, by its worker processes.

Each copy draws a chain from its utterance id (reproducible, recorded in the manifest):

- **speed** (p 0.5): resampled by a factor 0.9 or 1.1, tempo and pitch together, the speed
  perturbation of Ko et al. (2015);
- **reverberation** (p 0.4): a synthetic room, RT60 in [0.2, 0.8] s
  (``acoustics.reverberate``);
- **noise** (p 0.5): white noise at an SNR in [5, 30] dB;
- **telephone band** (p 0.25): 8 kHz, 300-3400 Hz, mu-law (``acoustics.telephone``);
- **gain** (p 0.3): -18 to +6 dB, clipped at full scale. The features are normalised per
  utterance and mel bin (CMVN), but a gain still reaches the encoder: the log's floor (1e-6) meets
  the quiet frames at another level, and loud speech clips;

at least one of them.

Everything is torchaudio's functional ops (``resample``, ``add_noise``, ``fftconvolve``, the biquads,
mu-law; the room, noise and telephone line of ``acoustics.py``, shared with the listening tests'
degradations). torch-audiomentations has noise, band filters and gain, but not the synthetic room
(its reverberation needs recorded impulse-response files) nor a length-changing speed perturbation:
a dependency for three of the five.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

SPEEDS = (0.9, 1.1)   # Kaldi's factors; 9/10 and 11/10 keep the resampling kernel short
RT60_RANGE_S = (0.2, 0.8)
SNR_RANGE_DB = (5.0, 30.0)
GAIN_RANGE_DB = (-18.0, 6.0)
PROBABILITIES = {"speed": 0.5, "reverb": 0.4, "noise": 0.5, "telephone": 0.25, "gain": 0.3}


def _rng(seed: int, utterance_id: str, what: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{what}:{utterance_id}".encode())])


def wants_copy(share: float, seed: int, utterance_id: str) -> bool:
    """Whether this training utterance gets an augmented copy (a ``share`` of them, reproducibly)."""
    return share > 0 and _rng(seed, utterance_id, "copy").random() < share


def sample_augmentation(seed: int, utterance_id: str) -> dict:
    """The chain of one augmented copy: a dict of the steps drawn, with their parameters."""
    rng = _rng(seed, utterance_id, "chain")
    on = {k: rng.random() < p for k, p in PROBABILITIES.items()}
    if not any(on.values()):
        on[list(PROBABILITIES)[int(rng.integers(len(PROBABILITIES)))]] = True
    chain: dict = {}
    if on["speed"]:
        chain["speed"] = float(SPEEDS[int(rng.integers(len(SPEEDS)))])
    if on["reverb"]:
        chain["reverb_rt60_s"] = round(float(rng.uniform(*RT60_RANGE_S)), 3)
    if on["noise"]:
        chain["noise_snr_db"] = round(float(rng.uniform(*SNR_RANGE_DB)), 2)
    if on["telephone"]:
        chain["telephone"] = True
    if on["gain"]:
        chain["gain_db"] = round(float(rng.uniform(*GAIN_RANGE_DB)), 2)
    chain["seed"] = int(rng.integers(2**31))
    return chain


def _speed_rates(sample_rate: int, speed: float) -> tuple[int, int]:
    """Resampling from ``round(rate * speed)`` to ``rate`` plays the audio ``speed`` times faster
    (both rates divided by their gcd, as torchaudio does)."""
    return int(round(sample_rate * speed)), sample_rate


def output_samples(n: int, sample_rate: int, chain: dict) -> int:
    """How many samples ``apply`` returns for ``n`` input samples (what the feature store allocates)."""
    if "speed" not in chain:
        return n
    orig, new = _speed_rates(sample_rate, chain["speed"])
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    return int(math.ceil(new * n / orig))


def apply(wave, sample_rate: int, chain: dict) -> np.ndarray:
    """``wave`` (float32 mono, array or tensor) through ``chain`` (from ``sample_augmentation``)."""
    # torchaudio here, not at the top (acoustics imports it too): the planning functions above run in
    # the synthesis workers, which never need it
    import torch
    import torchaudio.functional as AF

    from .acoustics import add_white_noise, reverberate, telephone
    x = torch.as_tensor(np.ascontiguousarray(wave, dtype=np.float32))
    seed = int(chain.get("seed", 0))
    if "speed" in chain:
        x = AF.resample(x, *_speed_rates(sample_rate, chain["speed"]))
    if "reverb_rt60_s" in chain:
        x = reverberate(x, sample_rate, chain["reverb_rt60_s"], seed)
    if "noise_snr_db" in chain:
        x = add_white_noise(x, chain["noise_snr_db"], torch.Generator().manual_seed(seed))
    if chain.get("telephone"):
        x = telephone(x, sample_rate)
    if "gain_db" in chain:
        x = x * 10 ** (float(chain["gain_db"]) / 20)
    return x.clamp(-1, 1).numpy().astype(np.float32)
