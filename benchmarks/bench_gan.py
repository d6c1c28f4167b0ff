"""Speed and memory of the GAN stage: training iterations and generation, fp32 against bf16.

    python benchmarks/bench_gan.py            # about 6-8 minutes on 2 quiet CPU cores
    python benchmarks/bench_gan.py --quick    # one repetition each (a smoke check)
    python benchmarks/bench_gan.py --parts default   # re-run one part, keep the others

Every ratio printed here compares two things measured in this run, on this machine, in the same
process: the modes of a comparison alternate iteration by iteration (their order rotating every
round), with the same warm-up round and the same repetitions (median of 3, minimum recorded), so a
load change on a shared machine hits them alike. The precision is the library's process-wide
policy (``s2i_lib.device.set_precision``): a ``GanTrainer`` reads it when it is built, and the
frozen backbones read it at every call, so the benchmark sets it before building each trainer and
again before each of its iterations.

(a) ``paper``: the PAPER architecture (stages 64/128/256, gf 64, df 64, z 100, condition 128,
    embeddings 1024), one full training iteration (G forward, 3 D updates, RS update, G update,
    EMA) at batch 8 with the relation supervisor on a frozen Inception-v3 (random weights, the
    paper's SEN image encoder: 256 px resized to 299, Mixed_7c mean, Linear 2048 -> 1024,
    ``s2i_lib.sen.image_encoder.SenImageFeatures``):
    - ``as_original``: our trainer doing the original's work, fp32: the RS's real, similar and
      wrong images through the extractor every iteration (no cached views) and, through
      ``OriginalExtractorPasses``, as many extractor passes as the original makes (10 per
      iteration);
    - ``ours_fp32``: the trainer as the library runs it with ``gan.rs_cached_views``: the real,
      similar and wrong features from cached views (``GanTrainingSet(rs_features=...)``), one
      extractor pass on the generated images; fp32;
    - ``ours_bf16``: the same under ``set_precision("bf16")`` (bf16 autocast + channels_last).
    Target: as_original / ours_bf16 >= 3. Then fp32 against bf16 without the RS, and generation
    (the EMA G's forward, eval, batch 8, 256 px) fp32 against bf16.
(b) ``default``: the DEFAULT profile (configs/default.yaml: 16/32/64, gf 32, df 32, embeddings 256,
    D projection, batch 32) with the RS on its SEN backbone (EfficientNet-Lite0 at the profile's
    ``sen.backbone_input_size`` 128 px) and cached views, fp32 against bf16 (target: >= 1.5);
    the same without the RS; generation (batch 64) fp32 against bf16.
(c) ``memory``: the peak resident memory of a batch-8 paper iteration with the RS, each mode in a
    process of its own (one warm-up and one timed iteration): a process's peak is its own, and the
    alternating processes of (a) hold three trainers at once.

Generation runs under ``precision().autocast("generation")``, as ``s2i_lib.inference`` does, on the
EMA G in the layout the trainer keeps it (channels_last in bf16) and, for bf16, also in the default
layout, which is how ``inference.load_generator`` returns a generator.

Beside these, as context only: the original code's (xinshengwang/S2IGAN) times and memory measured
on another machine (an AMD EPYC without AVX-512); no ratio is computed from them. Writes
``outputs/benchmarks/bench_gan.json``. Before each part the driver waits (at most ``--max-wait``
s) for the cores to be idle, and it records how much CPU time *other* processes used while the
part ran (``other_processes_cpu_share``: 0 = the machine was ours, 0.5 = one of 2 cores was busy
with something else). The alternating paper part holds three paper-size trainers (about 10 GB).
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

from machine import busy_cpu_seconds, cpu_description, load_average, rotated  # noqa: E402

# The original code, seconds and GB, measured on ANOTHER machine (2 cores of an AMD EPYC without
# AVX-512). Context only: no ratio or target is computed from them.
ORIGINAL_OTHER_MACHINE = {
    "label": "original code, measured on an AMD EPYC (no AVX-512), another machine: context only",
    "iteration_s": {"4": 15.3, "8": 26.0, "24": 92.5},
    "iteration_without_rs_s": {"4": 9.9, "8": 17.4, "24": 55.3},
    "generation_batch8_256px_s": 2.1,
    "peak_memory_batch8_gb": 5.9,
}
PAPER_MODES = ("as_original", "ours_fp32", "ours_bf16")
MODE_PRECISION = {"as_original": "fp32", "ours_fp32": "fp32", "ours_bf16": "bf16"}
PARTS = ("paper", "default", "memory")
PHASES = {"paper": ["paper"], "default": ["default"],
          "memory": [f"memory:{m}" for m in PAPER_MODES]}
# (result key, baseline mode, compared mode, minimum ratio baseline time / compared time)
TARGETS = {"paper_rs_as_original_vs_ours_bf16": 3.0, "default_rs_fp32_vs_bf16": 1.5}
PAPER_BATCH = 8
BUSY_SHARE = 0.1      # other processes' CPU share above which a phase's times are flagged
GENERATION_BATCH = {"paper": 8, "default": 64}
# The original runs the RS's image encoder (Inception-v3) 10 times per iteration on B images:
# train_MDnet on real, similar, fake and wrong (4), train_Gnet on the fake and the real image of
# each of the 3 stages (6; only the last stage's fake feature enters the loss). Our trainer
# without cached views makes 4 of them: real + similar + wrong in one 3B-image pass without
# gradient, and the fake once, with its graph (reused by the G update). So 6 are missing.
ORIGINAL_EXTRACTOR_PASSES = 10
OUR_EXTRACTOR_PASSES_UNCACHED = 4






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
def _summary(times: list[float] | str) -> dict:
    """Median, minimum and count of a mode's times; a string is the error the mode failed with."""
    if isinstance(times, str):
        return {"failed": times}
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "reps": len(times)}


