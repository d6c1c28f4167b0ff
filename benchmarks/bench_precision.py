"""fp32 against bf16 autocast (+ channels_last), part by part, in one run on this machine: the
measurements behind ``device.AUTO_BF16_PARTS`` (which parts ``precision: auto`` runs in bf16).

    python benchmarks/bench_precision.py            # about 4 minutes on 2 CPU cores
    python benchmarks/bench_precision.py --quick    # one repetition, fewer images (a smoke check)

Each part is timed in both precisions back to back, with the same inputs, warm-up and repetitions
(median of the repetitions; the minimum is recorded too), and its bf16 output is compared with
the fp32 one:
- ``backbone``: EfficientNet-Lite0 on 64-px images at 128 px (the default profile's SEN feature
  cache, the RS extractor, the IS classifier and R-precision use it);
- ``fid``: the TF Inception-v3 of FID / KID / mAP on 64-px images at 299 px; and FID computed
  from bf16 features against FID from fp32 features on the same real images (ToyBirds renders
  against other renders, blurred and noisy copies): the issue's bar is 0.5 %;
- ``sen_training``, ``sen_embedding``: one training iteration of the default profile's SEN (batch
  64, 3 s utterances, BiGRU 128, embedding 256, cached image features), and speech-embedding
  extraction;
- ``generation``: the default profile's generator (16/32/64 px, gf 32) drawing 64 images;
- ``attribute_judge``: the evaluation's attribute judge on 512 images (an untrained net of the
  same architecture: the time is the same; the agreement is of its argmaxes).
GAN training is measured by ``benchmarks/bench_gan.py`` (fp32 and bf16 in one run).

Writes ``outputs/benchmarks/bench_precision.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine import cpu_description  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from s2i_lib.artifacts import atomic_write_json, package_versions  # noqa: E402
from s2i_lib.device import AUTO_BF16_PARTS, PARTS, precision, set_precision  # noqa: E402

CPU = torch.device("cpu")


def timed(fn, reps: int, warmup: int = 1) -> tuple[dict, object]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "reps": reps}, out


def compare(part: str, fn, reps: int, agreement, training: bool = False) -> dict:
    """``fn()`` under fp32 then bf16 (the policy set for each), timed; ``agreement(fp32_out,
    bf16_out)`` -> dict of how close the outputs are. Without ``training``, under no_grad."""
    if part.split()[0] not in PARTS:   # the label's first word names the part `auto` decides on
        raise ValueError(f"{part!r}: the first word must be a part of s2i_lib.device.PARTS {PARTS}")
    row = {}
    outs = {}
    for setting in ("fp32", "bf16"):
        set_precision(setting, CPU)
        with torch.enable_grad() if training else torch.no_grad():
            row[setting], outs[setting] = timed(fn, reps)
    row["speedup"] = round(row["fp32"]["median_s"] / row["bf16"]["median_s"], 2)
    row.update(agreement(outs["fp32"], outs["bf16"]))
    row["auto_uses_bf16"] = part.split()[0] in AUTO_BF16_PARTS
    print(f"  {part:16s} fp32 {row['fp32']['median_s']:7.3f} s   bf16 {row['bf16']['median_s']:7.3f} s   "
          f"x{row['speedup']:4.2f}   " + "  ".join(f"{k} {v}" for k, v in row.items()
                                                   if k not in ("fp32", "bf16", "speedup", "auto_uses_bf16")))
    return row


def rel_l2(a, b) -> dict:
    a, b = torch.as_tensor(np.asarray(a, np.float32)), torch.as_tensor(np.asarray(b, np.float32))
    return {"relative_l2_difference": round(float((a - b).norm() / a.norm()), 5)}


def toy_images(n: int, seed: int) -> np.ndarray:
    from s2i_lib.evaluation.attribute_judge import random_attribute_classes, render_attribute_set
    images, _ = render_attribute_set("toybirds", random_attribute_classes("toybirds", n, seed), 64, seed,
                                     progress=False)
    return images


def bench_backbone(images: np.ndarray, reps: int) -> dict:
    from s2i_lib.evaluation.fid import images_to_model_input
    from s2i_lib.config import load_config
    from s2i_lib.sen.training import load_configured_backbone
    net = load_configured_backbone(load_config("default").sen)   # EfficientNet-Lite0 at 128 px
    x = images_to_model_input(images[:256])
    return compare("backbone", lambda: net(x).numpy(), reps, rel_l2)


def bench_fid(real: np.ndarray, other: np.ndarray, n_time: int, reps: int) -> dict:
    from s2i_lib.evaluation.attribute_judge import degrade
    from s2i_lib.evaluation.fid import fid_backbone, fid_from_features, inception_features
    net = fid_backbone()
    x = real[:n_time]
    row = compare("fid (features)", lambda: inception_features(x, net), reps, rel_l2)
    # the baseline as the library ran it before: the packaged TorchScript in fp32 (its blocks force
    # NCHW, see s2i_lib/sen/backbones.py), timed in this run beside the others
    from s2i_lib.sen.backbones import SPECS, FrozenBackbone, tf_inception_path
    script = FrozenBackbone(SPECS["tf_inception"], torch.jit.load(str(tf_inception_path()), map_location="cpu"),
                            lambda n, v: n(v))
    set_precision("fp32", CPU)
    with torch.no_grad():
        row["torchscript_fp32"], _ = timed(lambda: inception_features(x, script), reps)
    row["speedup_bf16_vs_torchscript_fp32"] = round(row["torchscript_fp32"]["median_s"] / row["bf16"]["median_s"], 2)
    print(f"    the packaged TorchScript in fp32 (the earlier path): {row['torchscript_fp32']['median_s']:.3f} s; "
          f"bf16 is x{row['speedup_bf16_vs_torchscript_fp32']} faster (target >= 3)")
    sets = {"other renders": other, "the same, blurred": degrade(real, "box blur 5x5"),
            "the same + noise": degrade(real, "noise std 20/255")}
    feats = {}
    for setting in ("fp32", "bf16"):
        set_precision(setting, CPU)
        feats[setting] = {name: inception_features(v, net) for name, v in {"real": real, **sets}.items()}
    fids = {}
    for name in sets:
        f32 = fid_from_features(feats["fp32"]["real"], feats["fp32"][name])
        f16 = fid_from_features(feats["bf16"]["real"], feats["bf16"][name])
        fids[name] = {"fp32": round(f32, 3), "bf16": round(f16, 3),
                      "relative_difference": round(abs(f16 - f32) / f32, 5)}
        print(f"    FID real vs {name:18s} fp32 {f32:8.3f}  bf16 {f16:8.3f}  "
              f"difference {abs(f16 - f32) / f32 * 100:.3f} %")
    row["fid_agreement"] = fids
    row["fid_within_0.5_percent"] = all(v["relative_difference"] <= 0.005 for v in fids.values())
    return row


def bench_sen(reps: int) -> dict:
    """One default-profile SEN iteration (speech side: the library's encoder; image side: cached
    features through the projection) under the library's autocast, as sen/training.py runs it."""
    from s2i_lib.config import load_config
    from s2i_lib.sen import ImageEncoder, SpeechEncoder, distinctive_loss, make_classifier, matching_loss
    s = load_config("default").sen
    batch, frames, classes = s.batch_size, 301, 135
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, 40, generator=g)
    lengths = torch.full((batch,), frames)
    labels = torch.randint(0, classes, (batch,), generator=g)
    image_feats = torch.randn(batch, 1280, generator=g)
    torch.manual_seed(0)
    speech = SpeechEncoder.from_config(s, 40)
    image = ImageEncoder(1280, s.embed_dim)
    clf = make_classifier(s.embed_dim, classes)
    opt = torch.optim.Adam(list(speech.parameters()) + image.trainable_parameters() + list(clf.parameters()),
                           lr=1e-4)

    def step():
        with precision().autocast("sen_training"):
            sp, im = speech(feats, lengths).float(), image(image_feats).float()
        loss = matching_loss(im, sp, labels, gamma=10.0) + distinctive_loss(clf, im, sp, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    row = compare("sen_training (iteration)", step, reps,
                  lambda a, b: {"loss_fp32": round(a, 4), "loss_bf16": round(b, 4)}, training=True)
    speech.eval()

    def extract():
        with torch.no_grad(), precision().autocast("sen_embedding"):
            return speech(feats, lengths).float().numpy()

    row["extraction"] = compare("sen_embedding (extraction)", extract, reps, rel_l2)
    return row


def bench_generation(reps: int) -> dict:
    from s2i_lib.config import load_config
    from s2i_lib.gan.generator import Generator
    from s2i_lib.inference import noise
    cfg = load_config("default").gan
    torch.manual_seed(0)
    gen = Generator.from_config(cfg, 256).eval()
    z, eps = noise(64, cfg.z_dim, cfg.condition_dim, 0)
    emb = torch.nn.functional.normalize(torch.randn(64, 256, generator=torch.Generator().manual_seed(1)), dim=1)

    def draw():
        with precision().autocast("generation"):
            return gen(z, emb, eps)[0][-1].float().numpy()

    return compare("generation", draw, reps, rel_l2)


def bench_attribute_judge(images: np.ndarray, reps: int) -> dict:
    from s2i_lib.data.build import toy_module
    from s2i_lib.evaluation.attribute_judge import AttributeJudge, AttributeJudgeNet, part_names, read_parts
    torch.manual_seed(0)
    net = AttributeJudgeNet(toy_module("toybirds").ATTRIBUTES, read_parts("toybirds"), part_names("toybirds"))
    judge = AttributeJudge(net, "toybirds", 64, {})
    x = images[:512]

    def agree(a, b) -> dict:
        same = np.mean([pa == pb for pa, pb in zip(a, b)])
        return {"predictions_identical": round(float(same), 4)}

    row = compare("attribute_judge", lambda: judge.predict(x), reps, agree)
    # its training (the eval step trains it once per dataset: 4000 images x 10 epochs)
    import tempfile
    from s2i_lib.evaluation.attribute_judge import train_attribute_judge
    train = {}
    for setting in ("fp32", "bf16"):
        set_precision(setting, CPU)
        with tempfile.TemporaryDirectory() as tmp:
            report = train_attribute_judge("toybirds", 64, 0, Path(tmp) / "judge.pt", n_images=512, epochs=2,
                                           n_heldout=256, progress=False).report
        train[setting] = {"train_s": report["train_s"],
                          "heldout_mean_accuracy": round(float(np.mean(list(report["heldout_rendered"]["per_attribute"].values()))), 4)}
    train["speedup"] = round(train["fp32"]["train_s"] / train["bf16"]["train_s"], 2)
    print(f"  attribute_judge training (512 images x 2 epochs): fp32 {train['fp32']['train_s']} s, "
          f"bf16 {train['bf16']['train_s']} s, x{train['speedup']}")
    row["training"] = train
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "bench_precision.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = 1 if args.quick else 3
    n = 64 if args.quick else 500
    print(f"CPU: {cpu_description()}, {args.threads} threads, torch {torch.__version__}")
    real, other = toy_images(n, 0), toy_images(n, 1)
    before = precision()
    try:
        parts = {
            "backbone": bench_backbone(real, reps),
            "fid": bench_fid(real, other, 50, reps),
            "sen": bench_sen(reps),
            "generation": bench_generation(reps),
            "attribute_judge": bench_attribute_judge(np.concatenate([real, other])[:512], reps),
        }
    finally:
        set_precision(before.setting, CPU)
    result = {**cpu_description(), "threads": args.threads,
              "quick": args.quick, "images": n, "versions": package_versions(), "parts": parts,
              "auto_bf16_parts": sorted(AUTO_BF16_PARTS)}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
