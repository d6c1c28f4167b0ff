"""Which acoustic augmentation makes the SEN hear the listening tests' groups best?

    python benchmarks/bench_augmentation.py                                # default profile, every variant
    python benchmarks/bench_augmentation.py --variants profile room --sen-seeds 0 1

Each variant changes the chain that ``speech/augment.py`` draws for the augmented copies (the step
probabilities and the room's RT60 range) and nothing else: the same training utterances get a copy,
the clean WAVs are the profile's own (hard links into the variant's speech directory, so only the
features are computed again), and the SEN trains with the profile's settings and seed (the text
baseline off; ``--sen-seeds`` trains it again from other seeds of its own, the upstream steps
keeping the profile's, to show the spread). ``profile`` is the profile's own speech step as it is.
For each variant the script prints the attribute P@10 of every group of the ``sen`` step, its gap to the training voices, the
feature and training times, and writes ``outputs/benchmarks/bench_augmentation.json`` (keeping the
rows of earlier invocations). Runs go to ``outputs/experiments/augment_<variant>/``; a variant already
there is trained again from scratch.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_description, load_average  # noqa: E402

# name: (step probabilities, RT60 range in s); None keeps augment.py's value
VARIANTS = {
    "profile": (None, None),
    "room": ({"speed": 0.5, "reverb": 0.7, "noise": 0.5, "telephone": 0.25, "gain": 0.3}, (0.3, 1.0)),
    "room_same_rt60": ({"speed": 0.5, "reverb": 0.7, "noise": 0.5, "telephone": 0.25, "gain": 0.3}, None),
    "room_less_noise": ({"speed": 0.5, "reverb": 0.7, "noise": 0.35, "telephone": 0.2, "gain": 0.3}, (0.3, 1.0)),
}
FIGURE = "attribute_precision@10"
TRAINING = "speech (training voices)"


def link_wavs(src: Path, dst: Path) -> int:
    """Hard-link every WAV of the speech step ``src`` into ``dst`` (same relative paths)."""
    n = 0
    for root, _, files in os.walk(src / "wavs"):
        out = dst / Path(root).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            if f.endswith(".wav"):
                os.link(Path(root) / f, out / f)
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--sen-seeds", type=int, nargs="+", default=None,
                        help="seeds of the SEN's training (default: the profile's seed)")
    parser.add_argument("--runs-dir", default=None, help="where the profile's data and speech steps are")
    parser.add_argument("--out-dir", default=str(REPO / "outputs" / "experiments"))
    args = parser.parse_args()

    from s2i_lib import pipeline
    from s2i_lib.artifacts import atomic_write_json, read_json
    from s2i_lib.config import load_config
    from s2i_lib.speech import augment
    from s2i_lib.steps.sen import train_sen_step
    from s2i_lib.steps.speech import build_speech_step

    cfg = load_config(args.profile, ["sen.text_baseline=false"])
    if cfg.speech.augment_share <= 0:
        parser.error(f"{args.profile}: speech.augment_share is 0, so no variant would differ")   # exit code 2
    inputs = {step: pipeline.ensure(step, cfg, args.runs_dir) for step in ("data", "speech")}
    rows = []
    for name in args.variants:
        probabilities, rt60 = VARIANTS[name]
        out = Path(args.out_dir) / f"augment_{name}"
        shutil.rmtree(out, ignore_errors=True)
        row: dict = {"variant": name, "probabilities": probabilities or augment.PROBABILITIES,
                     "rt60_range_s": rt60 or augment.RT60_RANGE_S}
        speech_dir = inputs["speech"]
        if name != "profile":
            speech_dir = out / "speech"
            link_wavs(inputs["speech"], speech_dir)
            # the chains are drawn in this process (plan_utterances) and recorded in the manifest;
            # the feature workers only apply them
            with mock.patch.multiple(augment, PROBABILITIES=probabilities or augment.PROBABILITIES,
                                     RT60_RANGE_S=rt60 or augment.RT60_RANGE_S):
                speech_figures = build_speech_step(cfg, speech_dir, {"data": inputs["data"]})
            if speech_figures["wavs_synthesized"]:
                sys.exit(f"{name}: the speech step synthesised {speech_figures['wavs_synthesized']} WAVs, "
                         "so the plan differs from the profile's; stopping")
            row["features_time_s"] = speech_figures["features_time_s"]
        for seed in args.sen_seeds or [cfg.seed]:
            sen_dir = out / f"sen_seed{seed}"
            sen_dir.mkdir(parents=True)
            t0 = time.perf_counter()
            figures = train_sen_step(dataclasses.replace(cfg, seed=seed), sen_dir,
                                     {"data": inputs["data"], "speech": speech_dir})
            seed_row = dict(row, variant=f"{name}, SEN seed {seed}", wall_s=round(time.perf_counter() - t0, 1),
                            train_s=figures["speech_train_time_s"])
            base = figures["test"][TRAINING][FIGURE]
            for group, res in figures["test"].items():
                seed_row[group] = round(res[FIGURE], 4) if group == TRAINING else round(res[FIGURE] - base, 4)
            rows.append(seed_row)
            print(json.dumps(seed_row), flush=True)

    import pandas as pd
    table = pd.DataFrame(rows).set_index("variant").drop(columns=["probabilities", "rt60_range_s"])
    print(f"\n{args.profile}: {FIGURE} of the training voices, and each group's gap to it, by augmentation")
    print(table.T.to_string())
    path = REPO / "outputs" / "benchmarks" / "bench_augmentation.json"
    # rows of earlier invocations (other variants or seeds, same profile) are kept beside this one's
    earlier = read_json(path) if path.exists() else {}
    done = {r["variant"] for r in rows}
    kept = [r for r in earlier.get("rows", []) if r["variant"] not in done] if earlier.get("profile") == args.profile else []
    atomic_write_json(path, {"profile": args.profile, "machine": cpu_description(), "load_average": load_average(),
                             "rows": kept + rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