def _set_precision(setting: str) -> None:
    import torch

    from s2i_lib.device import set_precision
    set_precision(setting, torch.device("cpu"))


def _rs_extractor(profile: str, tmp: Path):
    """The pipeline's RS feature extractor, ``s2i_lib.sen.image_encoder.SenImageFeatures`` (the profile's
    frozen SEN backbone at its configured input size, the SEN projection, unit norm), with a
    randomly initialised projection and, for the torchvision Inception, random weights (the real
    file cannot be downloaded here; same architecture, same cost)."""
    import torch

    from s2i_lib.config import load_config
    from s2i_lib.sen.image_encoder import SenImageFeatures
    from s2i_lib.sen import ImageEncoder, backbone_spec
    from s2i_lib.sen.backbones import TORCHVISION_INCEPTION_FILE

    cfg = load_config(profile)
    if cfg.sen.backbone == "inception_v3_torchvision":
        from torchvision.models import inception_v3
        torch.manual_seed(0)
        net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
        torch.save(net.state_dict(), tmp / TORCHVISION_INCEPTION_FILE)
        cfg = load_config(profile, [f"sen.backbone_weights={tmp / TORCHVISION_INCEPTION_FILE}"])
    feat_dim = backbone_spec(cfg.sen.backbone).feat_dim
    torch.manual_seed(0)
    encoder = ImageEncoder(feat_dim, cfg.sen.embed_dim)
    torch.save({"state_dict": encoder.state_dict(), "feat_dim": feat_dim, "embed_dim": cfg.sen.embed_dim},
               tmp / "image_encoder.pt")
    extractor = SenImageFeatures(tmp, cfg.sen)
    return extractor, (f"SenImageFeatures: {cfg.sen.backbone} at {extractor.backbone.spec.input_size} px "
                       f"+ Linear {feat_dim} -> {cfg.sen.embed_dim}")


