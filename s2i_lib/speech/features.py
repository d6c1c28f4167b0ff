"""S2IGAN's audio front end (docs/paper_notes.md §1.1), its storage for fast training, and batching.

Front end, as the official ``Audio_to_mel.py`` computes it with librosa, here with torchaudio's
filterbank (see ``LogMel``):
22 050 Hz mono (anything else is resampled, stereo is averaged); a 25 ms Hann window (periodic) with
``n_fft = win = 551`` and a 10 ms hop of 220 samples, ``center=True`` with reflect padding; power
spectrum; 40 Slaney-style mel filters (Slaney scale and area normalisation, 0 to 11 025 Hz); natural
``log(mel + 1e-6)``; then per-utterance mean and variance normalisation of each mel bin over time
(``(x - mean) / (std + 1e-16)``, std with ddof 0). The result is ``(T, 40)`` float32 with
``T = 1 + (len + 2 * (551 // 2) - 551) // 220 = 1 + (len - 1) // 220`` frames (about 100 per second).
This is the often-quoted ``1 + len // 220`` except when ``len`` is a multiple of 220: the odd
``n_fft`` pads 275 samples on each side, one short of a full window (librosa counts the same way).

Storage (inside the speech step folder)::

    features/<split>.npy           all utterances of the split, concatenated: (sum of T, 40) float32
    features/<split>.offsets.npy   (n + 1,) int64: utterance i is rows offsets[i]:offsets[i+1]
    features/<split>.index.json    ids, image keys, caption indices, voices, held-out flags, in the
                                   same order (written last: its presence means the split is complete)

``FeatureStore`` memory-maps one split; ``pad_collate`` makes a batch.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..artifacts import atomic_path, atomic_write_json, load_array, read_json, stable_hash
from ..device import cpu_count
from ..progress import tqdm
from . import augment
from .synthesis import imap_unordered, wav_truncation
from .tts import to_sample_rate

FEATURES_DIR = "features"
LOG_FLOOR = 1e-6    # log(mel + 1e-6), as the original
CMVN_EPS = 1e-16    # (x - mean) / (std + 1e-16), as the original
MAX_SAMPLE_PEAK = 16.0   # read_audio refuses float samples beyond this (24 dB above full scale)


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------------- front end
def frame_params(sample_rate: int = 22050, win_ms: float = 25.0, hop_ms: float = 10.0) -> tuple[int, int]:
    """(n_fft = window length, hop) in samples, truncated as the original does: (551, 220)."""
    return int(sample_rate * win_ms / 1000), int(sample_rate * hop_ms / 1000)


def num_frames(num_samples: int, n_fft: int = 551, hop: int = 220) -> int:
    """Frames of a centred STFT (reflect padding of n_fft // 2 on each side)."""
    return 1 + (num_samples + 2 * (n_fft // 2) - n_fft) // hop


class LogMel(torch.nn.Module):
    """Waveform (N,) at ``sample_rate`` -> CMVN-normalised log-mel features (T, n_mels).

    The same numbers as ``torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=551, win_length=551,
    hop_length=220, f_min=0, f_max=sr/2, n_mels=40, window_fn=torch.hann_window, power=2,
    center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney")`` (the filterbank *is*
    torchaudio's), computed faster: on CPU, torch's FFT of the odd size 551 = 19 x 29 is four times
    slower than pocketfft's, so the frames go through ``scipy.fft.rfft``. The tests compare this with
    that transform and with a direct numpy computation.
    """

    def __init__(self, sample_rate: int = 22050, n_mels: int = 40, win_ms: float = 25.0,
                 hop_ms: float = 10.0, cmvn: bool = True):
        super().__init__()
        import torchaudio
        n_fft, hop = frame_params(sample_rate, win_ms, hop_ms)
        self.sample_rate, self.n_fft, self.hop, self.n_mels, self.cmvn = sample_rate, n_fft, hop, n_mels, cmvn
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        self.register_buffer("filterbank", torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1, f_min=0.0, f_max=sample_rate / 2, n_mels=n_mels,
            sample_rate=sample_rate, norm="slaney", mel_scale="slaney"), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.n_fft, self.hop)

    @torch.no_grad()
    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram (T, n_mels), before the log."""
        import scipy.fft
        if wave.dim() != 1:
            raise ValueError(f"expected a mono waveform of shape (N,), got {tuple(wave.shape)}")
        pad = self.n_fft // 2
        if wave.numel() <= pad:
            raise ValueError(f"waveform of {wave.numel()} samples is too short for reflect padding "
                             f"(needs more than {pad})")
        padded = torch.nn.functional.pad(wave.float()[None, None], (pad, pad), mode="reflect")[0, 0]
        frames = padded.unfold(0, self.n_fft, self.hop) * self.window        # (T, n_fft)
        spec = scipy.fft.rfft(frames.numpy(), axis=1)                          # complex64
        power = torch.from_numpy(spec.real ** 2 + spec.imag ** 2)             # (T, n_fft // 2 + 1)
        return power @ self.filterbank

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = torch.log(self.power_mel(wave) + LOG_FLOOR)
        if self.cmvn:
            x = (x - x.mean(dim=0)) / (x.std(dim=0, correction=0) + CMVN_EPS)
        return x.contiguous()


_LOGMELS: dict[tuple, LogMel] = {}


def log_mel(wave: torch.Tensor | np.ndarray, sample_rate: int = 22050, n_mels: int = 40,
            win_ms: float = 25.0, hop_ms: float = 10.0, cmvn: bool = True) -> torch.Tensor:
    """S2IGAN features of one waveform at ``sample_rate``: (T, n_mels) float32."""
    key = (sample_rate, n_mels, win_ms, hop_ms, cmvn)
    if key not in _LOGMELS:
        _LOGMELS[key] = LogMel(*key)
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return _LOGMELS[key](wave)


# ---------------------------------------------------------------------------------- audio input
def read_audio(path: str | os.PathLike, sample_rate: int = 22050, max_seconds: float = 60.0,
               silence_rms: float = 1e-4) -> torch.Tensor:
    """A WAV/FLAC/OGG/MP3 file as float32 mono at ``sample_rate``, shape (N,).

    Stereo is averaged, other rates are resampled. A file that is missing, unreadable, empty, not
    audio, corrupt, with samples far outside [-1, 1] (above ``MAX_SAMPLE_PEAK``), silent (RMS below
    ``silence_rms``) or longer than ``max_seconds`` is an AudioError
    naming the file and the problem; the length is checked before the samples are read, so an
    hours-long recording is refused without loading it.
    """
    import soundfile as sf
    path = Path(path)
    try:
        if not path.exists():
            raise FileNotFoundError(f"audio file {path} does not exist")
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file {path} is empty (0 bytes)")
        truncated = wav_truncation(path)   # the first read of the file: where the OS may refuse it
    except FileNotFoundError:
        raise
    except OSError as e:   # PermissionError (not readable, or a folder above it), EIO, ...
        raise AudioError(f"audio file {path} cannot be read: {e.strerror or e}") from e
    if truncated:
        raise AudioError(f"audio file {path} is corrupt: {truncated}")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError by format
        raise AudioError(f"{path} is not a readable audio file (WAV, FLAC, OGG or MP3 expected): {e}") from e
    with f:
        if f.frames <= 0 or f.samplerate <= 0:
            raise AudioError(f"audio file {path} contains no samples")
        seconds = f.frames / f.samplerate
        if seconds > max_seconds:
            raise AudioError(f"audio file {path} is {seconds:.1f} s long ({seconds / 3600:.2f} h); "
                             f"the limit is {max_seconds} s (speech.max_audio_seconds). Cut it into "
                             f"utterances first.")
        rate = f.samplerate
        try:
            audio = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"audio file {path} is corrupt: {e}") from e
    if audio.shape[0] == 0:
        raise AudioError(f"audio file {path} contains no samples (corrupt or truncated)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples (corrupt)")
    # Integer formats decode into [-1, 1]; float formats store any value. A little above 1 is a
    # clipped-then-normalised recording, but samples near 3e38 overflow the power spectrum into
    # NaN features (an all-black image, silently): refuse what no recording level explains.
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_SAMPLE_PEAK:
        raise AudioError(f"audio file {path} has samples up to {peak:.3g}, far outside [-1, 1] "
                         f"(a float WAV written without scaling?); the limit is {MAX_SAMPLE_PEAK:g}")
    mono = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    if silence_rms > 0:
        rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
        if rms < silence_rms:
            raise AudioError(f"audio file {path} is silent (RMS {rms:.1e} < {silence_rms}); "
                             f"check the recording level")
    return torch.from_numpy(to_sample_rate(mono, rate, sample_rate))


# ---------------------------------------------------------------------------- batch extraction
def _feature_chunk(args: tuple) -> tuple[int, int, float]:
    """Worker: compute the features of some WAVs and write them into the splits' memory maps."""
    settings, tasks = args
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the parallelism is across processes
    c0 = time.process_time()
    try:
        return (*_compute_and_store(settings, tasks), time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)


def _compute_and_store(settings: dict, tasks: list) -> tuple[int, int]:
    maps: dict[str, np.memmap] = {}
    frames = 0
    for wav, target, starts, expected, chain in tasks:
        if target not in maps:
            maps[target] = load_array(target, mmap_mode="r+")
        try:
            wave = read_audio(wav, settings["sample_rate"], settings["max_audio_seconds"],
                              silence_rms=0.0)
            if chain is not None:
                wave = torch.from_numpy(augment.apply(wave, settings["sample_rate"], chain))
            feats = log_mel(wave, settings["sample_rate"], settings["n_mels"], settings["win_ms"],
                            settings["hop_ms"]).numpy()
        except (AudioError, ValueError, FileNotFoundError) as e:
            raise AudioError(f"cannot compute features of {wav}: {e}. The speech step folder is "
                             f"damaged; delete it to rebuild.") from e
        if feats.shape[0] != expected:
            raise AudioError(f"{wav}: {feats.shape[0]} frames, the manifest implies {expected}; "
                             f"the speech step folder is damaged; delete it to rebuild")
        for s in starts:
            maps[target][s:s + expected] = feats
        frames += expected * len(starts)
    for m in maps.values():
        m.flush()
    return sum(len(t[2]) for t in tasks), frames


def _split_signature(rows: Sequence[dict], settings: dict) -> str:
    return stable_hash({"rows": [(r["id"], r["path"], r["samples"]) + ((r["augment"],) if r.get("augment") else ())
                                 for r in rows], "settings": settings})


def build_feature_store(step_dir: str | Path, manifest: Sequence[dict], speech_cfg: Any,
                        workers: int | None = None, progress: bool = True,
                        min_parallel: int = 1500) -> dict:
    """Compute the features of every manifest row into ``features/<split>.*``; return figures.

    A split whose index already matches the manifest is kept (resume); otherwise it is rebuilt into
    temporary files that are renamed into place when complete. Below ``min_parallel`` utterances
    the work stays in this process: starting worker processes (each imports torch) would cost
    more than it saves.
    """
    step_dir = Path(step_dir)
    out = step_dir / FEATURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob(".*.tmp*"):
        stray.unlink(missing_ok=True)
    settings = {"sample_rate": speech_cfg.sample_rate, "n_mels": speech_cfg.n_mels,
                "win_ms": speech_cfg.win_ms, "hop_ms": speech_cfg.hop_ms,
                "max_audio_seconds": speech_cfg.max_audio_seconds}
    n_fft, hop = frame_params(speech_cfg.sample_rate, speech_cfg.win_ms, speech_cfg.hop_ms)
    workers = min(int(workers or speech_cfg.workers), cpu_count())   # more processes than cores only thrash

    by_split: dict[str, list[dict]] = defaultdict(list)
    for r in manifest:
        by_split[r["split"]].append(r)

    t0 = time.perf_counter()
    pending = []  # (split, rows, offsets, signature)
    figures: dict[str, Any] = {"feature_utterances": 0, "frames": 0, "feature_cpu_s": 0.0,
                               "feature_splits_reused": []}
    for split in sorted(by_split):
        rows = by_split[split]
        sig = _split_signature(rows, settings)
        index_path = out / f"{split}.index.json"
        if index_path.exists():
            try:
                if read_json(index_path).get("signature") == sig:
                    figures["feature_splits_reused"].append(split)
                    continue
            except ValueError:
                pass
            index_path.unlink()
        lengths = np.array([num_frames(r["samples"], n_fft, hop) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pending.append((split, rows, offsets, sig))

    with _AtomicGroup() as group:
        tasks = []
        for split, rows, offsets, sig in pending:
            tmp = group.add(out / f"{split}.npy")
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(int(offsets[-1]), speech_cfg.n_mels))
            del arr
            # one computation per unique WAV and augmentation (augment.py; None: the WAV as it is)
            starts: dict[tuple[str, str], list[int]] = defaultdict(list)
            expected: dict[tuple[str, str], int] = {}
            for i, r in enumerate(rows):
                k = (r["path"], json.dumps(r.get("augment"), sort_keys=True))
                starts[k].append(int(offsets[i]))
                expected[k] = int(offsets[i + 1] - offsets[i])
            tasks += [(str(step_dir / p), str(tmp), s, expected[(p, a)], json.loads(a))
                      for (p, a), s in starts.items()]
        n_utts = sum(len(t[2]) for t in tasks)
        size = max(1, min(64, -(-len(tasks) // (4 * workers))))  # several chunks per worker
        chunks = [(settings, tasks[i:i + size]) for i in range(0, len(tasks), size)]
        bar = tqdm(total=n_utts, unit="utt", desc="features", disable=not progress or not tasks,
                   smoothing=0.05, file=sys.stderr)
        n_workers = max(1, min(workers, len(chunks)))
        if n_workers == 1 or n_utts < min_parallel:
            results: Any = (_feature_chunk(c) for c in chunks)
        else:
            results = imap_unordered(_feature_chunk, chunks, n_workers)
        for n, f, cpu in results:
            figures["feature_utterances"] += n
            figures["frames"] += f
            figures["feature_cpu_s"] += cpu
            bar.update(n)
        bar.close()
        for split, rows, offsets, sig in pending:
            with atomic_path(out / f"{split}.offsets.npy") as tmp:
                np.save(tmp, offsets)
        group.commit()
    for split, rows, offsets, sig in pending:  # the index last: it marks the split complete
        atomic_write_json(out / f"{split}.index.json", {
            "split": split, "signature": sig, "n_mels": speech_cfg.n_mels,
            "sample_rate": speech_cfg.sample_rate, "hop": hop, "frames": int(offsets[-1]),
            "ids": [r["id"] for r in rows], "keys": [r["key"] for r in rows],
            "caption_index": [r["caption_index"] for r in rows], "voices": [r["voice"] for r in rows],
            "heldout": [bool(r["heldout"]) for r in rows]})
    wall = time.perf_counter() - t0
    figures["features_time_s"] = round(wall, 3)
    figures["feature_cpu_s"] = round(figures["feature_cpu_s"], 3)
    n = figures["feature_utterances"]
    figures["feature_utt_per_s"] = round(n / wall, 1) if n and wall > 0 else None
    figures["feature_frames_per_s"] = round(figures["frames"] / wall, 1) if n and wall > 0 else None
    figures["frames_total"] = int(sum(num_frames(r["samples"], n_fft, hop) for r in manifest))
    return figures


class _AtomicGroup:
    """Temporary files renamed onto their targets together, by ``commit()``; removed otherwise."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path]] = []

    def add(self, target: Path) -> Path:
        import uuid
        tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
        self._items.append((tmp, target))
        return tmp

    def commit(self) -> None:
        for tmp, target in self._items:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        self._items = []

    def __enter__(self) -> "_AtomicGroup":
        return self

    def __exit__(self, *exc: Any) -> None:
        for tmp, _ in self._items:
            tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------- the dataset
class FeatureStore(torch.utils.data.Dataset):
    """The log-mel features of one split, memory-mapped: ``store[i]`` is a (T, n_mels) tensor.

    ``ids``, ``keys`` (image keys), ``caption_index``, ``voices`` and ``heldout`` (bool array) are
    aligned with the rows; ``lengths`` gives T per row. ``index_of(id)`` / ``by_id(id)`` look an
    utterance up. The memory map is opened lazily in each process, so a DataLoader with worker
    processes does not copy the array.
    """

    def __init__(self, speech_dir: str | Path, split: str):
        self.dir = Path(speech_dir) / FEATURES_DIR
        self.split = split
        index_path = self.dir / f"{split}.index.json"
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} not found: the features of split {split!r} were "
                                    f"not built (run `python -m s2i_lib speech --profile P`)")
        index = read_json(index_path)
        self.ids: list[str] = index["ids"]
        self.keys: list[str] = index["keys"]
        self.voices: list[str] = index["voices"]
        self.caption_index = np.asarray(index["caption_index"], dtype=np.int64)
        self.heldout = np.asarray(index["heldout"], dtype=bool)
        self.n_mels = int(index["n_mels"])
        self.offsets = load_array(self.dir / f"{split}.offsets.npy")
        self.lengths = np.diff(self.offsets)
        if len(self.offsets) != len(self.ids) + 1 or int(self.offsets[-1]) != int(index["frames"]):
            raise ValueError(f"{self.dir}: the offsets of split {split!r} do not match its index; "
                             f"delete the speech step folder to rebuild")
        self._position = {u: i for i, u in enumerate(self.ids)}
        self._data: np.ndarray | None = None

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = load_array(self.dir / f"{self.split}.npy", mmap_mode="r")
            if self._data.shape != (int(self.offsets[-1]), self.n_mels):
                raise ValueError(f"{self.dir / (self.split + '.npy')} has shape {self._data.shape}, "
                                 f"expected {(int(self.offsets[-1]), self.n_mels)}")
        return self._data

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_data"] = None  # re-opened in the receiving process
        return state

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"utterance {i} out of range for split {self.split!r} ({len(self)})")
        i %= len(self)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return torch.from_numpy(np.array(self.data[a:b]))

    def index_of(self, utterance_id: str) -> int:
        try:
            return self._position[utterance_id]
        except KeyError:
            raise KeyError(f"no utterance {utterance_id!r} in split {self.split!r}") from None

    def by_id(self, utterance_id: str) -> torch.Tensor:
        return self[self.index_of(utterance_id)]

    def heldout_indices(self) -> np.ndarray:
        """Rows spoken by a held-out voice (only in the test split)."""
        return np.flatnonzero(self.heldout)

    def training_voice_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.heldout)

    def __repr__(self) -> str:
        return (f"FeatureStore(split={self.split!r}, utterances={len(self)}, "
                f"frames={int(self.offsets[-1])}, heldout={int(self.heldout.sum())})")


def pad_collate(batch: Sequence[Any]) -> tuple:
    """Zero-pad a batch of (T_i, n_mels) tensors to (B, T_max, n_mels); return (padded, lengths).

    The batch order is kept (the original sorted by length, longest first, for
    ``pack_padded_sequence``; sorting is the speech encoder's business: pass
    ``enforce_sorted=False``). ``lengths`` is an int64 tensor of the true T_i. If the items are tuples
    ``(features, *rest)``, the rest are collated by ``default_collate`` and returned after:
    ``(padded, lengths, *rest)``.
    """
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    rest = None
    if isinstance(batch[0], (tuple, list)):
        rest = [list(x[1:]) for x in batch]
        feats = [x[0] for x in batch]
    else:
        feats = list(batch)
    feats = [torch.as_tensor(f) for f in feats]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
    padded = feats[0].new_zeros((len(feats), int(lengths.max()), feats[0].shape[1]))
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    if rest is None:
        return padded, lengths
    from torch.utils.data import default_collate
    return (padded, lengths, *default_collate([tuple(r) for r in rest]))
