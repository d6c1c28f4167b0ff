"""Multi-process training with ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU).

Under ``torchrun`` each rank trains on its share of every batch (the batch is drawn identically on
every rank, then sliced), gradients are averaged by DDP, and only rank 0 writes checkpoints,
samples and curves. ``init_distributed`` joins the process group and picks the rank's device;
``state_digest`` lets the tests check that every rank ends with the same weights. The command
line that runs the trainer on N processes is ``s2i_lib.torchrun_gan``.
"""
from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
import torch.nn as nn

from ..device import cpu_count, select_device, set_precision
from .trainer import DistContext


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