def _original_extractor_passes(extractor):
    """``extractor`` making the original's number of passes per iteration (see
    ``ORIGINAL_EXTRACTOR_PASSES``): on every call with gradient enabled - the trainer's one call on
    the generated images - it also runs itself 6 times without gradient on B images of the same
    size, so that an iteration makes 3 (real+similar+wrong) + 1 (fake) + 6 = 10 B-image passes.
    The original's extra passes on the 64 and 128 px stages are resized to the same 299 px
    input, so same-size inputs cost the same; that they run here without gradient (the original
    built graphs for them) makes ``as_original`` if anything cheaper than the original."""
    import torch
    import torch.nn as nn

    extra = ORIGINAL_EXTRACTOR_PASSES - OUR_EXTRACTOR_PASSES_UNCACHED

    class OriginalExtractorPasses(nn.Module):
        def __init__(self):
            super().__init__()
            self.extractor = extractor

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if torch.is_grad_enabled():
                with torch.no_grad():
                    for _ in range(extra):
                        self.extractor(images.detach())
            return self.extractor(images)

    return OriginalExtractorPasses()


def _training_set(cfg, embed_dim: int, n_images: int, extractor=None, views: int = 0):
    """Synthetic images, classes and embeddings; with ``extractor``, also the RS features of
    ``views`` cached views of every image: the extractor's projection of random backbone
    features, as ``SenImageFeatures.of_backbone_features`` turns the SEN step's cached views into
    them in the pipeline (their values do not change the cost)."""
    import numpy as np

    from s2i_lib.gan import GanTrainingSet, synthetic_training_set

    data = synthetic_training_set(n_images, cfg.stage_sizes, embed_dim)
    if extractor is None:
        return data
    feat_dim = extractor.backbone.feat_dim
    backbone_feats = np.random.default_rng(0).random((n_images, views, feat_dim), dtype=np.float32)
    return GanTrainingSet(data.images, data.class_ids, data.embeddings, cfg.stage_sizes,
                          rs_features=extractor.of_backbone_features(backbone_feats))


def _trainer(cfg, embed_dim: int, setting: str, tmp: Path, extractor=None):
    """A GanTrainer built under precision ``setting`` (it reads the policy in its constructor)."""
    from s2i_lib.gan import GanTrainer

    _set_precision(setting)
    return GanTrainer(cfg, embed_dim, tempfile.mkdtemp(dir=tmp), feature_extractor=extractor,
                      progress=False)


