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


def select_device(name: str = "auto", precision_setting: str | None = None) -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``. GPU-only speed-ups switch on only on a GPU.
    ``precision_setting`` (the config's ``precision``): see ``set_precision``; None keeps it."""
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
    if precision_setting is not None:
        set_precision(precision_setting, device)
    return device


# ------------------------------------------------------------------------------- precision
# `precision: auto | fp32 | bf16` (config). bf16 autocast with channels_last runs convolutions and
# matrix products on a CPU's bf16 matrix units (AMX-BF16, AVX-512-BF16) through oneDNN, several
# times faster than fp32; on a CPU without them bf16 is emulated and slower. `auto` therefore uses
# bf16 where the hardware has it, and only in the parts where it was measured to pay off
# (benchmarks/bench_precision.py; docs/precision.md has the figures and the reasons).
PRECISIONS = ("auto", "fp32", "bf16")
# backbone: the frozen image networks (SEN feature caching, the RS extractor, the IS classifier,
# R-precision); fid: the TF Inception of FID / KID / mAP; sen_training: the SEN's training
# iterations; sen_embedding: the SEN's encoders at inference (exported embeddings, the demo);
# gan: GAN training; generation: the generator at inference; attribute_judge: its CNN
PARTS = ("backbone", "fid", "sen_training", "sen_embedding", "gan", "generation", "attribute_judge")
# Measured on an Intel Xeon with AMX-BF16 (docs/precision.md): gan, generation and sen_training are
# faster in bf16 and learn the same (two seeds each); fid fails the 0.5 % FID agreement (1.05 % on
# blurred images); sen_embedding is slower in bf16 (its GRU's small per-step products gain less
# than the casts around them cost); the attribute judge gains <= 1.6x and is the evaluation's
# instrument; the backbone's bf16 features are 9 % off its fp32 ones
AUTO_BF16_PARTS = frozenset({"gan", "generation", "sen_training"})
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16_units(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bf16 matrix units (Linux: a flag of /proc/cpuinfo); False where this
    cannot be read (macOS, Windows): fp32 is then the safe choice."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in CPU_BF16_FLAGS)


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 has hardware behind it on ``device``: a GPU that supports it, or a CPU with bf16 units."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_bf16_units()


class Precision:
    """The process's precision choice: ``uses_bf16(part)`` and ``autocast(part)`` for each part.

    Set once by ``select_device`` from the config (``set_precision``); until then every part runs
    in fp32, so a library call outside a pipeline step computes exactly as before.
    """

    def __init__(self, setting: str = "fp32", device_type: str = "cpu", fast: bool = False):
        if setting not in PRECISIONS:
            raise ValueError(f"precision {setting!r}: expected one of {', '.join(PRECISIONS)}")
        self.setting, self.device_type, self.fast = setting, device_type, fast

    def uses_bf16(self, part: str) -> bool:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        if self.setting == "auto":
            return self.fast and part in AUTO_BF16_PARTS
        return self.setting == "bf16"

    def autocast(self, part: str, device_type: str | None = None):
        """bf16 autocast for ``part`` if it runs in bf16, else a no-op context."""
        return torch.autocast(device_type or self.device_type, dtype=torch.bfloat16,
                              enabled=self.uses_bf16(part))

    def memory_format(self, part: str) -> torch.memory_format:
        """channels_last with bf16: oneDNN's fast bf16 convolutions and pooling want it."""
        return torch.channels_last if self.uses_bf16(part) else torch.contiguous_format


_precision = Precision()


def set_precision(setting: str, device: torch.device) -> Precision:
    """Make ``setting`` the process's precision on ``device`` (what ``select_device`` does)."""
    global _precision
    _precision = Precision(setting, device.type, bf16_is_fast(device))
    return _precision


def precision() -> Precision:
    """The process's precision (fp32 until ``select_device``/``set_precision`` says otherwise)."""
    return _precision
