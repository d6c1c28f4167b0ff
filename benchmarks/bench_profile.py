"""Where a training iteration's time goes, in fp32 and in bf16: torch.profiler over a few iterations.

    python benchmarks/bench_profile.py gan                      # paper architecture, batch 8, with the RS
    python benchmarks/bench_profile.py gan --profile default --batch 32
    python benchmarks/bench_profile.py gan --no-rs
    python benchmarks/bench_profile.py sen                      # paper SEN, batch 32, cached image features

``bench_gan.py`` and ``bench_sen.py`` give the ratios; this says why a ratio is what it is. ``gan``
builds the trainer of ``bench_gan.py`` (synthetic images, the profile's RS extractor with random
weights, the RS on cached views as in the pipeline); ``sen`` the "ours" iteration of
``bench_sen.py`` (the paper's speech encoder on 3 s utterances, image features from a cache). Each
runs one warm-up and ``--iterations`` profiled iterations per precision and prints, per precision,
the time per iteration of each group of operators (convolutions forward and backward, recurrent
layers, batch norm, matrix products, copies between dtypes and layouts, the rest) and the ten
costliest operators. Writes ``outputs/benchmarks/bench_profile_<model>_<profile>.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_description, load_average  # noqa: E402

# operator name (aten::, without the prefix) -> group, by prefix; the first match wins
GROUPS = (("convolution backward", ("convolution_backward", "mkldnn_convolution_backward")),
          ("convolution", ("conv2d", "conv1d", "convolution", "mkldnn_convolution", "_convolution")),
          ("recurrent (GRU)", ("gru", "_thnn_fused_gru", "rnn", "mkldnn_rnn")),
          ("batch norm", ("batch_norm", "native_batch_norm", "_batch_norm")),
          ("matrix products", ("addmm", "mm", "bmm", "linear", "matmul")),
          ("dtype and layout copies", ("to", "_to_copy", "copy_", "contiguous", "clone")),
          ("optimizer", ("_foreach", "adam")))


def group_of(name: str) -> str:
    op = name.removeprefix("aten::")
    for group, prefixes in GROUPS:
        if any(op == p or op.startswith(p + "_") or op.startswith(p) and p.startswith("_foreach")
               for p in prefixes):
            return group
    return "other"


def profile_steps(step, setting: str, iterations: int) -> dict:
    """``step()`` once to warm up, then ``iterations`` times under torch.profiler, at ``setting``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from s2i_lib.device import set_precision

    set_precision(setting, torch.device("cpu"))
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iterations):
            step()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        groups[group_of(e.key)] += e.self_cpu_time_total
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    return {"s_per_iteration": round(total_us / 1e6 / iterations, 3),
            "groups_s_per_iteration": {g: round(t / 1e6 / iterations, 3)
                                       for g, t in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_operators": [{"op": e.key, "s_per_iteration": round(e.self_cpu_time_total / 1e6 / iterations, 3),
                               "calls_per_iteration": e.count // iterations} for e in top]}


def gan_steps(args, tmp: Path, result: dict) -> dict:
    """setting -> a function running one GAN training iteration (its own trainer per precision)."""
    import bench_gan

    from s2i_lib.config import load_config
    from s2i_lib.gan import GanBatchSampler

    full = load_config(args.profile)
    cfg = dataclasses.replace(full.gan, relation_supervisor=not args.no_rs)
    embed = full.sen.embed_dim
    extractor = None
    if not args.no_rs:
        extractor, result["rs_extractor"] = bench_gan._rs_extractor(args.profile, tmp)
    data = bench_gan._training_set(cfg, embed, max(args.batch, 8), extractor,
                                   views=full.sen.feature_views if extractor is not None else 0)
    steps = {}
    for setting in ("fp32", "bf16"):
        trainer = bench_gan._trainer(cfg, embed, setting, tmp, extractor)
        sampler = GanBatchSampler(data, args.batch, cfg.z_dim, cfg.condition_dim, seed=args.batch)
        steps[setting] = lambda t=trainer, s=sampler: t.train_step(s.next_batch())
    return steps


def sen_steps(args, tmp: Path, result: dict) -> dict:
    """setting -> a function running one paper-SEN training iteration, as bench_sen's "ours"."""
    import numpy as np
    import torch

    import bench_sen

    g = torch.Generator().manual_seed(args.batch)
    feats = torch.randn(args.batch, bench_sen.FRAMES, bench_sen.N_MELS, generator=g)
    lengths = torch.full((args.batch,), bench_sen.FRAMES)
    labels = torch.randint(0, bench_sen.N_CLASSES, (args.batch,), generator=g)
    image = torch.from_numpy(np.random.default_rng(0).random((args.batch, 2048), dtype=np.float32))
    result["sen"] = "paper speech encoder (BiGRU 512 x 2), 3 s utterances, cached 2048-d image features"
    steps = {}
    for setting in ("fp32", "bf16"):
        it = bench_sen.SenIteration(bench_sen.SpeechEncoder.from_config(bench_sen.PAPER_SEN, bench_sen.N_MELS))
        steps[setting] = lambda it=it: it.step(feats, lengths, image, labels)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("gan", "sen"))
    parser.add_argument("--profile", default="paper_cub", help="(gan) whose GAN and RS extractor")
    parser.add_argument("--batch", type=int, default=None, help="default: 8 (gan), 32 (sen)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--no-rs", action="store_true", help="(gan) without the relation supervisor")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.batch = args.batch or (8 if args.model == "gan" else 32)
    if args.batch < 1 or args.iterations < 1 or args.threads < 1:
        parser.error("--batch, --iterations and --threads must be at least 1")

    import torch

    from s2i_lib.artifacts import atomic_write_json

    torch.set_num_threads(args.threads)
    result = {"model": args.model, "profile": args.profile if args.model == "gan" else "paper_cub",
              "batch": args.batch, "iterations": args.iterations, "threads": args.threads,
              "machine": cpu_description(), "torch": torch.__version__, "load_average_before": load_average()}
    if args.model == "gan":
        result["relation_supervisor"] = not args.no_rs
    with tempfile.TemporaryDirectory() as tmp:
        steps = (gan_steps if args.model == "gan" else sen_steps)(args, Path(tmp), result)
        for setting in ("fp32", "bf16"):
            result[setting] = profile_steps(steps[setting], setting, args.iterations)
    what = f"{args.model}, {result['profile']}, batch {args.batch}"
    if args.model == "gan":
        what += ", with the RS" if not args.no_rs else ", no RS"
    for setting in ("fp32", "bf16"):
        r = result[setting]
        print(f"\n{what}, {setting}: {r['s_per_iteration']} s per iteration (profiled)")
        for g, t in r["groups_s_per_iteration"].items():
            print(f"  {g:<26} {t:7.3f} s")
        for op in r["top_operators"]:
            print(f"    {op['op']:<40} {op['s_per_iteration']:7.3f} s  x{op['calls_per_iteration']}")
    name = f"bench_profile_{args.model}_{result['profile']}{'_no_rs' if args.no_rs else ''}_b{args.batch}.json"
    path = REPO / "outputs" / "benchmarks" / name
    atomic_write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
