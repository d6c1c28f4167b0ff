"""What the benchmarks record about the machine they ran on: the CPU (and its bf16 units), the
load, and how busy the cores were, so that a figure can be traced to the machine that made it;
and the rotation of modes between rounds that their side-by-side timings share."""
from __future__ import annotations

import os


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def busy_cpu_seconds() -> float | None:
    """CPU time (all cores, all processes) spent busy since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_description() -> dict:
    """The CPU's model name and whether it has the bf16 matrix units the bf16 figures rely on."""
    from s2i_lib.device import CPU_BF16_FLAGS, cpu_has_bf16_units

    model, flags = "unknown", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu_model": model, "bf16_units": cpu_has_bf16_units(),
            **{f: f in flags for f in CPU_BF16_FLAGS}}


def rotated(modes, r: int) -> list:
    """The modes in the order of round ``r``: rotating it spreads any first-of-the-round (or
    last-of-the-round) effect over every mode instead of always charging the same one."""
    r %= len(modes)
    return list(modes[r:]) + list(modes[:r])
