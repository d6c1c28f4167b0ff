"""Run folders, atomic writes and the step cache.

Every pipeline step writes into ``runs/<profile>/<step>/`` and finishes by writing ``metrics.json``.
A step whose ``metrics.json`` carries the same config hash (and whose upstream steps are the very
runs it was built from) is up to date and is skipped. Writes go to a temporary file in the same
folder and are renamed into place, so a reader never sees half a file and a killed step leaves
either the old file or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

METRICS_FILE = "metrics.json"
STARTED_FILE = "started.json"

# Versions recorded in every metrics.json, so that a number can be traced to the code that made it.
RECORDED_PACKAGES = ("s2i-course", "torch", "torchvision", "torchaudio", "numpy", "pillow",
                     "piper-tts", "espeakng-loader")


# --------------------------------------------------------------------------------------- writes
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix is kept so that libraries which pick a format from the extension still work.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:  # make the bytes durable before the rename publishes them
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the only non-JSON types steps put into their metrics
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


# --------------------------------------------------------------------------------------- reads
# Files in a runs folder are shared, copied and downloaded: they are read as data, never executed
# (no unpickling), and a damaged one is one error that names it.
class BadFileError(ValueError):
    """A file the library reads is damaged, truncated, foreign or unsafe; the message names it."""


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadFileError(f"{path} is not valid JSON ({e}); delete it to rebuild") from None
    except OSError as e:
        raise BadFileError(f"{path} cannot be read ({e.strerror or e})") from None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` that never unpickles: tensors, numbers, strings and containers only
    (``weights_only=True``). A missing file is a FileNotFoundError; a damaged, truncated or
    foreign one (or a pickle that tries to run code) a ``BadFileError`` naming the file."""
    import torch   # here, not at import time: the rest of this module does not need torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:   # torch raises UnpicklingError, EOFError, RuntimeError, ... by damage
        raise BadFileError(f"{path} is damaged or not a checkpoint written by s2i_lib "
                           f"({_first_line(e)})") from None


def require_finite(module: Any, path: str | os.PathLike) -> None:
    """A ``BadFileError`` naming ``path`` if a floating-point weight or buffer of ``module`` (just
    loaded from it) is NaN or infinite: a diverged or damaged run would draw black images silently."""
    import torch

    if not all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point()):
        raise BadFileError(f"{path} is damaged (NaN or infinite weights)")


