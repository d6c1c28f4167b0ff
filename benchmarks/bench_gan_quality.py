"""How fast the generator learns to draw what was said: a short GAN run, judged at each snapshot.

    python benchmarks/bench_gan_quality.py                                  # default profile, 400 iterations
    python benchmarks/bench_gan_quality.py --set gan.d_projection=false --name concat_only
    python benchmarks/bench_gan_quality.py --profile smoke --iterations 20  # a smoke check
    python benchmarks/bench_gan_quality.py --iterations 2000 --snapshots 5 --name long
    python benchmarks/bench_gan_quality.py --iterations 4000 --snapshots 10 --name long  # extends it
    python benchmarks/bench_gan_quality.py --oracle --iterations 2000 --snapshots 5     # one-hot condition
    python benchmarks/bench_gan_quality.py --gan-seed 1 --name default_seed1           # another GAN seed
    python benchmarks/bench_gan_quality.py --fid                                       # + FID per snapshot

Trains the ``gan`` step of a profile (with ``--set`` overrides) for ``--iterations`` into
``outputs/experiments/<name>/`` (resumed if it is there already), with an EMA snapshot every
``--iterations / --snapshots`` iterations, then scores every snapshot with the attribute judge of
notebook 04 on the same seeded draw of ``--n`` training and ``--n`` test captions (training voices):
``reports.evaluation.drawn_by_snapshot``. The data, speech and sen steps are built if missing.
What it costs is in the README's cost table (``--iterations 400``: about 5 min of training in bf16;
the default's full ``gan`` step, 1600 iterations, 18 min 47 s in ``make run``). A run extended with more ``--iterations``
continues from its last checkpoint, and every snapshot is judged again (on the same captions).
Writes ``outputs/experiments/<name>/quality.json``.

``--gan-seed`` trains the GAN with another seed (its initialisation, noise, batch order and
augmentation) on the same data, speech and SEN steps (the RS's cached views too), judged on the
same captions: the run-to-run spread of a result.

``--oracle`` conditions the generator on what each written caption mentions, as one-hot vectors
(``reports.evaluation.mention_onehots``), instead of the speech embeddings, and judges it on the
same: the best condition a caption can give. If the oracle draws no better, the speech embedding
is not what limits the drawing (on the full ToyBirds scenes, now the `toybirds` profile, it drew less: 0.333 of the mentioned
attributes on test captions after 2000 iterations, 28.7 min, against 0.415; docs/experiments.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--snapshots", type=int, default=2, help="EMA snapshots to judge (evenly spaced)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, e.g. gan.kl_coeff=0.5 (may be repeated)")
    parser.add_argument("--oracle", action="store_true",
                        help="condition on one-hots of the captions' mentioned attributes, not on speech")
    parser.add_argument("--name", default=None, help="run folder name (default: from the overrides)")
    parser.add_argument("--n", type=int, default=500, help="captions judged per split")
    parser.add_argument("--runs-dir", default=None, help="where the profile's data/speech/sen steps are")
    parser.add_argument("--out-dir", default=str(REPO / "outputs" / "experiments"))
    parser.add_argument("--fid", action="store_true",
                        help="also the FID of every snapshot against the real test images (~1 min each)")
    parser.add_argument("--gan-seed", type=int, default=None,
                        help="train the GAN with this seed (default: the profile's); the upstream steps keep theirs")
    args = parser.parse_args()
    if args.iterations < 1 or args.snapshots < 1:
        parser.error("--iterations and --snapshots must be at least 1")
    if args.gan_seed is not None and not 0 <= args.gan_seed < 2**32:
        parser.error(f"--gan-seed {args.gan_seed}: must be in 0..2**32-1")

    from s2i_lib import pipeline
    from s2i_lib.artifacts import atomic_write_json
    from s2i_lib.config import load_config
    from s2i_lib.data.build import TOY_DATASETS, toy_module
    from s2i_lib.data.layout import read_dataset
    from s2i_lib.evaluation.protocol import cached_attribute_judge
    from s2i_lib.steps.profile import evaluation_settings
    from s2i_lib.reports.evaluation import drawn_by_snapshot, fid_by_snapshot, mention_onehots
    from s2i_lib.steps.gan import train_gan_step

    every = max(1, args.iterations // args.snapshots)
    seed = [] if args.gan_seed is None else [f"gan.seed={args.gan_seed}"]
    cfg = load_config(args.profile, args.overrides + seed + [f"gan.iterations={args.iterations}",
                                                      f"gan.checkpoint_every={every}", f"gan.sample_every={every}"])
    if cfg.data.dataset not in TOY_DATASETS:
        parser.error(f"the attribute judge needs a toy dataset; profile {args.profile!r} uses {cfg.data.dataset}")
    name = args.name or "_".join([args.profile] + (["oracle"] if args.oracle else [])
                                 + [o.replace("gan.", "").replace("=", "-") for o in args.overrides])
    out = Path(args.out_dir) / name
    inputs = {step: pipeline.ensure(step, cfg, args.runs_dir) for step in ("data", "speech", "sen")}
    cached_attribute_judge(evaluation_settings(cfg), inputs["data"], cfg.gan.stage_sizes[-1])   # the eval step's judge

    embeddings = None
    if args.oracle:  # every written caption of every training image, in dataset order
        attributes = toy_module(cfg.data.dataset).ATTRIBUTES
        embeddings = np.stack([mention_onehots(list(r.mentions), attributes)
                               for r in read_dataset(inputs["data"]).split("train")])
    t0 = time.perf_counter()
    figures = train_gan_step(cfg, out, inputs, embeddings=embeddings)
    train_s = time.perf_counter() - t0
    table = drawn_by_snapshot(cfg, out, args.runs_dir, n=args.n, oracle=args.oracle)
    fids = fid_by_snapshot(cfg, out, args.runs_dir) if args.fid and not args.oracle else {}
    print(f"\n{args.profile}, {'oracle, ' if args.oracle else ''}{' '.join(args.overrides) or 'no overrides'}: "
          f"{args.iterations} iterations "
          f"in {train_s / 60:.1f} min ({figures['iterations_per_s']} it/s this run)")
    print(table.to_string())
    if fids:
        print("FID against the real test images:", ", ".join(f"{i}: {v}" for i, v in fids.items()))
    atomic_write_json(out / "quality.json", {
        "profile": args.profile, "overrides": args.overrides, "gan_seed": cfg.seed if cfg.gan.seed is None else cfg.gan.seed, "oracle": args.oracle, "iterations": args.iterations,
        "train_wall_s": round(train_s, 1), "iterations_per_s": figures["iterations_per_s"], "n_captions": args.n,
        "drawn": [{"iteration": int(i), "captions": c, **row} for (i, c), row in table.iterrows()],
        "fid": {str(i): v for i, v in fids.items()}})
    print(f"wrote {out / 'quality.json'}")


if __name__ == "__main__":
    main()
