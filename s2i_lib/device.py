"""Device choice: CUDA when present, else the CPU with a sensible thread count."""
from __future__ import annotations

import os

import torch


def cpu_count() -> int:
    """Cores this process may use (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``. GPU-only speed-ups switch on only on a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' was asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        # torch defaults to the host's physical cores, which oversubscribes a limited container
        torch.set_num_threads(max(1, cpu_count()))
    return device


def amp_enabled(device: torch.device, requested: bool) -> bool:
    """bf16 autocast only where it helps: on a GPU that supports it."""
    return bool(requested and device.type == "cuda" and torch.cuda.is_bf16_supported())
