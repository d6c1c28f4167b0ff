"""A voice held out entirely: the profile's model with the voice in training, and again without it.

    python benchmarks/bench_held_out_voice.py                        # default profile, piper:joe
    python benchmarks/bench_held_out_voice.py --eval                 # also the GAN and the evaluation
    python benchmarks/bench_held_out_voice.py --profile smoke --voice piper:joe

Piper's ``joe`` is the one natural (neural) English voice that installs offline (docs/experiments.md
lists what else was searched for), so the listening tests measure it "in training" on the default
profile. This script gives the other half: the same profile with the voice removed from
``speech.voices``, so the speech step never synthesises it for training, the SEN never hears it
and the GAN never sees its embeddings; the listening group of that voice then measures a voice
that no step has heard.

The run with the voice is the profile's own (``runs/<profile>/``, built if missing); the run
without it goes to ``--out-runs-dir`` and shares the first run's ``data`` step (a link: the images
and captions do not depend on the voices). Prints the retrieval figures (attribute P@10) of every
group of the ``sen`` step, and with ``--eval`` the attribute accuracy of the images generated from
them, side by side, and writes ``outputs/benchmarks/bench_held_out_voice.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_description, load_average  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--voice", default="piper:joe", help="the training voice to hold out")
    parser.add_argument("--runs-dir", default=None, help="where the profile's own run is (default: runs/)")
    parser.add_argument("--out-runs-dir", default=str(REPO / "outputs" / "experiments" / "held_out_voice"))
    parser.add_argument("--eval", action="store_true", help="also train the GAN and evaluate, both runs")
    args = parser.parse_args()

    from s2i_lib import pipeline
    from s2i_lib.artifacts import atomic_write_json, read_json
    from s2i_lib.config import load_config

    with_voice = load_config(args.profile)
    if args.voice not in with_voice.speech.voices:
        parser.error(f"--voice {args.voice}: not a training voice of {args.profile} "
                     f"(speech.voices: {', '.join(with_voice.speech.voices)})")   # one line, exit code 2
    if args.voice not in with_voice.sen.listening_voices:
        parser.error(f"--voice {args.voice}: not in {args.profile}'s sen.listening_voices, so no group would measure it")
    rest = [v for v in with_voice.speech.voices if v != args.voice]
    without = load_config(args.profile, {"speech.voices": rest})

    last = "eval" if args.eval else "sen"
    runs = {}
    t0 = time.perf_counter()
    runs["with"] = pipeline.ensure(last, with_voice, args.runs_dir)
    data_dir = pipeline.step_dir("data", with_voice, args.runs_dir)
    link = pipeline.step_dir("data", without, args.out_runs_dir)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(data_dir.resolve(), target_is_directory=True)
    t1 = time.perf_counter()
    runs["without"] = pipeline.ensure(last, without, args.out_runs_dir)
    t2 = time.perf_counter()

    rows = {}
    for label, cfg, runs_dir in (("with", with_voice, args.runs_dir), ("without", without, args.out_runs_dir)):
        sen = read_json(pipeline.step_dir("sen", cfg, runs_dir) / "results.json")
        for group, res in sen.items():
            name = group.replace(", in training)", ")")   # the same group in both runs
            rows.setdefault(name, {})[f"P@10, {label}"] = res.get("attribute_precision@10")
        if args.eval:
            ev = read_json(pipeline.step_dir("eval", cfg, runs_dir) / "results.json")
            for group, key in (("speech (training voices)", "S2IGAN, training voices"),
                               ("speech (held-out voices)", "S2IGAN, held-out voices")):
                if key in ev["results"]:
                    rows.setdefault(group, {})[f"drawn, {label}"] = ev["results"][key].get("attribute accuracy")
            for group, res in ev.get("listening", {}).items():
                rows.setdefault(group.replace(", in training)", ")"), {})[f"drawn, {label}"] = res["attribute accuracy"]

    import pandas as pd
    table = pd.DataFrame(rows).T
    for what in ("P@10", "drawn"):
        for label in ("with", "without"):
            col = f"{what}, {label}"
            if col in table and "speech (training voices)" in table.index:
                table[f"{what} gap, {label}"] = table[col] - table.loc["speech (training voices)", col]
    print(f"\n{args.profile}: {args.voice} in training (the profile) and held out entirely")
    print(table.round(3).to_string())
    path = REPO / "outputs" / "benchmarks" / "bench_held_out_voice.json"
    atomic_write_json(path, {"profile": args.profile, "voice": args.voice, "machine": cpu_description(),
                             "load_average": load_average(), "eval": args.eval,
                             "time_s": {"with": round(t1 - t0, 1), "without": round(t2 - t1, 1)},
                             "runs": {k: str(v.parent) for k, v in runs.items()},
                             "rows": json.loads(table.to_json(orient="index"))})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
