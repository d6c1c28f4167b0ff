"""Spoken captions: plan who says what, normalise the text, synthesize in parallel, resumably.

The plan (:func:`plan_utterances`) is a pure function of the dataset, the ``speech`` config and the
seed. For every image, its first ``captions_per_image`` captions are each spoken by
``voices_per_caption`` training voices (drawn with ``voice_weights`` from a hash of
``(seed, image, caption)``); every *test* caption is also spoken by every held-out voice (rows marked
``heldout``). Training images never get a held-out voice, so the held-out voices measure
generalisation to unseen speakers.

Text normalisation (:func:`normalise_caption`), applied before synthesis; what is spoken is recorded
as ``spoken_text`` in the manifest:
1. Unicode NFKC (full-width letters, ligatures, superscripts become plain characters);
2. control and format characters (tabs, newlines, zero-width, ...) become spaces;
3. typography to ASCII (curly quotes, dashes, ellipsis), letters lose their accents (``é`` -> ``e``,
   ``ß`` -> ``ss``), ``&`` -> "and", ``%`` -> "percent";
4. numbers become English words (``12`` -> "twelve", ``3.5`` -> "three point five", ``2nd`` -> "second");
5. anything else a voice cannot say (emoji, CJK, other symbols) is dropped; whitespace is collapsed.

A caption is refused, with a reason, when it is ``empty`` (nothing but whitespace), ``too_long``
(more than ``max_caption_chars`` characters after normalisation) or ``unspeakable`` (no letters
left, or more than half of its characters had to be dropped). Every synthesized waveform is checked
too: ``invalid_output`` (NaN/inf), ``empty_output``, ``too_short_output`` / ``too_long_output``
(outside ``min_speech_seconds`` .. ``max_audio_seconds``) and ``silent_output`` (RMS below
``silence_rms``, or less than ``min_speech_seconds`` of 25 ms frames above it). A refused utterance
goes to ``errors.jsonl``, never into the manifest, and never stops the batch.

On disk (inside the step folder)::

    wavs/ab/abcdef0123456789abcd.wav   16-bit PCM mono WAV; the name is a hash of
                                       (spoken text, voice, parameters, sample rate): the cache key
    manifest.jsonl                     one row per spoken utterance (written last, atomically)
    errors.jsonl                       one row per refused utterance

Crash safety: every WAV is written to a temporary file and renamed into place, so a WAV that exists
is complete; a re-run (after a crash or a SIGKILL) skips the WAVs that exist, deletes stray temporary
files and writes the manifest from the plan, so each utterance appears exactly once.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..artifacts import atomic_path, stable_hash
from ..data.layout import ImageRecord, write_captions, write_image, write_index
from ..device import cpu_count
from ..progress import tqdm
from ..voices import backend_of
from . import augment, tts

MANIFEST_FILE = "manifest.jsonl"
ERRORS_FILE = "errors.jsonl"
WAV_DIR = "wavs"

# how many jobs one worker task holds: about half a second of work for each backend
_CHUNK = {"espeak": 48, "piper": 2, "tacotron2": 1}
_SPEED_RANK = {"tacotron2": 0, "piper": 1, "espeak": 2}  # slow chunks first: a short tail at the end


class CaptionError(ValueError):
    """A caption that cannot be spoken; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# -------------------------------------------------------------------------------- normalisation
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_ASCII_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": " - ", "\u2015": " - ",
    "\u2026": "...", "\u00b7": " ", "\u2022": " ",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "Ae", "\u0153": "oe", "\u0152": "Oe", "\u00f8": "o",
    "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u00fe": "th",
    "\u00de": "Th", "\u00f0": "d", "\u00d0": "D", "\u0131": "i",
    "&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "#": " number ", "=": " equals ",
}
_KEEP = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()-/")


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10**9 (longer numbers are read digit by digit by the caller)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_to_words(rest))
    for size, word in ((10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            tail = "" if rest == 0 else (" and " if rest < 100 else " ") + number_to_words(rest)
            return number_to_words(n // size) + " " + word + tail
    raise ValueError(n)


def _ordinal(words: str) -> str:
    head, sep, last = words.rpartition(" ") if " " in words else ("", "", words)
    pre, dash, unit = last.rpartition("-")
    if unit in _ORDINAL:
        unit = _ORDINAL[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit = unit + "th"
    return head + sep + pre + dash + unit


def _spell_number(match: re.Match) -> str:
    whole, frac, suffix = match.group(1), match.group(2), match.group(3)
    digits = whole.replace(",", "")
    if len(digits) > 9:
        words = " ".join(_ONES[int(d)] for d in digits)
    else:
        words = number_to_words(int(digits))
    if suffix:
        words = _ordinal(words)
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return f" {words} "


_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?\b", re.IGNORECASE)


def normalise_caption(text: str, max_chars: int = 300) -> str:
    """The text a voice is given for ``text``, or a CaptionError (see the module docstring)."""
    if text is None or not str(text).strip():
        raise CaptionError("empty", "the caption is empty (or only whitespace)")
    s = unicodedata.normalize("NFKC", str(text))
    s = "".join(" " if unicodedata.category(c).startswith("C") else c for c in s)
    s = "".join(_ASCII_MAP.get(c, c) for c in s)
    # accents: decompose and drop the combining marks
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    counted = [c for c in s if not c.isspace()]
    dropped = sum(1 for c in counted if c not in _KEEP)
    s = "".join(c if c in _KEEP else " " for c in s)
    s = _NUMBER.sub(_spell_number, s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([.,;:!?])", r"\1", s)
    if not any(c.isalpha() for c in s):
        raise CaptionError("unspeakable", f"nothing speakable is left of the caption {text!r}")
    if counted and dropped * 2 > len(counted):
        raise CaptionError("unspeakable", f"{dropped} of the {len(counted)} characters of the caption "
                                          f"{text!r} cannot be spoken (emoji, CJK, symbols)")
    if len(s) > max_chars:
        raise CaptionError("too_long", f"the caption has {len(s)} characters after normalisation; the "
                                       f"limit is {max_chars} (speech.max_caption_chars)")
    return s


# ----------------------------------------------------------------------------------------- plan
@dataclass
class Utterance:
    id: str                     # "<image key>#<caption index>@<voice>"
    key: str
    split: str
    caption_index: int
    text: str                   # the caption as written in the dataset
    voice: str
    heldout: bool
    params: dict
    spoken_text: str | None = None   # after normalise_caption; None if refused
    path: str | None = None          # WAV, relative to the step folder; None if refused
    error: tuple[str, str] | None = None  # (reason, message) if refused
    augment: dict | None = None      # set on an augmented copy (id "<original id>~aug"): its chain (augment.py)


def wav_relpath(spoken_text: str, voice: str, params: dict, sample_rate: int) -> str:
    """The content-addressed WAV path: the same text, voice, parameters and rate share one file."""
    h = stable_hash({"text": spoken_text, "voice": voice, "params": params, "sr": int(sample_rate)},
                    length=20)
    return f"{WAV_DIR}/{h[:2]}/{h}.wav"


def _choose_voices(voices: Sequence[str], weights: Sequence[float], k: int, seed: int, key: str,
                   caption_index: int) -> list[str]:
    """k distinct voices, weighted (Efraimidis-Spirakis), reproducible from (seed, image, caption)."""
    h = stable_hash({"seed": seed, "key": key, "caption": caption_index, "what": "voices"})
    rng = np.random.default_rng(int(h, 16))
    u = rng.random(len(voices))
    order = np.argsort(-np.log(u) / np.asarray(weights, dtype=float))  # smallest exp-key wins
    return [voices[i] for i in sorted(order[:k])]


def plan_utterances(records: Iterable[Any], speech_cfg: Any, seed: int) -> list[Utterance]:
    """Every utterance to speak for these image records (``ImageRecord``s), in a fixed order."""
    voices = list(speech_cfg.voices)
    weights = speech_cfg.weights()
    plan: list[Utterance] = []
    for r in records:
        for ci, caption in enumerate(list(r.captions)[: speech_cfg.captions_per_image]):
            chosen = [(v, False) for v in _choose_voices(voices, weights, speech_cfg.voices_per_caption,
                                                         seed, r.key, ci)]
            if r.split == "test":
                chosen += [(v, True) for v in speech_cfg.heldout_voices]
            for voice, heldout in chosen:
                uid = f"{r.key}#{ci}@{voice}"
                u = Utterance(id=uid, key=r.key, split=r.split, caption_index=ci, text=caption,
                              voice=voice, heldout=heldout, params=tts.sample_params(voice, seed, uid))
                try:
                    u.spoken_text = normalise_caption(caption, speech_cfg.max_caption_chars)
                    u.path = wav_relpath(u.spoken_text, voice, u.params, speech_cfg.sample_rate)
                except CaptionError as e:
                    u.error = (e.reason, str(e))
                plan.append(u)
                if r.split == "train" and augment.wants_copy(speech_cfg.augment_share, seed, uid):
                    # the same WAV, augmented when its features are computed
                    plan.append(dataclasses.replace(u, id=f"{uid}~aug", augment=augment.sample_augmentation(seed, uid)))
    return plan


# ------------------------------------------------------------------------------- output checks
@dataclass(frozen=True)
class AudioChecks:
    sample_rate: int = 22050
    silence_rms: float = 1e-3
    min_speech_seconds: float = 0.1
    max_audio_seconds: float = 60.0

    @staticmethod
    def from_config(speech_cfg: Any) -> "AudioChecks":
        return AudioChecks(speech_cfg.sample_rate, speech_cfg.silence_rms,
                           speech_cfg.min_speech_seconds, speech_cfg.max_audio_seconds)


def check_waveform(audio: np.ndarray, checks: AudioChecks) -> tuple[str, str] | None:
    """None if ``audio`` is usable speech, else (reason, message)."""
    n = int(audio.size)
    if n == 0:
        return "empty_output", "the synthesizer returned no audio"
    if not np.all(np.isfinite(audio)):
        return "invalid_output", "the synthesizer returned NaN or infinite samples"
    seconds = n / checks.sample_rate
    if seconds > checks.max_audio_seconds:
        return "too_long_output", (f"the synthesized audio is {seconds:.1f} s long; the limit is "
                                   f"{checks.max_audio_seconds} s (speech.max_audio_seconds)")
    if seconds < checks.min_speech_seconds:
        return "too_short_output", (f"the synthesized audio is only {seconds * 1000:.0f} ms long "
                                    f"(speech.min_speech_seconds = {checks.min_speech_seconds})")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    frame = max(1, int(0.025 * checks.sample_rate))
    usable = (n // frame) * frame
    frames = audio[:usable].reshape(-1, frame) if usable else audio[None, :]
    frame_rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    active = float(np.sum(frame_rms >= checks.silence_rms)) * frame / checks.sample_rate
    if rms < checks.silence_rms or active < checks.min_speech_seconds:
        return "silent_output", (f"the synthesized audio is (near) silent: RMS {rms:.2e}, "
                                 f"{active:.2f} s above the threshold {checks.silence_rms} "
                                 f"(speech.silence_rms)")
    return None


# ---------------------------------------------------------------------------------- the workers
_WORKER_SYNTHS: dict[str, tts.Synthesizer] = {}
_WORKER_THREADS: int | None = None


def _worker_init(threads: int) -> None:
    global _WORKER_THREADS
    _WORKER_THREADS = threads
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _synthesizer(voice: str, sample_rate: int) -> tts.Synthesizer:
    # one synthesizer per voice per process, loaded on first use (eSpeak ones share one engine)
    key = f"{voice}@{sample_rate}"
    if key not in _WORKER_SYNTHS:
        _WORKER_SYNTHS[key] = tts.load_synthesizer(voice, sample_rate=sample_rate, threads=_WORKER_THREADS)
    return _WORKER_SYNTHS[key]


def _run_jobs(out_dir: str, checks: AudioChecks, jobs: list[tuple[str, str, str, dict]]) -> list[dict]:
    """Synthesize and write each (wav path, text, voice, params); return one result per job."""
    import soundfile as sf
    results = []
    for rel, text, voice, params in jobs:
        res: dict[str, Any] = {"path": rel, "voice": voice, "backend": backend_of(voice)}
        # loading a synthesizer can fail only for setup reasons (missing package or weights): that
        # must stop the run with its own message, so it stays outside the per-caption try
        synth = _synthesizer(voice, checks.sample_rate)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            audio = synth.synthesize(text, params)
        except Exception as e:  # noqa: BLE001 - one bad caption must not stop the batch
            res.update(ok=False, reason="synthesis_failed", message=f"{type(e).__name__}: {e}",
                       seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
            results.append(res)
            continue
        # wall and CPU time: on a shared machine the wall time also counts other people's work
        res["seconds"], res["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
        problem = check_waveform(audio, checks)
        if problem is not None:
            res.update(ok=False, reason=problem[0], message=problem[1])
        else:
            with atomic_path(Path(out_dir) / rel) as tmp:
                sf.write(tmp, np.clip(audio, -1.0, 1.0), checks.sample_rate, subtype="PCM_16",
                         format="WAV")
            res.update(ok=True, samples=int(audio.size))
        results.append(res)
    return results


def wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file: a message if its data chunk runs past the end of the file.

    libsndfile quietly reads what is there, so a WAV cut short by a crash would pass as a short
    utterance; the header says how long it should be.
    """
    import struct
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size == 0xFFFFFFFF:  # streamed / RF64-style: length unknown
                    return None
                if chunk_size == 0 and size > pos + 8:
                    return "its header was never finalised (the writer was interrupted)"
                if pos + 8 + chunk_size > size:
                    return (f"truncated: the header declares {chunk_size} bytes of samples, the file "
                            f"holds {size - pos - 8}")
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


# ------------------------------------------------------------------------------------ the batch
@dataclass
class SynthesisResult:
    manifest: list[dict]
    errors: list[dict]
    figures: dict = field(default_factory=dict)


def _clean_temporaries(wav_root: Path) -> int:
    n = 0
    if wav_root.exists():
        for p in wav_root.glob("*/.*.tmp.wav"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def synthesize_plan(plan: Sequence[Utterance], out_dir: str | Path, speech_cfg: Any,
                    workers: int | None = None, progress: bool = True) -> SynthesisResult:
    """Synthesize every planned utterance whose WAV is not there yet; write the manifest."""
    import soundfile as sf

    out_dir = Path(out_dir)
    checks = AudioChecks.from_config(speech_cfg)
    workers = min(int(workers or speech_cfg.workers), cpu_count())   # more processes than cores only thrash
    _clean_temporaries(out_dir / WAV_DIR)

    jobs: dict[str, tuple[str, str, str, dict]] = {}
    for u in plan:
        if u.error is None and u.path not in jobs:
            jobs[u.path] = (u.path, u.spoken_text, u.voice, u.params)

    samples: dict[str, int] = {}
    todo = []
    for rel, job in jobs.items():
        p = out_dir / rel
        if p.exists():
            try:  # complete by construction (atomic rename); a foreign broken file is redone
                info = sf.info(str(p))
                if info.samplerate == checks.sample_rate and info.frames > 0 and not wav_truncation(p):
                    samples[rel] = int(info.frames)
                    continue
            except RuntimeError:
                pass
            p.unlink()
        todo.append(job)
    reused = len(samples)

    by_backend: dict[str, list] = defaultdict(list)
    for job in todo:
        by_backend[backend_of(job[2])].append(job)
    chunks = []
    for backend in sorted(by_backend, key=lambda b: _SPEED_RANK.get(b, 0)):
        js, size = by_backend[backend], _CHUNK.get(backend, 8)
        chunks += [js[i:i + size] for i in range(0, len(js), size)]

    failed: dict[str, tuple[str, str]] = {}
    stats = defaultdict(lambda: {"wavs": 0, "synth_seconds": 0.0, "cpu_seconds": 0.0, "audio_seconds": 0.0})
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="utt", desc="synthesis", disable=not progress or not todo,
               smoothing=0.05, file=sys.stderr)

    def collect(results: list[dict]) -> None:
        for r in results:
            s = stats[r["backend"]]
            s["synth_seconds"] += r["seconds"]
            s["cpu_seconds"] += r["cpu_seconds"]
            if r["ok"]:
                samples[r["path"]] = r["samples"]
                s["wavs"] += 1
                s["audio_seconds"] += r["samples"] / checks.sample_rate
            else:
                failed[r["path"]] = (r["reason"], r["message"])
        bar.update(len(results))

    n_workers = max(1, min(workers, len(chunks)))
    if n_workers == 1:
        global _WORKER_THREADS
        _WORKER_THREADS = tts.default_threads(1)
        for chunk in chunks:
            collect(_run_jobs(str(out_dir), checks, chunk))
    else:
        args = [(str(out_dir), checks, c) for c in chunks]
        for results in imap_unordered(_run_jobs_star, args, n_workers, initializer=_worker_init,
                                      initargs=(tts.default_threads(n_workers),)):
            collect(results)
    bar.close()
    wall = time.perf_counter() - t0

    manifest, errors = [], []
    for u in plan:
        if u.error is None and u.path in samples:
            n = samples[u.path]
            row = {"id": u.id, "key": u.key, "split": u.split,
                   "caption_index": u.caption_index, "text": u.text,
                   "spoken_text": u.spoken_text, "voice": u.voice,
                   "backend": backend_of(u.voice), "heldout": u.heldout,
                   "params": u.params, "samples": n, "path": u.path}
            if u.augment is not None:   # the features' length: after the augmentation
                row.update(augment=u.augment, samples=augment.output_samples(n, checks.sample_rate, u.augment))
            row["duration"] = round(row["samples"] / checks.sample_rate, 4)
            manifest.append(row)
        else:
            reason, message = u.error if u.error is not None else failed[u.path]
            errors.append({"id": u.id, "key": u.key, "split": u.split,
                           "caption_index": u.caption_index, "text": u.text, "voice": u.voice,
                           "heldout": u.heldout, "reason": reason, "message": message})
    write_jsonl(out_dir / ERRORS_FILE, errors)
    write_jsonl(out_dir / MANIFEST_FILE, manifest)  # last: its presence means synthesis finished

    n_new = sum(s["wavs"] for s in stats.values())
    figures = {
        "planned": len(plan),
        "unique_wavs": len(jobs),
        "wavs_synthesized": n_new,
        "wavs_reused": reused,
        "synthesis_time_s": round(wall, 3),
        "synthesis_utt_per_s": round(len(todo) / wall, 2) if todo and wall > 0 else None,
        "per_backend": {b: {"wavs": s["wavs"],
                            "audio_seconds": round(s["audio_seconds"], 2),
                            # worker seconds per second of audio (each worker on its own core)
                            "real_time_factor": (round(s["synth_seconds"] / s["audio_seconds"], 4)
                                                 if s["audio_seconds"] else None),
                            "utt_per_s_per_worker": (round(s["wavs"] / s["synth_seconds"], 2)
                                                     if s["synth_seconds"] else None),
                            # the same from CPU time: what one free core does
                            "cpu_real_time_factor": (round(s["cpu_seconds"] / s["audio_seconds"], 4)
                                                     if s["audio_seconds"] else None),
                            "utt_per_cpu_s": (round(s["wavs"] / s["cpu_seconds"], 2)
                                              if s["cpu_seconds"] else None)}
                        for b, s in sorted(stats.items())},
    }
    return SynthesisResult(manifest=manifest, errors=errors, figures=figures)


def _run_jobs_star(args: tuple) -> list[dict]:
    return _run_jobs(*args)


def imap_unordered(fn: Callable, items: Sequence, workers: int, initializer: Callable | None = None,
                   initargs: tuple = ()) -> Iterator:
    """``fn(item)`` for every item in ``workers`` spawned processes, results as they finish.

    "spawn" is the safe start method once torch or onnxruntime are loaded (forking their thread
    pools can deadlock). A worker that dies (killed, out of memory, crash in a C library) raises
    BrokenProcessPool here instead of hanging the batch; Ctrl-C cancels what has not started.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=initializer, initargs=initargs)
    try:
        # keep a bounded number in flight so that results stream back and memory stays flat
        it, running = iter(items), set()
        for item in it:
            running.add(ex.submit(fn, item))
            if len(running) >= 4 * workers:
                break
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(it, _END)
                if nxt is not _END:
                    running.add(ex.submit(fn, nxt))
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


_END = object()


# ------------------------------------------------------------------------------------ jsonl I/O
def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    import json
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    import json
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e}); delete the file to rebuild") from e
    return rows


def utterance_summary(manifest: Sequence[dict], errors: Sequence[dict]) -> dict:
    """Counts for metrics.json: per split / voice / held-out, errors by reason, audio hours."""
    seconds = sum(r["duration"] for r in manifest)
    return {
        "utterances": len(manifest),
        "per_split": dict(sorted(Counter(r["split"] for r in manifest).items())),
        "per_voice": dict(sorted(Counter(r["voice"] for r in manifest).items())),
        "per_backend": dict(sorted(Counter(r["backend"] for r in manifest).items())),
        "heldout": sum(1 for r in manifest if r["heldout"]),
        "augmented": sum(1 for r in manifest if r.get("augment")),
        "errors": dict(sorted(Counter(e["reason"] for e in errors).items())),
        "errors_total": len(errors),
        "audio_hours": round(seconds / 3600, 4),
        "mean_duration_s": round(seconds / len(manifest), 3) if manifest else None,
    }


__all__ = ["AudioChecks", "CaptionError", "SynthesisResult", "Utterance", "check_waveform",
           "normalise_caption", "number_to_words", "plan_utterances", "read_jsonl", "synthesize_plan",
           "utterance_summary", "wav_relpath", "write_jsonl"]


# ------------------------------------------------------------------------ a dataset for testing
def write_caption_dataset(root: str | Path, n_train_classes: int = 8, n_test_classes: int = 4,
                          images_per_class: int = 3, seed: int = 0,
                          captions: dict[str, list[str]] | None = None) -> Path:
    """A minimal dataset folder (4x4 flat images, bird-like captions) in the shared layout.

    For tests and benchmarks of the speech step, independent of the toy renderers. ``captions``
    overrides the captions of chosen image keys (to plant bad input).
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    colours = "red yellow blue brown black white grey orange green olive".split()
    parts = "crown belly wings breast tail nape throat back".split()
    sizes = "small large tiny plump slender".split()
    templates = ("a {s} bird with a {c1} {p1} and {c2} {p2}",
                 "this bird has a {c1} {p1}, a {c2} {p2} and a short beak",
                 "the {s} bird is {c1} with {c2} {p2}",
                 "a {c1} and {c2} bird with a {s} {p1}",
                 "this {s} bird has {c1} {p1} and a {c2} {p2}")
    root = Path(root)
    records, classes = [], []
    n_classes = n_train_classes + n_test_classes
    for cid in range(n_classes):
        split = "train" if cid < n_train_classes else "test"
        name = f"{cid + 1:03d}.Class_{cid + 1}"
        classes.append({"id": cid, "name": name, "split": split, "attributes": None})
        for i in range(images_per_class):
            key = f"{name}/img_{i:04d}"
            caps = []
            for _ in range(10):
                t = templates[rng.integers(len(templates))]
                c1, c2 = rng.choice(colours, 2, replace=False)
                p1, p2 = rng.choice(parts, 2, replace=False)
                caps.append(t.format(s=rng.choice(sizes), c1=c1, c2=c2, p1=p1, p2=p2))
            if captions and key in captions:
                caps = list(captions[key]) + caps[len(captions[key]):]
            write_image(root, key, Image.new("RGB", (4, 4), tuple(int(x) for x in rng.integers(0, 255, 3))))
            write_captions(root, key, caps)
            records.append(ImageRecord(key=key, class_name=name, class_id=cid, split=split,
                                       captions=tuple(caps)))
    write_index(root, "speechtest", records, classes)
    return root
