"""Does the SEN learn the same in bf16 as in fp32? The sen step trained in both precisions, two seeds.

    python benchmarks/bench_sen_quality.py                      # default profile, seeds 0 and 1
    python benchmarks/bench_sen_quality.py --profile smoke --seeds 0

Trains the ``sen`` step's speech model (the text baseline off) of a profile on the same data and
speech steps, for each seed (the seed of the SEN's initialisation, validation classes and batch
order; the upstream steps keep the profile's), in fp32 and with bf16 in the SEN's training
iterations only (the ``sen_training`` part; the backbone features it reads and the exported
embeddings stay fp32, so that only the training differs), into
``outputs/experiments/sen_<precision>_seed<k>/``, and prints the test retrieval figures side by side
with the training time. bf16 is "the same" if its figures lie within the spread of the fp32 seeds.
Writes ``outputs/benchmarks/bench_sen_quality.json``. A bf16 run on a CPU without bf16 units is
emulated and slow: the script stops on a CPU without bf16 units.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_description, load_average  # noqa: E402

FIGURES = ("attribute_precision@10", "class_mAP_all_queries", "speech_to_image_R@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs-dir", default=None, help="where the profile's data and speech steps are")
    parser.add_argument("--out-dir", default=str(REPO / "outputs" / "experiments"))
    args = parser.parse_args()

    from s2i_lib import device, pipeline
    from s2i_lib.artifacts import atomic_write_json
    from s2i_lib.config import load_config
    from s2i_lib.steps.sen import train_sen_step

    if not device.cpu_has_bf16_units():
        sys.exit("this CPU has no bf16 units (amx_bf16 / avx512_bf16): bf16 would be emulated; nothing to compare")
    # bf16 in the SEN's training only: "auto" with sen_training as its one bf16 part
    device.AUTO_BF16_PARTS = frozenset({"sen_training"})

    cfg = load_config(args.profile, ["sen.text_baseline=false"])
    inputs = {step: pipeline.ensure(step, cfg, args.runs_dir) for step in ("data", "speech")}
    rows = []
    for seed in args.seeds:
        for label, setting in (("fp32", "fp32"), ("bf16", "auto")):
            run_cfg = dataclasses.replace(cfg, seed=seed, precision=setting)
            out = Path(args.out_dir) / f"sen_{label}_seed{seed}"
            shutil.rmtree(out, ignore_errors=True)   # a fresh training, not a resume
            out.mkdir(parents=True)
            t0 = time.perf_counter()
            figures = train_sen_step(run_cfg, out, inputs)
            row = {"seed": seed, "precision": label, "wall_s": round(time.perf_counter() - t0, 1),
                   "train_s": figures["speech_train_time_s"]}
            for group, res in figures["test"].items():
                row.update({f"{group}: {k}": res[k] for k in FIGURES})
            rows.append(row)
            print(json.dumps(row), flush=True)

    import pandas as pd
    table = pd.DataFrame(rows).set_index(["precision", "seed"]).sort_index()
    print(f"\n{args.profile}: SEN test figures by precision and seed")
    print(table.T.to_string())
    path = REPO / "outputs" / "benchmarks" / "bench_sen_quality.json"
    atomic_write_json(path, {"profile": args.profile, "machine": cpu_description(), "load_average": load_average(),
                             "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
