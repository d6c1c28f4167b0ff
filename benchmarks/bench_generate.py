"""Latency of ``python -m s2i_lib generate --wav``: one image from a recording.

    python benchmarks/bench_generate.py                  # the default profile if its gan step is built
    python benchmarks/bench_generate.py --profile smoke

One request = read the WAV + trim its silence + log-mel features + speech encoder + generator (one
image, last stage), as ``generate`` and the demo do it; model loading (and the warm-up pass that
pays for lazy initialisation) is timed apart and not counted. The median of ``--runs`` requests (20)
after 2 unmeasured ones, with the minimum and the process CPU time, which a busy machine inflates
less than the wall clock. Target (issue #8): under 0.5 s on the default profile, 2-core CPU.

Without a built ``runs/default/gan`` it measures the smoke profile instead and says so (building
smoke if needed). Writes ``outputs/benchmarks/generate.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 0.5


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def choose_profile(requested: str | None, runs_dir: Path | None) -> tuple[str, str | None]:
    """(profile, why it is not the one asked for, or None)."""
    from s2i_lib import load_config, pipeline
    if requested:
        return requested, None
    st = pipeline.state("gan", load_config("default"), runs_dir)
    if st.status == "done":
        return "default", None
    return "smoke", (f"the default profile's gan step is {st.status} ({st.reason}): measured on the "
                     f"smoke profile instead, whose models are smaller")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="default if its gan step is built, else smoke")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=REPO / "outputs" / "benchmarks" / "generate.json")
    args = ap.parse_args()

    import numpy as np
    import soundfile as sf
    import torch

    from s2i_lib import load_config, pipeline
    from s2i_lib.artifacts import atomic_write_json
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.demo import draw, load_recording, warm_up
    from s2i_lib.steps.profile import speech_to_image

    profile, fallback = choose_profile(args.profile, args.runs_dir)
    if fallback:
        print(f"NOTE: {fallback}")
    cfg = load_config(profile)
    load_before = load_average()

    if profile == "smoke":   # the fallback: its steps are built when missing
        pipeline.ensure("gan", cfg, args.runs_dir)
    t0 = time.perf_counter()
    s2i = speech_to_image(cfg, args.runs_dir)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_up(s2i)
    warm_up_s = time.perf_counter() - t0

    # the "recording": a test caption (a class never trained on) in a held-out voice, with some
    # silence around it as a real recording has
    index = read_dataset(pipeline.step_dir("data", cfg, args.runs_dir))
    caption = index.split("test")[0].captions[0]
    voice = (cfg.speech.heldout_voices or cfg.speech.voices)[0]
    sr = cfg.speech.sample_rate
    silence = np.zeros(sr // 2, np.float32)
    wave = np.concatenate([silence, s2i.speak(caption, voice, seed=0), silence])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "recording.wav"
        sf.write(wav, wave, sr, subtype="PCM_16")
        parts: dict[str, list[float]] = {"read": [], "features_embed": [], "generate": []}
        wall, cpu = [], []
        for i in range(args.runs + 2):
            w0, c0 = time.perf_counter(), time.process_time()
            heard = load_recording(wav, cfg.speech)
            w1 = time.perf_counter()
            emb, image, timings = draw(s2i, heard, n=1, seed=i)   # what `generate` runs
            w3, c3 = time.perf_counter(), time.process_time()
            if i < 2:
                continue
            wall.append(w3 - w0)
            cpu.append(c3 - c0)
            for k, v in zip(parts, (w1 - w0, timings["embedding"], timings["generation"])):
                parts[k].append(v)

    median = statistics.median(wall)
    result = {
        "profile": profile, "fallback": fallback,
        "request": "one image from a WAV: read + trim + log-mel + speech encoder + generator",
        "runs": args.runs, "median_s": round(median, 4), "min_s": round(min(wall), 4),
        "median_cpu_s": round(statistics.median(cpu), 4),
        "parts_median_s": {k: round(statistics.median(v), 4) for k, v in parts.items()},
        "target_s": TARGET_S, "meets_target": median < TARGET_S,
        "model_loading_s": round(load_s, 3), "warm_up_s": round(warm_up_s, 3),
        "audio_seconds": round(len(wave) / sr, 2), "caption": caption, "voice": voice,
        "image_size": int(image.shape[1]), "embed_dim": int(emb.shape[0]),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
        "load_average_before": load_before, "load_average_after": load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, result)
    p = result["parts_median_s"]
    print(f"profile {profile}: one {result['image_size']} px image from a {result['audio_seconds']} s WAV: "
          f"median {median * 1000:.0f} ms (min {min(wall) * 1000:.0f} ms, CPU {result['median_cpu_s'] * 1000:.0f} ms) "
          f"over {args.runs} runs; target < {TARGET_S * 1000:.0f} ms: {'met' if result['meets_target'] else 'NOT met'}")
    print(f"  read + trim {p['read'] * 1000:.1f} ms, features + speech encoder {p['features_embed'] * 1000:.1f} ms, "
          f"generator {p['generate'] * 1000:.1f} ms; model loading {load_s:.2f} s + warm-up {warm_up_s:.2f} s "
          f"(not counted); {result['torch_threads']} torch threads, load average {load_before} -> "
          f"{result['load_average_after']}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
