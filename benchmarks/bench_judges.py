"""The two judges of the evaluation: how accurate they are on held-out real images, and what they cost.

    python benchmarks/bench_judges.py                     # default profile: ~9 min on one thread
    python benchmarks/bench_judges.py --profile smoke     # a quick check of the script
    python benchmarks/bench_judges.py --skip is           # the attribute judge only

(a) the attribute judge (``s2i_lib.evaluation.attribute_judge``) of the profile's toy dataset at its
    image size, trained from scratch: accuracy per attribute on held-out rendered images (random
    attribute combinations) and on the dataset's real test-split images (unseen species), clean and
    degraded as generated images are (blur, half resolution, noise);
(b) the IS classifier (``s2i_lib.evaluation.inception_score``) of the test classes: accuracy on
    the held-out half of each test class's real images, with the counts per split.
Target for both: >= 95 % on held-out real images (every attribute, for the judge).

Reads ``runs/<profile>/data`` (built by ``python -m s2i_lib data --profile P``), writes the judges
and the classifier's feature cache under ``outputs/benchmarks/judges/`` and the numbers to
``outputs/benchmarks/judges.json``. Times are wall clock and CPU time (this process and its
rendering workers): on a shared or ``nice``d run the wall time measures the neighbours, the CPU
time the work. The load average, the niceness and the thread count are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from s2i_lib.artifacts import atomic_write_json, package_versions  # noqa: E402

TARGET = 0.95


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def fresh(path: Path) -> Path:
    """A judge file is a cache: remove it so that the benchmark measures the training."""
    centre = path.with_name(path.stem + "_heldout_centre.npy")   # the IS classifier's second cache
    for p in (path, path.with_suffix(".json"), centre, centre.with_suffix(".json")):
        p.unlink(missing_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "judges.json"))
    parser.add_argument("--skip", choices=("judge", "is"), action="append", default=[],
                        help="leave out a part (may be repeated)")
    args = parser.parse_args()

    from s2i_lib import pipeline
    from s2i_lib.config import load_config
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.data.torch_datasets import image_cache
    from s2i_lib.evaluation import train_attribute_judge, train_is_classifier
    from s2i_lib.evaluation.attribute_judge import degraded_accuracy

    cfg = load_config(args.profile)
    data_dir = pipeline.step_dir("data", cfg, args.runs_dir)
    index = read_dataset(data_dir)
    size = cfg.data.image_size
    work = Path(args.out).parent / "judges"
    test = index.split("test")
    test_images = image_cache(index, "test", size)   # already cached by the sen step: read only
    out: dict = {"profile": args.profile, "dataset": index.name, "image_size": size, "seed": cfg.seed,
                 "target": TARGET, "torch_threads": torch.get_num_threads(),
                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "niceness": os.nice(0),
                 "cpu_count": os.cpu_count(), "load_average_before": load_average(),
                 "machine": platform.platform(), "versions": package_versions()}

    if "judge" not in args.skip:
        t0, c0 = time.perf_counter(), cpu_seconds()
        judge = train_attribute_judge(index.name, size, cfg.seed,
                                      fresh(work / f"attribute_judge_{index.name}_{size}_{cfg.seed}.pt"))
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        real = judge.accuracy(test_images, [r.attributes for r in test])
        rendered = judge.report["heldout_rendered"]
        out["attribute_judge"] = {
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            **{k: judge.report[k] for k in ("n_images", "n_heldout", "epochs", "render_s", "render_cpu_s",
                                            "train_s", "train_cpu_s", "threads", "loss_curve")},
            "heldout_rendered": rendered, "real_test_split": real,
            "min_real_attribute_accuracy": min(real["per_attribute"].values()),
            "meets_target": bool(min(real["per_attribute"].values()) >= TARGET
                                 and min(rendered["per_attribute"].values()) >= TARGET)}
        print(f"attribute judge ({index.name}, {size} px): {wall:.0f} s wall, {cpu:.0f} s CPU")
        print(f"  {'attribute':<14}{'held-out rendered':>19}{'real test split':>17}")
        for a in real["per_attribute"]:
            print(f"  {a:<14}{rendered['per_attribute'][a]:>19.3f}{real['per_attribute'][a]:>17.3f}")
        print(f"  {'overall':<14}{rendered['overall']:>19.3f}{real['overall']:>17.3f}")
        # the same real images, degraded as generated images are: where the judge itself fails
        degraded = degraded_accuracy(judge, test_images, [r.attributes for r in test], seed=cfg.seed)
        out["attribute_judge"]["real_test_split_degraded"] = degraded
        print("  real test split, degraded: " + ", ".join(
            f"{kind} {acc['overall']:.3f}" for kind, acc in degraded.items()))

    if "is" not in args.skip:
        t0, c0 = time.perf_counter(), cpu_seconds()
        clf = train_is_classifier(test_images, [r.class_id for r in test], cfg.seed,
                                  fresh(work / f"is_classifier_{index.name}_{size}_{cfg.seed}.pt"),
                                  fresh(work / f"is_features_{index.name}_{size}_{cfg.seed}.npy"))
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rep = clf.report
        out["is_classifier"] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), **rep,
                                "meets_target": bool(rep["heldout_accuracy"] >= TARGET)}
        c = rep["counts"]
        print(f"IS classifier ({rep['n_classes']} test classes, {rep['backbone']} at {rep['input_size']} px): "
              f"{wall:.0f} s wall, {cpu:.0f} s CPU (features {rep['features_s']:.0f} s)")
        print(f"  held-out accuracy {rep['heldout_accuracy']:.3f} on {c['heldout_images']} real images "
              f"({c['heldout_per_class'][0]}-{c['heldout_per_class'][1]} per class); trained on "
              f"{c['train_images']} images x views = {c['train_views']} rows; train accuracy {rep['train_accuracy']:.3f}")

    out["load_average_after"] = load_average()
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    print(json.dumps({k: out[k]["meets_target"] for k in ("attribute_judge", "is_classifier") if k in out}))


if __name__ == "__main__":
    main()
