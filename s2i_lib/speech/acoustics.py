"""A room, white noise and a telephone line, on torchaudio's functional ops (``add_noise``,
``fftconvolve``, ``resample``, the biquad filters, mu-law): what the listening tests degrade test
speech with (``listening.degrade``) and the training augmentation draws from (``augment.apply``).

The room's impulse response is written here: exponentially decaying noise (Schroeder's statistical
model of a diffuse late reverberation) after a direct-path impulse. A room simulator
(pyroomacoustics) would add early reflections, but not what the tests need: a long, smearing tail at
a known reverberation time.
"""
from __future__ import annotations

import zlib

import torch
import torchaudio.functional as AF

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
