"""Speed and memory of the GAN stage: training iterations and generation.

    python benchmarks/bench_gan.py            # about 4-8 minutes on 2 CPU cores
    python benchmarks/bench_gan.py --quick    # one repetition each (a smoke check)
    python benchmarks/bench_gan.py --parts default   # re-run one part, keep the others

(a) the PAPER architecture (stages 64/128/256, gf 64, df 64, z 100, condition 128, embeddings
    1024): one full training iteration (G forward, 3 D updates, RS update, G update, EMA) at batch
    4 and 8 with the relation supervisor on a frozen Inception-v3 (random weights, the same cost as
    the SEN image encoder: 256 px resized to 299, Mixed_7c mean, Linear 2048 -> 1024), and at batch
    8 without the RS; generation (EMA G, eval, G forward) at batch 8, 256 px; peak resident memory
    of the process that ran the batch-4 and batch-8 RS iterations.
(b) the DEFAULT profile (16/32/64, gf 32, df 32, embeddings 256, batch 32) with the RS on the
    default SEN backbone (EfficientNet-Lite0, 224 px) and without the RS, and its generation speed.

Each part runs in its own process, so that its peak memory is its own. Beside our figures: the
original code's (xinshengwang/S2IGAN) on this machine, and the targets. Writes
``outputs/benchmarks/bench_gan.json``. The machine may be shared: the load average is recorded and
every time is the median of its repetitions (the minimum too). Before each part the driver waits
(at most ``--max-wait`` s) for the cores to be idle, and it records how much CPU time *other*
processes used while the part ran (``other_processes_cpu_share``: 0 = the
machine was ours, 0.5 = one of 2 cores was busy with something else).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The original code on this machine (2 CPU cores), seconds.
ORIGINAL = {
    "iteration_s": {"4": 15.3, "8": 26.0, "24": 92.5},
    "iteration_without_rs_s": {"4": 9.9, "8": 17.4, "24": 55.3},
    "generation_batch8_256px_s": 2.1,
    "peak_memory_batch8_gb": 5.9,
}
PARTS = ("paper_rs", "paper_no_rs", "default")
TARGETS = {"iteration_speedup": 2.0, "iteration_batch8_s": 13.0, "generation_speedup": 1.5,
           "peak_memory_gb": 5.9}


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


def wait_for_quiet(max_wait: float, threshold: float = 0.15, window: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine's cores are less than ``threshold`` busy
    over ``window`` s (from /proc/stat; the load average lags by minutes). Returns the wait."""
    t0 = time.perf_counter()
    ncpu = os.cpu_count() or 1
    while time.perf_counter() - t0 < max_wait:
        b0 = busy_cpu_seconds()
        time.sleep(window)
        b1 = busy_cpu_seconds()
        if b0 is None or b1 is None or (b1 - b0) / (window * ncpu) < threshold:
            break
    return round(time.perf_counter() - t0, 1)


