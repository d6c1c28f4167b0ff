"""The GAN trainer on N processes, a check of the distributed machinery (``gan/distributed.py``)::

    torchrun --nproc_per_node=N -m s2i_lib.torchrun_gan --profile smoke --out DIR --synthetic 32

``--synthetic`` trains on random images and embeddings (the tests use it). The pipeline's ``gan``
step trains on one process; to train on several, hand ``GanTrainer`` the ``DistContext`` that
``init_distributed`` returns, as ``main`` below does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch.distributed as dist

from .artifacts import atomic_write_json
from .config import load_config
from .gan.distributed import init_distributed, state_digest
from .gan.trainer import GanTrainer, synthetic_training_set, tiny_feature_extractor


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="The GAN trainer on N processes under torchrun")
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
