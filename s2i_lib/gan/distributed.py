"""Multi-process training with ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU).

``torchrun --nproc_per_node=N -m s2i_lib.gan.distributed --profile smoke --out DIR --synthetic 32``
runs the GAN trainer on N processes. Each rank trains on its share of every batch (the batch is
drawn identically on every rank, then sliced), gradients are averaged by DDP, and only rank 0
writes checkpoints, samples and curves. ``--synthetic`` trains on random images and embeddings
(a check of the machinery, used by the tests); the pipeline wires the real data through
``GanTrainer`` directly, with ``init_distributed`` from here.

This module is deliberately not imported by ``s2i_lib.gan`` so that ``python -m`` can run it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from ..artifacts import atomic_write_json
from ..config import load_config
from ..device import cpu_count, select_device, set_precision
from .trainer import DistContext, GanTrainer, synthetic_training_set, tiny_feature_extractor


def init_distributed(device_name: str = "auto", precision_setting: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT) and pick this rank's device; without torchrun, a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), select_device(device_name, precision_setting)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        select_device(str(device), precision_setting)
    else:
        device = torch.device("cpu")
        set_precision(precision_setting, device)
        # the processes share the machine's cores: do not let each one use all of them
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, cpu_count() // local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world, local_rank), device


def state_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. gan.batch_size=8")
    ap.add_argument("--out", required=True, help="output folder (checkpoints, samples, curves)")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--synthetic", type=int, required=True, metavar="N_IMAGES",
                    help="train on N random images (4 classes) with random embeddings")
    ap.add_argument("--embed-dim", type=int, default=32)
    ap.add_argument("--digest", action="store_true",
                    help="every rank writes digest_rank<r>.json (hashes of its final weights)")
    args = ap.parse_args(argv)

    cfg = load_config(args.profile, args.set)
    ctx, device = init_distributed(cfg.device, cfg.precision)
    try:
        data = synthetic_training_set(args.synthetic, cfg.gan.stage_sizes, args.embed_dim, seed=cfg.seed)
        extractor = tiny_feature_extractor(seed=cfg.seed) if cfg.gan.relation_supervisor else None
        trainer = GanTrainer(cfg.gan, args.embed_dim, args.out, feature_extractor=extractor,
                             device=device, seed=cfg.seed, dist_context=ctx, progress=ctx.is_main)
        figures = trainer.train(data, args.iterations)
        if args.digest:
            digests = {name: state_digest(m) for name, m in trainer.modules_for_digest().items()}
            atomic_write_json(Path(args.out) / f"digest_rank{ctx.rank}.json",
                              {"rank": ctx.rank, "world_size": ctx.world_size, "digests": digests})
        if ctx.is_main:
            print(json.dumps({k: figures[k] for k in ("iterations", "iterations_per_s")}))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