# ------------------------------------------------------------------------- in the subprocess
def _extractor(kind: str, embed_dim: int):
    """The RS feature extractor the pipeline will pass: frozen SEN backbone + projection + L2."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Encoder(nn.Module):
        def __init__(self, backbone: nn.Module, feat_dim: int):
            super().__init__()
            self.backbone, self.projection = backbone, nn.Linear(feat_dim, embed_dim)

        def forward(self, x):  # no torch.no_grad: the RS term trains G through it
            return F.normalize(self.projection(self.backbone(x)), dim=1)

    torch.manual_seed(0)
    try:
        from s2i_lib.sen.backbones import TORCHVISION_INCEPTION_FILE, load_backbone
        if kind == "inception":
            from torchvision.models import inception_v3
            net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
            folder = Path(tempfile.mkdtemp())
            torch.save(net.state_dict(), folder / TORCHVISION_INCEPTION_FILE)
            bb = load_backbone("inception_v3_torchvision", folder / TORCHVISION_INCEPTION_FILE)
        else:
            bb = load_backbone("efficientnet_lite0")
        return Encoder(bb, bb.feat_dim), f"s2i_lib.sen FrozenBackbone {bb.spec.name} + Linear -> {embed_dim}"
    except (ImportError, FileNotFoundError, AttributeError) as e:  # the SEN module changed or is absent
        from torchvision.models import inception_v3
        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        net.fc = nn.Identity()

        class Resize(nn.Module):
            def forward(self, x):
                return net(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
        return Encoder(Resize(), 2048), f"torchvision inception_v3 stand-in ({type(e).__name__}: {e})"


def _time_steps(trainer, data, batch: int, reps: int, warmup: int) -> list[float]:
    from s2i_lib.gan import GanBatchSampler

    cfg = trainer.cfg
    sampler = GanBatchSampler(data, batch, cfg.z_dim, cfg.condition_dim, seed=batch)
    times = []
    for r in range(warmup + reps):
        t0 = time.perf_counter()
        trainer.train_step(sampler.next_batch())
        if r >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def _time_generation(generator, batch: int, embed_dim: int, reps: int) -> list[float]:
    import torch

    g = torch.Generator().manual_seed(0)
    z, e = torch.randn(batch, generator.z_dim, generator=g), torch.randn(batch, embed_dim, generator=g)
    generator.eval()
    times = []
    with torch.inference_mode():
        generator(z, e)
        for _ in range(reps):
            t0 = time.perf_counter()
            generator(z, e)
            times.append(time.perf_counter() - t0)
    return times


def _summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "reps": len(times)}


def run_phase(phase: str, quick: bool, threads: int) -> dict:
    import dataclasses

    import torch

    from s2i_lib.artifacts import PeakMemory
    from s2i_lib.config import load_config
    from s2i_lib.gan import GanTrainer, count_parameters, synthetic_training_set

    torch.set_num_threads(threads)
    out: dict = {"load_average_start": load_average()}
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
        if phase in ("paper_rs", "paper_no_rs"):
            rs = phase == "paper_rs"
            cfg = dataclasses.replace(load_config("paper_cub").gan, relation_supervisor=rs)
            extractor, what = _extractor("inception", 1024) if rs else (None, None)
            t0 = time.perf_counter()
            trainer = GanTrainer(cfg, 1024, tmp, feature_extractor=extractor, progress=False)
            out["init_s"] = round(time.perf_counter() - t0, 1)
            out["rs_extractor"] = what
            data = synthetic_training_set(8, cfg.stage_sizes, 1024)
            for b in ((4, 8) if rs else (8,)):
                out[f"iteration_batch{b}"] = _summary(_time_steps(trainer, data, b, reps, warmup=1))
                print(f"  {phase:12s} batch {b}: {out[f'iteration_batch{b}']['median_s']:.2f} s/iter",
                      file=sys.stderr, flush=True)
            if rs:
                out["peak_rss_gb_training"] = round(mem.peak / 2**30, 2)
                gen = _time_generation(trainer.generator_ema, 8, 1024, reps=1 if quick else 3)
                out["generation_batch8"] = _summary(gen)
                out["generation_images_per_s"] = round(8 / statistics.median(gen), 2)
                out["parameters_m"] = {
                    "G": round(count_parameters(trainer.generator) / 1e6, 2),
                    **{f"D{s}": round(count_parameters(d) / 1e6, 2)
                       for s, d in zip(cfg.stage_sizes, trainer.discriminators)},
                    "RS": round(count_parameters(trainer.relation) / 1e6, 3)}
        else:  # default profile, with the RS (on the default SEN backbone) and without
            full = load_config("default")
            embed = full.sen.embed_dim
            data = None
            for rs in (True, False):
                cfg = dataclasses.replace(full.gan, relation_supervisor=rs)
                extractor, what = _extractor("efficientnet", embed) if rs else (None, None)
                trainer = GanTrainer(cfg, embed, tmp, feature_extractor=extractor, progress=False)
                data = data or synthetic_training_set(64, cfg.stage_sizes, embed)
                times = _time_steps(trainer, data, cfg.batch_size, reps=1 if quick else 3, warmup=1)
                key = "with_rs" if rs else "without_rs"
                out[key] = {"rs_extractor": what, f"iteration_batch{cfg.batch_size}": _summary(times),
                            "iterations_per_s": round(1 / statistics.median(times), 3),
                            "profile_training_min_estimate":
                                round(cfg.iterations * statistics.median(times) / 60, 1)}
                print(f"  default {key:10s} batch {cfg.batch_size}: {statistics.median(times):.3f} s/iter",
                      file=sys.stderr, flush=True)
            out["batch_size"], out["profile_iterations"] = cfg.batch_size, cfg.iterations
            gen = _time_generation(trainer.generator_ema, 64, embed, reps=3)
            out["generation_images_per_s"] = round(64 / statistics.median(gen), 1)
            out["peak_rss_gb"] = round(mem.peak / 2**30, 2)
    out["peak_rss_gb_phase"] = round(mem.peak / 2**30, 2)
    out["load_average_end"] = load_average()
    return out


# ------------------------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition each")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--max-wait", type=float, default=60,
                    help="seconds to wait for a quiet machine before each part (default 60)")
    ap.add_argument("--parts", default="paper_rs,paper_no_rs,default",
                    help="parts to run; the others are kept from an existing --out file (a re-run "
                         "of the parts a busy machine spoiled)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "bench_gan.json"))
    args = ap.parse_args()
    from s2i_lib.device import cpu_count
    threads = args.threads or cpu_count()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.quick, threads)))
        return

    from s2i_lib.artifacts import atomic_write_json, package_versions
    t_start = time.perf_counter()
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; expected some of {PARTS}")
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    missing = [ph for ph in PARTS if ph not in parts and ph not in old]
    if missing:
        raise SystemExit(f"{args.out} has no results for {missing}: run them too")
    result: dict = {"machine": {"platform": platform.platform(), "cpus": cpu_count(),
                                "torch_threads": threads, "load_average_start": load_average()},
                    "versions": package_versions(), "original": ORIGINAL, "targets": TARGETS,
                    **{ph: old[ph] for ph in PARTS if ph not in parts}}
    for phase in parts:
        waited = wait_for_quiet(0 if args.quick else args.max_wait)
        print(f"[{phase}] (waited {waited} s for a quiet machine; load {load_average()})",
              file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--phase", phase, "--threads", str(threads)]
        cmd += ["--quick"] if args.quick else []
        busy0, t0 = busy_cpu_seconds(), time.perf_counter()
        ours0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        ours1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1, wall = busy_cpu_seconds(), time.perf_counter() - t0
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
        result[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        result[phase]["waited_for_quiet_s"] = waited
        result[phase]["ran_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if busy0 is not None and busy1 is not None:
            ours = (ours1.ru_utime - ours0.ru_utime) + (ours1.ru_stime - ours0.ru_stime)
            others = max(0.0, (busy1 - busy0) - ours)
            result[phase]["other_processes_cpu_share"] = round(others / (wall * cpu_count()), 3)

    p, n = result["paper_rs"], result["paper_no_rs"]
    comp = {}
    for b in ("4", "8"):
        ours = p[f"iteration_batch{b}"]["median_s"]
        comp[f"iteration_batch{b}"] = {"ours_s": ours, "original_s": ORIGINAL["iteration_s"][b],
                                      "speedup": round(ORIGINAL["iteration_s"][b] / ours, 2)}
    ours = n["iteration_batch8"]["median_s"]
    orig = ORIGINAL["iteration_without_rs_s"]["8"]
    comp["iteration_batch8_without_rs"] = {"ours_s": ours, "original_s": orig, "speedup": round(orig / ours, 2)}
    gen = p["generation_batch8"]["median_s"]
    comp["generation_batch8"] = {"ours_s": gen, "original_s": ORIGINAL["generation_batch8_256px_s"],
                                 "speedup": round(ORIGINAL["generation_batch8_256px_s"] / gen, 2)}
    comp["peak_memory_batch8_gb"] = {"ours": p["peak_rss_gb_training"],
                                     "original": ORIGINAL["peak_memory_batch8_gb"]}
    comp["targets_met"] = {
        "iteration_2x": comp["iteration_batch8"]["speedup"] >= TARGETS["iteration_speedup"],
        "iteration_batch8_le_13s": comp["iteration_batch8"]["ours_s"] <= TARGETS["iteration_batch8_s"],
        "generation_1.5x": comp["generation_batch8"]["speedup"] >= TARGETS["generation_speedup"],
        "memory_not_higher": p["peak_rss_gb_training"] <= TARGETS["peak_memory_gb"]}
    result["comparison"] = comp
    result["machine"]["load_average_end"] = load_average()
    result["parts_run_now"] = parts
    result["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(args.out, result)

    d = result["default"]
    print("\nGAN benchmark (paper architecture 64/128/256; RS on a frozen Inception-v3 stand-in)")
    print(f"{'':34s}{'ours':>10s}{'original':>10s}{'speed-up':>10s}")
    for key, label in (("iteration_batch4", "training iteration, batch 4 (s)"),
                       ("iteration_batch8", "training iteration, batch 8 (s)"),
                       ("iteration_batch8_without_rs", "  same, without the RS (s)"),
                       ("generation_batch8", "generation, batch 8, 256 px (s)")):
        c = comp[key]
        print(f"{label:34s}{c['ours_s']:10.2f}{c['original_s']:10.2f}{c['speedup']:9.2f}x")
    print(f"{'peak memory, batch 8 (GB)':34s}{p['peak_rss_gb_training']:10.2f}"
          f"{ORIGINAL['peak_memory_batch8_gb']:10.2f}")
    print(f"paper generation: {p['generation_images_per_s']} images/s; batch 24 not run "
          f"(original {ORIGINAL['iteration_s']['24']} s, "
          f"{ORIGINAL['iteration_without_rs_s']['24']} s without RS)")
    for key in ("with_rs", "without_rs"):
        print(f"default profile (16/32/64, batch {d['batch_size']}), {key.replace('_', ' ')}: "
              f"{d[key]['iterations_per_s']} it/s ({d['profile_iterations']} iterations ~ "
              f"{d[key]['profile_training_min_estimate']} min)")
    print(f"default profile generation {d['generation_images_per_s']} images/s, peak {d['peak_rss_gb']} GB")
    print(f"targets: {comp['targets_met']}")
    print("CPU share taken by other processes during each part: "
          + ", ".join(f"{ph} {result[ph].get('other_processes_cpu_share')}"
                      for ph in PARTS))
    print(f"load average start/end: {result['machine']['load_average_start']} / "
          f"{result['machine']['load_average_end']}; {result['wall_time_s']} s; -> {args.out}")


if __name__ == "__main__":
    main()