def load_array(path: str | os.PathLike, mmap_mode: str | None = None) -> Any:
    """``np.load`` of an ``.npy`` (an array) or an ``.npz`` (a dict of arrays, all read now) that
    refuses object arrays (they would be unpickled); a damaged file is a ``BadFileError`` naming it."""
    import numpy as np

    path = Path(path)
    try:
        loaded = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):   # lazy: read here, where errors name the file
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        return loaded
    except FileNotFoundError:
        raise
    except Exception as e:
        raise BadFileError(f"{path} is damaged or not an array file written by s2i_lib "
                           f"({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """The gist of a load error, on one line. torch's refusals of a pickle are paragraphs whose
    point is the line after "WeightsUnpickler error:" (e.g. "Unsupported global: GLOBAL io.open")."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        gist = text.split(marker, 1)[1].strip().splitlines()[0].split(" was not an allowed global")[0]
        return f"refused to unpickle it: {gist[:200]}"
    lines = text.strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def json_once(path: str | os.PathLike, compute: Callable[[], Any]) -> Any:
    """``compute()``, written to ``path`` (JSON, atomically); if ``path`` already exists, what it
    holds instead: the finished part of a step that was interrupted later and is now resumed."""
    if Path(path).exists():
        return read_json(path)
    result = compute()
    atomic_write_json(path, result)
    return result


def saved_state_for(path: str | os.PathLike, request: dict) -> dict | None:
    """The dict ``torch.save``d at ``path`` if it was made for ``request`` (its ``"request"``
    entry); None if the file is missing, damaged, foreign or made for another request: a cache
    (the evaluation's judges) that the caller then builds over."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
    except BadFileError:   # a damaged or foreign file is rebuilt over, not trusted
        return None
    return state if isinstance(state, dict) and state.get("request") == request else None


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-serialisable object that does not depend on dict order or the process."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


# ---------------------------------------------------------------------------------- measurement
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the process-lifetime peak
        import resource
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak resident memory of this process while a block runs (sampled every 50 ms).

    ``ru_maxrss`` would give the peak of the whole process lifetime, which in a notebook that runs
    several steps says nothing about the step at hand; so we sample.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _current_rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.peak = _current_rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _current_rss_bytes())


# ----------------------------------------------------------------------------------- run folders
def default_runs_dir() -> Path:
    """``S2I_RUNS_DIR``, else ``runs/`` at the repository root (not the notebook's folder)."""
    env = os.environ.get("S2I_RUNS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo / "runs" if (repo / "pyproject.toml").exists() else Path("runs").resolve()


def step_dir(step: str, cfg: Any, runs_dir: str | os.PathLike | None = None) -> Path:
    """``runs/<profile>/<step>/`` of ``cfg``'s profile (``cfg``: a ``config.Config``). Where a step
    writes (``pipeline.ensure`` runs it) and where a report or the demo reads what it wrote."""
    return Path(runs_dir or default_runs_dir()) / cfg.profile / step


# ----------------------------------------------------------------------------------- step cache
@dataclass(frozen=True)
class StepState:
    """What is on disk for one step: ``status`` is 'done', 'stale', 'partial' or 'missing'."""
    name: str
    dir: Path
    status: str
    reason: str
    metrics: dict | None


def step_state(step_dir: Path, name: str, config_hash: str, upstream_runs: dict[str, str],
               missing: Callable[[dict], str | None] | None = None) -> StepState:
    """Compare what is in ``step_dir`` with the config and upstream runs it should come from.

    ``missing(metrics)``: for a finished run of this config, what the request adds to it (a
    reason), or None; a finished run that misses something is 'partial': it is extended in place.
    """
    metrics_path = step_dir / METRICS_FILE
    if not metrics_path.exists():
        status = "partial" if step_dir.exists() and any(step_dir.iterdir()) else "missing"
        return StepState(name, step_dir, status, "no metrics.json (never finished)", None)
    try:
        metrics = read_json(metrics_path)
        if not isinstance(metrics, dict):
            raise BadFileError(f"{metrics_path} holds a {type(metrics).__name__}, not the step's record")
    except BadFileError as e:   # as if the step never finished: it resumes from what is there
        return StepState(name, step_dir, "partial", str(e).replace("; delete it to rebuild", ""), None)
    if metrics.get("config_hash") != config_hash:
        return StepState(name, step_dir, "stale",
                         f"config changed ({metrics.get('config_hash')} -> {config_hash})", metrics)
    recorded = metrics.get("upstream_runs", {})
    for up, run_id in upstream_runs.items():
        if recorded.get(up) != run_id:
            return StepState(name, step_dir, "stale", f"upstream step '{up}' was re-run", metrics)
    damage = damaged_file(step_dir, metrics.get("files"))
    if damage:
        return StepState(name, step_dir, "damaged", damage, metrics)
    lacking = missing(metrics) if missing is not None else None
    if lacking:
        return StepState(name, step_dir, "partial", lacking, metrics)
    return StepState(name, step_dir, "done", "up to date", metrics)


# A folder with more files than this (the speech step's thousands of WAVs) is recorded as its
# count and total size, so that metrics.json stays small; fewer files are recorded one by one.
MANIFEST_FILES_PER_FOLDER = 64
# Shared caches that later steps add to (backbone features in data/cache/): not the step's output.
UNRECORDED_FOLDERS = ("cache",)
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[^.]*)?$")   # atomic_path's temporary names


def file_manifest(step_dir: Path) -> dict[str, int | list[int]]:
    """What a finished step left in ``step_dir``: ``{"path": size}``, or ``{"folder/": [files,
    bytes]}`` for a folder of many files. Recorded in metrics.json and checked by ``step_state``,
    so that a truncated or deleted output is found before a later step reads it."""
    manifest: dict[str, int | list[int]] = {}
    for folder, subfolders, names in os.walk(step_dir):
        rel = Path(folder).relative_to(step_dir)
        if rel == Path("."):
            subfolders[:] = [d for d in subfolders if d not in UNRECORDED_FOLDERS]
            names = [n for n in names if n not in (METRICS_FILE, STARTED_FILE)]
        subfolders.sort()
        names = sorted(n for n in names if not _TEMP_FILE.match(n))
        sizes = [(Path(folder) / n).stat().st_size for n in names]
        if len(names) > MANIFEST_FILES_PER_FOLDER and rel != Path("."):   # the root: one by one
            manifest[f"{rel.as_posix()}/"] = [len(names), sum(sizes)]
        else:
            manifest.update({(rel / n).as_posix(): size for n, size in zip(names, sizes)})
    return manifest


def damaged_file(step_dir: Path, manifest: dict | None) -> str | None:
    """The first recorded output of ``step_dir`` that is missing or has changed size, as a
    reason; None if all are as recorded (or nothing was recorded: a run of an older version)."""
    if manifest is None:
        return None
    for rel, recorded in (manifest.items() if isinstance(manifest, dict) else [(None, None)]):
        folder = isinstance(rel, str) and rel.endswith("/")
        if (not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts
                or not (isinstance(recorded, list) and len(recorded) == 2 and all(isinstance(v, int) for v in recorded)
                        if folder else isinstance(recorded, int))):
            return f"{step_dir / METRICS_FILE} has a malformed record of the step's files ({rel!r}: {recorded!r})"
        path = step_dir / rel
        if rel.endswith("/"):
            files = [path / n for n in (os.listdir(path) if path.is_dir() else []) if not _TEMP_FILE.match(n)]
            files = [f for f in files if f.is_file()]   # subfolders are recorded on their own
            now = [len(files), sum(f.stat().st_size for f in files)]
            if now != recorded:
                return (f"{path} changed since the step finished ({now[0]} files, {now[1]} bytes; "
                        f"recorded {recorded[0]} files, {recorded[1]} bytes)")
        elif not path.is_file():
            return f"{path} is missing (the step finished with it)"
        elif path.stat().st_size != recorded:
            return (f"{path} is {path.stat().st_size} bytes, {recorded} when the step finished "
                    f"(truncated or replaced)")
    return None


def remove_temp_files(step_dir: Path) -> None:
    """Delete what writes killed half-way left behind (atomic_path's temporary files). Only called
    while the step's lock is held, so no live write is touched."""
    for folder, _, names in os.walk(step_dir):
        for n in names:
            if _TEMP_FILE.match(n):
                (Path(folder) / n).unlink(missing_ok=True)


@contextmanager
def step_lock(step_dir: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``.<step>.lock`` beside ``step_dir`` while a step runs: a second process that asks for
    the same step (two ``make run`` on one runs folder) waits for the first, then finds its work
    done, instead of deleting files under it."""
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock (one run at a time is then the user's job)
        yield
        return
    step_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = step_dir.parent / f".{step_dir.name}.lock"
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            log(f"[{step_dir.name}] waiting: {holder} is running this step ({lock_path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {platform.node()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def run_step(step_dir: Path, name: str, config_hash: str, config_section: dict,
             upstream_runs: dict[str, str], work: Callable[[Path], dict],
             force: bool = False, log: Callable[[str], None] = print,
             missing: Callable[[dict], str | None] | None = None) -> dict:
    """Run ``work(step_dir)`` unless the step is up to date, then write its ``metrics.json``.

    ``work`` returns the step's figures (a JSON-able dict). It may be interrupted at any point: it
    must write its own outputs atomically and may resume from what a previous attempt with the
    same config and upstream runs left behind (``started.json`` records which they were). When the config
    changed, the old outputs are removed first, so no file from another config can leak in.
    A finished run that ``missing`` (see ``step_state``) finds short is resumed the same way: the
    work finds its outputs there and adds the rest.
    """
    with step_lock(step_dir, log):
        return _run_step_locked(step_dir, name, config_hash, config_section, upstream_runs, work,
                                force, log, missing)


def _run_step_locked(step_dir: Path, name: str, config_hash: str, config_section: dict,
                     upstream_runs: dict[str, str], work: Callable[[Path], dict], force: bool,
                     log: Callable[[str], None], missing: Callable[[dict], str | None] | None) -> dict:
    state = step_state(step_dir, name, config_hash, upstream_runs, missing)
    if state.status == "done" and not force:
        log(f"[{name}] up to date in {step_dir} (config {config_hash}); nothing to do. "
            f"Use force=True / --force to re-run.")
        return state.metrics  # type: ignore[return-value]

    started_path = step_dir / STARTED_FILE
    # an interrupted run resumes only on the same config *and* the same upstream runs: files made
    # from an earlier SEN's embeddings must not be mixed with a re-run SEN's
    started = {"config_hash": config_hash, "upstream_runs": upstream_runs}
    resumable = (state.status == "partial" and not force and started_path.exists()
                 and _started_by(started_path) == started)
    if step_dir.exists() and not resumable:
        if state.status == "partial" and not force:
            log(f"[{name}] the interrupted run in {step_dir} cannot be resumed (another config, "
                f"other runs of the steps before it, or no {STARTED_FILE}): rebuilding it")
        elif state.status != "missing":
            log(f"[{name}] {'forced re-run' if force else state.reason}: rebuilding {step_dir}")
        _remove_tree(step_dir)
    elif resumable and state.metrics is not None:
        log(f"[{name}] {state.reason}: extending the finished run in {step_dir}")
    elif resumable:
        log(f"[{name}] resuming an interrupted run in {step_dir}")
    if resumable:
        remove_temp_files(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(started_path, {**started, "started_at": _now()})

    t0 = time.perf_counter()
    with PeakMemory() as mem:
        figures = work(step_dir)
    wall = time.perf_counter() - t0

    remove_temp_files(step_dir)   # e.g. a resumed run's leftovers from the kill
    metrics = {
        "step": name,
        "run_id": uuid.uuid4().hex[:12],
        "finished_at": _now(),
        "config_hash": config_hash,
        "upstream_runs": upstream_runs,
        "wall_time_s": round(wall, 3),
        "peak_rss_mb": round(mem.peak / 2**20, 1),
        "figures": figures,
        "config": config_section,
        "versions": package_versions(),
        "files": file_manifest(step_dir),
    }
    gpu_peak = _cuda_peak_mb()
    if gpu_peak is not None:
        metrics["peak_cuda_mb"] = gpu_peak
    atomic_write_json(step_dir / METRICS_FILE, metrics)
    log(f"[{name}] done in {wall:.1f} s -> {step_dir}")
    return metrics


def _started_by(path: Path) -> dict | None:
    """What ``started.json`` says the interrupted run was made from (None if unreadable)."""
    try:
        started = read_json(path)
    except ValueError:
        return None
    return {"config_hash": started.get("config_hash"), "upstream_runs": started.get("upstream_runs")}


def _remove_tree(path: Path) -> None:
    # Rename first so that a crash in the middle of rmtree never leaves a half-deleted step
    # folder that looks like a resumable one.
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _cuda_peak_mb() -> float | None:
    torch = sys.modules.get("torch")  # only if the step imported torch: do not import it here
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")