def _alternate_steps(runs: dict, batch: int, reps: int, warmup: int) -> dict[str, list[float] | str]:
    """Alternating training iterations: ``runs`` maps a mode to (trainer, data, precision). Each
    mode draws its batches from its own sampler with the same seed (the same images and noise).
    A mode whose iteration raises is dropped, its error in place of its times: a library bug in
    one mode must not hide the other modes' figures."""
    from s2i_lib.gan import GanBatchSampler

    samplers = {m: GanBatchSampler(d, batch, t.cfg.z_dim, t.cfg.condition_dim, seed=batch)
                for m, (t, d, _) in runs.items()}
    times: dict[str, list[float] | str] = {m: [] for m in runs}
    for r in range(warmup + reps):
        for mode in rotated([m for m in runs if not isinstance(times[m], str)], r):
            trainer, _, setting = runs[mode]
            _set_precision(setting)
            b = samplers[mode].next_batch()   # drawing the batch is data loading: not timed
            t0 = time.perf_counter()
            try:
                trainer.train_step(b)
            except Exception as e:  # noqa: BLE001 - recorded, reported as FAILED in the table
                times[mode] = f"{type(e).__name__}: {e}"
                print(f"    {mode} FAILED: {times[mode]}", file=sys.stderr, flush=True)
                continue
            if r >= warmup:
                times[mode].append(time.perf_counter() - t0)
            print(f"    round {r}{' (warm-up)' if r < warmup else ''} {mode}: "
                  f"{time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    return times


def _alternate_generation(generators: dict, batch: int, embed_dim: int, reps: int) -> dict[str, list[float]]:
    """Alternating EMA G forwards (eval, inference mode, ``autocast("generation")`` as
    ``s2i_lib.inference`` runs it): ``generators`` maps a label to (generator, precision)."""
    import torch

    from s2i_lib.device import precision

    g = torch.Generator().manual_seed(0)
    some = next(iter(generators.values()))[0]
    z, e = torch.randn(batch, some.z_dim, generator=g), torch.randn(batch, embed_dim, generator=g)
    times: dict[str, list[float]] = {k: [] for k in generators}
    with torch.inference_mode():
        for r in range(1 + reps):   # round 0: warm-up
            for label in rotated(list(generators), r):
                gen, setting = generators[label]
                _set_precision(setting)
                gen.eval()
                t0 = time.perf_counter()
                with precision().autocast("generation"):
                    gen(z, e)
                if r >= 1:
                    times[label].append(time.perf_counter() - t0)
    return times


def _generation_variants(fp32_trainer, bf16_trainer) -> dict:
    """The EMA G of each trainer in the layout the trainer keeps (channels_last in bf16), and a
    bf16 copy in the default layout (what ``inference.load_generator`` returns)."""
    import copy

    import torch

    default_layout = copy.deepcopy(bf16_trainer.generator_ema).to(memory_format=torch.contiguous_format)
    return {"fp32": (fp32_trainer.generator_ema, "fp32"), "bf16": (bf16_trainer.generator_ema, "bf16"),
            "bf16_default_layout": (default_layout, "bf16")}


def _comparison(times: dict[str, list[float] | str], baseline: str, compared: str) -> dict:
    failed = [f"{m}: {times[m]}" for m in (baseline, compared) if isinstance(times[m], str)]
    if failed:
        return {"baseline": baseline, "compared": compared, "failed": "; ".join(failed)}
    b, c = statistics.median(times[baseline]), statistics.median(times[compared])
    return {"baseline": baseline, "compared": compared, "baseline_s": round(b, 3),
            "compared_s": round(c, 3), "ratio": round(b / c, 2)}


def run_paper(tmp: Path, quick: bool, out: dict) -> None:
    import dataclasses
    import gc

    from s2i_lib.artifacts import PeakMemory
    from s2i_lib.config import load_config
    from s2i_lib.gan import count_parameters

    reps = 1 if quick else 3
    full = load_config("paper_cub")
    cfg = dataclasses.replace(full.gan, relation_supervisor=True)
    embed = full.sen.embed_dim
    extractor, what = _rs_extractor("paper_cub", tmp)
    out["rs_extractor"] = what
    out["rs_cached_views"] = full.sen.feature_views
    t0 = time.perf_counter()
    uncached = _training_set(cfg, embed, 8)
    cached = _training_set(cfg, embed, 8, extractor, views=full.sen.feature_views)
    runs = {"as_original": (_trainer(cfg, embed, "fp32", tmp, _original_extractor_passes(extractor)),
                            uncached, "fp32"),
            "ours_fp32": (_trainer(cfg, embed, "fp32", tmp, extractor), cached, "fp32"),
            "ours_bf16": (_trainer(cfg, embed, "bf16", tmp, extractor), cached, "bf16")}
    out["init_s"] = round(time.perf_counter() - t0, 1)
    with PeakMemory() as mem:
        times = _alternate_steps(runs, PAPER_BATCH, reps, warmup=1)
    out["peak_rss_gb_three_trainers"] = round(mem.peak / 2**30, 2)
    out["rs"] = {m: _summary(times[m]) for m in PAPER_MODES}
    out["rs"]["comparisons"] = {
        "as_original_vs_ours_fp32": _comparison(times, "as_original", "ours_fp32"),
        "as_original_vs_ours_bf16": _comparison(times, "as_original", "ours_bf16"),
        "ours_fp32_vs_ours_bf16": _comparison(times, "ours_fp32", "ours_bf16")}
    trainer = runs["ours_fp32"][0]
    out["parameters_m"] = {"G": round(count_parameters(trainer.generator) / 1e6, 2),
                           **{f"D{s}": round(count_parameters(d) / 1e6, 2)
                              for s, d in zip(cfg.stage_sizes, trainer.discriminators)},
                           "RS": round(count_parameters(trainer.relation) / 1e6, 3)}

    gens = _generation_variants(runs["ours_fp32"][0], runs["ours_bf16"][0])
    gtimes = _alternate_generation(gens, GENERATION_BATCH["paper"], embed, reps)
    out["generation"] = _generation_result(gtimes, GENERATION_BATCH["paper"])
    del runs, gens, trainer
    gc.collect()

    # without the RS: fp32 against bf16 (no as_original: the original's other costs are not
    # reproduced here; its own time on the other machine is in the context line)
    cfg_no_rs = dataclasses.replace(cfg, relation_supervisor=False)
    runs = {s: (_trainer(cfg_no_rs, embed, s, tmp), uncached, s) for s in ("fp32", "bf16")}
    times = _alternate_steps(runs, PAPER_BATCH, reps, warmup=1)
    out["no_rs"] = {s: _summary(times[s]) for s in runs}
    out["no_rs"]["comparisons"] = {"fp32_vs_bf16": _comparison(times, "fp32", "bf16")}


def _generation_result(times: dict[str, list[float]], batch: int) -> dict:
    return {"batch": batch, **{k: _summary(v) for k, v in times.items()},
            "comparisons": {"fp32_vs_bf16": _comparison(times, "fp32", "bf16"),
                            "fp32_vs_bf16_default_layout": _comparison(times, "fp32", "bf16_default_layout")}}


def run_default(tmp: Path, quick: bool, out: dict) -> None:
    import dataclasses
    import gc

    from s2i_lib.artifacts import PeakMemory
    from s2i_lib.config import load_config

    reps = 1 if quick else 3
    full = load_config("default")
    embed = full.sen.embed_dim
    extractor, what = _rs_extractor("default", tmp)
    out.update(rs_extractor=what, rs_cached_views=full.sen.feature_views, batch_size=full.gan.batch_size,
               profile_iterations=full.gan.iterations, d_projection=full.gan.d_projection)
    for rs in (True, False):
        cfg = dataclasses.replace(full.gan, relation_supervisor=rs)
        data = _training_set(cfg, embed, 64, extractor if rs else None, views=full.sen.feature_views)
        runs = {s: (_trainer(cfg, embed, s, tmp, extractor if rs else None), data, s)
                for s in ("fp32", "bf16")}
        with PeakMemory() as mem:
            times = _alternate_steps(runs, cfg.batch_size, reps, warmup=1)
        key = "rs" if rs else "no_rs"
        out[key] = {s: _summary(times[s]) for s in runs}
        for s in runs:
            if "median_s" in out[key][s]:
                out[key][s]["profile_training_min_estimate"] = round(
                    cfg.iterations * out[key][s]["median_s"] / 60, 1)
        out[key]["comparisons"] = {"fp32_vs_bf16": _comparison(times, "fp32", "bf16")}
        out[key]["peak_rss_gb_both_trainers"] = round(mem.peak / 2**30, 2)
        if rs:
            gens = _generation_variants(runs["fp32"][0], runs["bf16"][0])
            gtimes = _alternate_generation(gens, GENERATION_BATCH["default"], embed, reps=1 if quick else 3)
            out["generation"] = _generation_result(gtimes, GENERATION_BATCH["default"])
            out["generation"]["images_per_s"] = {k: round(GENERATION_BATCH["default"] / statistics.median(v), 1)
                                                 for k, v in gtimes.items()}
            del gens
        del runs
        gc.collect()


def run_memory(mode: str, tmp: Path, quick: bool, out: dict) -> None:
    """One mode of the paper part alone in this process: its peak memory is its own."""
    import dataclasses

    from s2i_lib.artifacts import PeakMemory
    from s2i_lib.config import load_config

    full = load_config("paper_cub")
    cfg = dataclasses.replace(full.gan, relation_supervisor=True)
    embed = full.sen.embed_dim
    extractor, _ = _rs_extractor("paper_cub", tmp)
    setting = MODE_PRECISION[mode]
    if mode == "as_original":
        data, ext = _training_set(cfg, embed, 8), _original_extractor_passes(extractor)
    else:
        data, ext = _training_set(cfg, embed, 8, extractor, views=full.sen.feature_views), extractor
    with PeakMemory() as mem:
        trainer = _trainer(cfg, embed, setting, tmp, ext)
        times = _alternate_steps({mode: (trainer, data, setting)}, PAPER_BATCH, reps=1, warmup=0 if quick else 1)
    out.update(mode=mode, peak_rss_gb=round(mem.peak / 2**30, 2), iteration=_summary(times[mode]))


def run_phase(phase: str, quick: bool, threads: int) -> dict:
    import torch

    from s2i_lib.artifacts import PeakMemory

    torch.set_num_threads(threads)
    out: dict = {"load_average_start": load_average()}
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
        if phase == "paper":
            run_paper(Path(tmp), quick, out)
        elif phase == "default":
            run_default(Path(tmp), quick, out)
        else:
            run_memory(phase.split(":", 1)[1], Path(tmp), quick, out)
    out["peak_rss_gb_phase"] = round(mem.peak / 2**30, 2)
    out["load_average_end"] = load_average()
    return out


# ------------------------------------------------------------------------------------- driver
def comparisons_table(result: dict) -> list[dict]:
    """Every comparison of the run, flat: what, both sides, the ratio, its target and whether met."""
    rows = []

    def add(what: str, comp: dict, target_key: str | None = None) -> None:
        row = {"what": what, **comp}
        if target_key is not None:
            # a comparison that could not be measured has not met its target
            row.update(target=TARGETS[target_key], met="ratio" in comp and comp["ratio"] >= TARGETS[target_key])
        rows.append(row)

    p, d = result.get("paper"), result.get("default")
    if p:
        c = p["rs"]["comparisons"]
        add(f"paper, batch {PAPER_BATCH}, RS: iteration", c["as_original_vs_ours_fp32"])
        add(f"paper, batch {PAPER_BATCH}, RS: iteration", c["as_original_vs_ours_bf16"],
            "paper_rs_as_original_vs_ours_bf16")
        add(f"paper, batch {PAPER_BATCH}, RS: iteration", c["ours_fp32_vs_ours_bf16"])
        add(f"paper, batch {PAPER_BATCH}, no RS: iteration", p["no_rs"]["comparisons"]["fp32_vs_bf16"])
        for k in ("fp32_vs_bf16", "fp32_vs_bf16_default_layout"):
            add(f"paper generation, batch {p['generation']['batch']}", p["generation"]["comparisons"][k])
    if d:
        add(f"default, batch {d['batch_size']}, RS: iteration", d["rs"]["comparisons"]["fp32_vs_bf16"],
            "default_rs_fp32_vs_bf16")
        add(f"default, batch {d['batch_size']}, no RS: iteration", d["no_rs"]["comparisons"]["fp32_vs_bf16"])
        for k in ("fp32_vs_bf16", "fp32_vs_bf16_default_layout"):
            add(f"default generation, batch {d['generation']['batch']}", d["generation"]["comparisons"][k])
    return rows


def print_report(result: dict) -> None:
    rows = result["comparisons"]
    print("\nGAN benchmark: every ratio below was measured in this run, both sides alternating in one "
          "process (ratio = baseline time / compared time)")
    print(f"  {'comparison':34s} {'baseline':>20s} {'s':>7s} {'compared':>20s} {'s':>7s} {'ratio':>7s}  "
          f"{'target':7s} met")
    for r in rows:
        target = f">= {r['target']:g}" if "target" in r else ""
        met = ("met" if r["met"] else "NOT met") if "target" in r else ""
        if "failed" in r:
            print(f"  {r['what']:34s} {r['baseline']:>20s} {'':7s} {r['compared']:>20s} {'':7s} "
                  f"{'FAILED':>7s}  {target:7s} {met}   ({r['failed'][:100]})")
            continue
        print(f"  {r['what']:34s} {r['baseline']:>20s} {r['baseline_s']:7.2f} {r['compared']:>20s} "
              f"{r['compared_s']:7.2f} {'x' + format(r['ratio'], '.2f'):>7s}  {target:7s} {met}")
    mem = result.get("memory", {})
    if mem:
        print(f"  peak memory, paper batch {PAPER_BATCH} with RS, each mode in its own process (GB): "
              + ", ".join(f"{m} {mem[m]['peak_rss_gb']}" + (" (iteration FAILED)" if "failed" in mem[m]["iteration"]
                                                          else "") for m in PAPER_MODES if m in mem))
    d = result.get("default")
    if d:
        print(f"  default profile ({d['profile_iterations']} iterations) estimate with the RS: "
              + ", ".join(f"{s} {d['rs'][s].get('profile_training_min_estimate', '-')} min" for s in ("fp32", "bf16"))
              + "; generation " + ", ".join(f"{k} {v} images/s" for k, v in d["generation"]["images_per_s"].items()))
    o = ORIGINAL_OTHER_MACHINE
    print(f"  {o['label']}: iteration batch 8 {o['iteration_s']['8']} s "
          f"({o['iteration_without_rs_s']['8']} s without the RS), generation batch 8 "
          f"{o['generation_batch8_256px_s']} s, peak memory batch 8 {o['peak_memory_batch8_gb']} GB")
    print("  CPU share taken by other processes during each phase: "
          + ", ".join(f"{ph} {info.get('other_processes_cpu_share')}"
                      for ph, info in result["phases"].items()))
    busy = [ph for ph, info in result["phases"].items()
            if (info.get("other_processes_cpu_share") or 0) > BUSY_SHARE]
    if busy:
        # torch's threads wait for each other at every operation: one of them descheduled by
        # another process stalls all of them, so a shared core slows an iteration several times
        print(f"  WARNING: other processes used more than {BUSY_SHARE:.0%} of the CPU during {', '.join(busy)}: "
              f"those times are not trustworthy; re-run on a quiet machine (--parts ...)")
    print(f"  CPU: {result['machine']['cpu_model']}; bf16 units: {result['machine']['bf16_units']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition each")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--max-wait", type=float, default=60,
                    help="seconds to wait for a quiet machine before each part (default 60)")
    ap.add_argument("--parts", default=",".join(PARTS),
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
    kept = [p for p in PARTS if p not in parts and p in old]
    result: dict = {"machine": {"platform": platform.platform(), **cpu_description(), "cpus": cpu_count(),
                                "torch_threads": threads, "load_average_start": load_average()},
                    "versions": package_versions(), "quick": args.quick,
                    "method": "modes of a comparison alternate within one process, order rotating "
                              "per round; same warm-up (1 round) and repetitions; median (min recorded)",
                    "original_other_machine": ORIGINAL_OTHER_MACHINE, "targets": TARGETS,
                    **{p: old[p] for p in kept},
                    "phases": {ph: info for ph, info in old.get("phases", {}).items()
                               if any(ph in PHASES[p] for p in kept)}}
    # the alternating paper part holds two precisions' convolution primitives at once: a larger
    # oneDNN / ideep primitive cache (default 1024 each) keeps one mode from evicting another's
    env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "4096", "LRU_CACHE_CAPACITY": "4096"}
    for part in parts:
        for phase in PHASES[part]:
            waited = wait_for_quiet(0 if args.quick else args.max_wait)
            print(f"[{phase}] (waited {waited} s for a quiet machine; load {load_average()})",
                  file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--phase", phase, "--threads", str(threads)]
            cmd += ["--quick"] if args.quick else []
            busy0, t0 = busy_cpu_seconds(), time.perf_counter()
            ours0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # the phase's progress (stderr) goes straight to ours; its stdout is its JSON result
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
            ours1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            busy1, wall = busy_cpu_seconds(), time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
            info = {"waited_for_quiet_s": waited, "ran_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "wall_s": round(wall, 1)}
            if busy0 is not None and busy1 is not None:
                ours = (ours1.ru_utime - ours0.ru_utime) + (ours1.ru_stime - ours0.ru_stime)
                others = max(0.0, (busy1 - busy0) - ours)
                info["other_processes_cpu_share"] = round(others / (wall * cpu_count()), 3)
            result["phases"][phase] = info
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            if part == "memory":
                result.setdefault("memory", {})[data["mode"]] = data
            else:
                result[part] = data

    result["comparisons"] = comparisons_table(result)
    result["targets_met"] = {r["what"] + f": {r['baseline']} vs {r['compared']}": r["met"]
                             for r in result["comparisons"] if "met" in r}
    result["machine"]["load_average_end"] = load_average()
    result["parts_run_now"] = parts
    result["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(args.out, result)
    print_report(result)
    print(f"  load average start/end: {result['machine']['load_average_start']} / "
          f"{result['machine']['load_average_end']}; {result['wall_time_s']} s; -> {args.out}")


if __name__ == "__main__":
    main()
