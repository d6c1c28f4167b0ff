"""Speed of the speech step: TTS backends, feature extraction, and (optionally) the whole default step.

    python benchmarks/bench_speech.py                  # backends + features, ~1 minute
    python benchmarks/bench_speech.py --default-step   # also the default profile's whole speech step
                                                       # on a synthetic dataset of its size (~5-10 min)

Prints a table and writes ``outputs/benchmarks/bench_speech.json``. Targets on a 2-core CPU:
Piper >= 4 utterances/s with both cores, eSpeak >= 100 utterances/s, features >= 500 utterances/s,
the default profile's speech step (synthesis + features) under 10 minutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from s2i_lib.artifacts import atomic_write_json, package_versions  # noqa: E402
from s2i_lib.config import load_config  # noqa: E402
from s2i_lib.data.layout import read_dataset  # noqa: E402
from s2i_lib.speech.synthesis import (plan_utterances, synthesize_plan,  # noqa: E402
                                      write_caption_dataset)
from s2i_lib.voices import backend_of  # noqa: E402

TARGETS = {"piper_utt_per_s": 4.0, "espeak_utt_per_s": 100.0, "features_utt_per_s": 500.0,
           "default_step_s": 600.0}


def _plan(data: Path, voice: str, n: int, seed: int = 0):
    cfg = load_config("default", {"speech.voices": [voice], "speech.voice_weights": [],
                                  "speech.heldout_voices": [], "speech.captions_per_image": 10})
    plan = plan_utterances(read_dataset(data).records, cfg.speech, seed)
    return [u for u in plan if u.error is None][:n], cfg


def bench_backend(data: Path, work: Path, voice: str, n: int, workers: int) -> dict:
    """Wall-clock utterances/s of the batch synthesis (spawned workers, start-up included) and the
    steady-state rate and real-time factor measured inside the workers."""
    plan, cfg = _plan(data, voice, n)
    out = work / f"synth-{voice.replace(':', '_')}-{workers}"
    t0 = time.perf_counter()
    res = synthesize_plan(plan, out, cfg.speech, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    b = res.figures["per_backend"][backend_of(voice)]
    return {"voice": voice, "workers": workers, "utterances": len(plan),
            "wall_s": round(wall, 2), "utt_per_s_wall": round(len(plan) / wall, 2),
            "utt_per_s_steady": round(b["utt_per_s_per_worker"] * min(workers, len(plan)), 2),
            "real_time_factor": b["real_time_factor"],
            # from CPU time: what free cores would do (this machine may be shared)
            "cpu_real_time_factor": b["cpu_real_time_factor"],
            "utt_per_s_free_cores": round(b["utt_per_cpu_s"] * min(workers, len(plan)), 2),
            "audio_s_per_utt": round(b["audio_seconds"] / max(1, b["wavs"]), 2),
            "out": str(out), "manifest": res.manifest}


def bench_features(step_dir: Path, manifest: list[dict], workers: int, n: int) -> dict:
    """Feature extraction of ``n`` utterances (the eSpeak WAVs, hard-linked under new names as often
    as needed: the store computes each distinct file once)."""
    from s2i_lib.speech.features import build_feature_store, log_mel, read_audio
    cfg = load_config("default").speech
    shutil.rmtree(step_dir / "features", ignore_errors=True)
    shutil.rmtree(step_dir / "wavs_bench", ignore_errors=True)
    (step_dir / "wavs_bench").mkdir()
    rows = []
    for i in range(n):
        src = manifest[i % len(manifest)]
        rel = f"wavs_bench/{i:06d}.wav"
        os.link(step_dir / src["path"], step_dir / rel)
        rows.append({**src, "id": f"{src['id']}~{i}", "path": rel})
    manifest = rows
    t0 = time.perf_counter()
    fig = build_feature_store(step_dir, manifest, cfg, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    # one process, no start-up: the per-core rate
    import torch
    torch.set_num_threads(1)
    rows = manifest[:300]
    t1 = time.perf_counter()
    frames = sum(log_mel(read_audio(step_dir / r["path"])).shape[0] for r in rows)
    one = time.perf_counter() - t1
    return {"workers": workers, "utterances": fig["feature_utterances"], "wall_s": round(wall, 2),
            "utt_per_s": round(fig["feature_utterances"] / wall, 1),
            "frames_per_s": round(fig["frames"] / wall, 1),
            "utt_per_s_free_cores": round(fig["feature_utterances"] / fig["feature_cpu_s"] * workers, 1),
            "one_core_utt_per_s": round(len(rows) / one, 1),
            "one_core_frames_per_s": round(frames / one, 1)}


def bench_default_step(work: Path) -> dict:
    """The default profile's speech step on a synthetic dataset of the default size."""
    from s2i_lib.steps.speech import build_speech_step
    cfg = load_config("default")
    n_train, n_test = 150, 50  # ToyBirds: CUB's split
    data = write_caption_dataset(work / "default-data", n_train, n_test, cfg.data.images_per_class)
    out = work / "default-speech"
    t0 = time.perf_counter()
    fig = build_speech_step(cfg, out, {"data": data})
    wall = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    # the same work on 2 free cores: worker CPU seconds / 2 (+ the main process's own time)
    worker_cpu = sum(b["wavs"] / b["utt_per_cpu_s"] for b in fig["synthesis_per_backend"].values()
                     if b["utt_per_cpu_s"]) + fig["features_cpu_s"]
    return {"wall_s": round(wall, 1), "disk_gb": round(disk / 1e9, 2),
            "worker_cpu_s": round(worker_cpu, 1),
            "estimate_on_2_free_cores_s": round(worker_cpu / 2, 1),
            **{k: fig[k] for k in ("utterances", "per_split", "per_voice", "heldout", "errors",
                                  "audio_hours", "synthesis_time_s", "synthesis_utt_per_s",
                                  "real_time_factor", "cpu_real_time_factor", "features_time_s",
                                  "frames", "feature_utt_per_s")}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-espeak", type=int, default=1500)
    ap.add_argument("--n-piper", type=int, default=60)
    ap.add_argument("--n-features", type=int, default=6000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--default-step", action="store_true",
                    help="also time the default profile's whole speech step (minutes, ~5 GB in --work)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "bench_speech.json")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_speech_"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        data = write_caption_dataset(work / "data", 20, 0, 10)  # 200 images x 10 captions
        espeak = bench_backend(data, work, "espeak:en-us+f3", args.n_espeak, args.workers)
        piper = bench_backend(data, work, "piper:joe", args.n_piper, args.workers)
        piper_1 = bench_backend(data, work, "piper:joe", min(20, args.n_piper), 1)
        features = bench_features(Path(espeak["out"]), espeak.pop("manifest"), args.workers,
                                  args.n_features)
        for r in (piper, piper_1):
            r.pop("manifest")
        result = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()]},
            "espeak": espeak, "piper": piper, "piper_one_worker": piper_1, "features": features,
            "targets": TARGETS, "versions": package_versions(),
        }
        if args.default_step:
            result["default_step"] = bench_default_step(work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    met = {"piper_utt_per_s": piper["utt_per_s_steady"], "espeak_utt_per_s": espeak["utt_per_s_wall"],
           "features_utt_per_s": features["utt_per_s"]}
    if "default_step" in result:
        met["default_step_s"] = result["default_step"]["wall_s"]
    result["meets_targets"] = {k: (v <= TARGETS[k] if k == "default_step_s" else v >= TARGETS[k])
                               for k, v in met.items()}

    print(f"{'what':<34}{'utt/s':>10}{'RTF':>9}{'wall s':>9}{'free-core utt/s':>17}{'CPU RTF':>9}")
    for name, r in (("eSpeak NG, 2 workers (wall)", espeak), ("Piper, 2 workers (steady)", piper),
                    ("Piper, 1 worker (steady)", piper_1)):
        rate = r["utt_per_s_wall"] if "eSpeak" in name else r["utt_per_s_steady"]
        print(f"{name:<34}{rate:>10}{r['real_time_factor']:>9}{r['wall_s']:>9}"
              f"{r['utt_per_s_free_cores']:>17}{r['cpu_real_time_factor']:>9}")
    print(f"{'Piper, 2 workers (wall, start-up incl.)':<34}{piper['utt_per_s_wall']:>10}")
    print(f"{'features, 2 workers':<34}{features['utt_per_s']:>10}{'':>9}{features['wall_s']:>9}"
          f"{features['utt_per_s_free_cores']:>17}   {features['frames_per_s']:.0f} frames/s")
    print(f"{'features, 1 core, in-process':<34}{features['one_core_utt_per_s']:>10}{'':>9}{'':>9}"
          f"   {features['one_core_frames_per_s']:.0f} frames/s")
    if "default_step" in result:
        d = result["default_step"]
        print(f"default profile speech step: {d['wall_s']} s for {d['utterances']} utterances "
              f"({d['audio_hours']} h of audio, {d['disk_gb']} GB on disk); "
              f"{d['estimate_on_2_free_cores_s']} s of work per core (2 free cores)")
    print("load average before/after:", result["machine"]["load_average_before"],
          result["machine"]["load_average_after"])
    print("meets targets:", result["meets_targets"])
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
