"""The evaluation's tables and charts for notebook 04 (the step's own table is ``evaluation/table.py``).

The functions that take ``(cfg, runs_dir)`` read a profile's run folders (``artifacts.step_dir``);
none builds a step."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..artifacts import BadFileError, load_array, read_json, step_dir
from ..data.build import toy_module
from ..data.layout import read_dataset
from ..data.torch_datasets import image_cache
from ..device import select_device
from ..gan.trainer import load_generator
from ..inference import SpeechToImage, load_speech_encoder
from ..evaluation import fid
from ..evaluation.attribute_judge import attribute_accuracy, degraded_accuracy, load_attribute_judge, through_resolution
from ..evaluation.protocol import GROUPS, _slug, attribute_judge_path, instruments, test_features_path, test_queries
from ..steps.profile import evaluation_settings, speech_to_image
from .sen import mention_probe


def per_part_table(results: dict) -> pd.DataFrame:
    """Per model and query group: the attribute judge's accuracy on each attribute the captions
    mention ("drawn: ...") and, where there is a colour swap, its success per swapped part ("swap:
    ..."). The rows of ``results`` without either (the FID floor) are left out."""
    rows = {}
    for name, figures in results.items():
        row = {f"drawn: {a}": v for a, v in (figures.get("attribute accuracy per attribute") or {}).items()}
        swap = figures.get("colour swap") or {}
        row.update({f"swap: {a}": d["success"] for a, d in (swap.get("per_attribute") or {}).items()})
        if row:
            rows[name] = row
    return pd.DataFrame(rows).T.astype(float).round(3)


def load_results(eval_dir: str | Path) -> dict:
    return read_json(Path(eval_dir) / "results.json")


# ------------------------------------------------------------------------------ notebook 04
UNIFORM_GUESS = "chance (a uniform guess)"


def judges_table(eval_dir: str | Path) -> pd.DataFrame:
    """How good the two judges are on images they never trained on (the target: >= 95 %): the IS
    classifier on held-out real test images; the attribute judge on held-out rendered images, overall
    and on its weakest attribute (``heldout_rendered`` of its report). Beside each, the accuracy of
    a uniform guess: 1 / the number of classes, 1 / the number of values of the attribute (overall:
    their mean, as every rendered image is scored on every attribute)."""
    judges = load_results(eval_dir)["judges"]
    classifier = judges["is_classifier"]
    rows = {"IS classifier (test classes, held-out real images)":
            {"accuracy": classifier["heldout_accuracy"],
             UNIFORM_GUESS: 1 / classifier["n_classes"] if classifier.get("n_classes") else None}}
    rows.update(_attribute_judge_rows(judges.get("attribute_judge") or {}))
    return pd.DataFrame(rows).T.astype(float).round(3)


def _attribute_judge_rows(report: dict) -> dict:
    """The attribute judge's held-out accuracy (``heldout_rendered``: ``overall`` and
    ``per_attribute``) as rows of ``judges_table``: the overall one and the lowest attribute's, each
    with a uniform guess's accuracy when the report names its (toy) dataset."""
    held = report.get("heldout_rendered") or {}
    values = toy_module(report["dataset"]).ATTRIBUTES if report.get("dataset") else {}
    rows = {}
    per_attribute = {a: v for a, v in (held.get("per_attribute") or {}).items() if isinstance(v, (int, float))}
    guess = {a: 1 / len(values[a]) for a in per_attribute if a in values}
    if isinstance(held.get("overall"), (int, float)):
        rows["attribute judge (held-out rendered images): all attributes"] = {
            "accuracy": held["overall"],
            UNIFORM_GUESS: float(np.mean(list(guess.values()))) if len(guess) == len(per_attribute) and guess else None}
    if per_attribute:
        weakest = min(per_attribute, key=per_attribute.get)
        rows[f"attribute judge (held-out rendered images): lowest attribute, {weakest}"] = {
            "accuracy": per_attribute[weakest], UNIFORM_GUESS: guess.get(weakest)}
    return rows


def judge_robustness(judge, images: np.ndarray, attributes: list[dict], seed: int = 0) -> pd.DataFrame:
    """The attribute judge's accuracy per attribute on real images, clean and degraded as generated
    images are (``attribute_judge.degraded_accuracy``): one row per degradation, and a last row of
    what a uniform guess among each attribute's values scores (``overall``: weighted as the
    accuracy weighs the attributes, by how many images have each)."""
    accuracy = degraded_accuracy(judge, images, attributes, seed)
    rows = {kind: {**acc["per_attribute"], "overall": acc["overall"]} for kind, acc in accuracy.items()}
    counts = next(iter(accuracy.values()))["counts"]
    guess = {a: 1 / len(judge.attributes[a]) for a in counts}
    guess["overall"] = sum(counts[a] * guess[a] for a in counts) / sum(counts.values())
    rows[UNIFORM_GUESS] = guess
    return pd.DataFrame(rows).T.round(3)


def fid_examples(real_test: np.ndarray, real_train: np.ndarray, n: int = 200, seed: int = 0,
                 cache_dir: str | Path | None = None) -> pd.DataFrame:
    """What FID numbers look like: real test images against other real images and against
    damaged copies of themselves (same TF Inception features as the evaluation). ``cache_dir``: the
    dataset's cache folder, where the data step keeps the real test images' features (``instruments``);
    the reference features are then read from there instead of being computed again."""
    rng = np.random.default_rng(seed)
    n = min(n, len(real_test), len(real_train))
    pick = rng.choice(len(real_test), n, replace=False)
    a = real_test[pick]
    b = real_train[rng.choice(len(real_train), n, replace=False)]
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(a).permute(0, 3, 1, 2).float(), 5, 1, 2)
    blurred = blurred.round().byte().permute(0, 2, 3, 1).numpy()
    noisy = np.clip(a.astype(np.int16) + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    swapped = a[..., ::-1].copy()   # RGB -> BGR: every colour wrong, every shape right
    ref = (fid.cached_features(real_test, test_features_path(cache_dir, real_test.shape[1]))[pick]
           if cache_dir is not None else fid.inception_features(a))
    rows = {"other real images (training split)": b, "the same images, blurred (5x5 box)": blurred,
            "the same images + noise (std 40/255)": noisy, "the same images, colours swapped (RGB->BGR)": swapped}
    return pd.DataFrame({"FID": {k: fid.fid_from_features(ref, fid.inception_features(v))
                                 for k, v in rows.items()}}).round(1)


def load_generated(eval_dir: str | Path, group: str = "training voices") -> dict:
    return load_array(Path(eval_dir) / f"generated_{_slug(group)}.npz")


def plot_generated(eval_dir: str | Path, records: list, real: np.ndarray, group: str = "training voices",
                   n: int = 8, seed: int = 0) -> plt.Figure:
    """Real test images (top) and the images generated from one of their spoken captions (below)."""
    g = load_generated(eval_dir, group)
    pick = np.random.default_rng(seed).choice(len(g["images"]), min(n, len(g["images"])), replace=False)
    fig, axes = plt.subplots(2, len(pick), figsize=(2.0 * len(pick), 4.6), squeeze=False)
    for col, i in enumerate(pick):
        r = records[int(g["image_pos"][i])]
        axes[0, col].imshow(real[int(g["image_pos"][i])])
        axes[1, col].imshow(g["images"][i])
        axes[1, col].set_title("\n".join(_wrap(r.captions[int(g["caption_index"][i])], 26)), fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].set_title("real", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width)


def best_and_worst(eval_dir: str | Path, judge, records: list, attribute: str, group: str = "training voices",
                   k: int = 6) -> plt.Figure:
    """Generated images whose caption mentions ``attribute``: k the judge finds right (top row) and
    k it finds wrong (bottom row), titled with what was said and what the judge sees."""
    g = load_generated(eval_dir, group)
    said = [records[int(p)].mentions[int(c)].get(attribute) for p, c in zip(g["image_pos"], g["caption_index"])]
    rows = [i for i, s in enumerate(said) if s is not None]
    if not rows:
        raise ValueError(f"no generated image's caption mentions {attribute!r}")
    seen = judge.predict(g["images"][rows])
    right = [r for r, p in zip(rows, seen) if p[attribute] == said[r]][:k]
    wrong = [(r, p[attribute]) for r, p in zip(rows, seen) if p[attribute] != said[r]][:k]
    fig, axes = plt.subplots(2, k, figsize=(1.7 * k, 4.0), squeeze=False)
    for col, r in enumerate(right):
        axes[0, col].imshow(g["images"][r])
        axes[0, col].set_title(f"said {said[r]}", fontsize=7, color="green")
    for col, (r, seen_value) in enumerate(wrong):
        axes[1, col].imshow(g["images"][r])
        axes[1, col].set_title(f"said {said[r]}\nsees {seen_value}", fontsize=7, color="red")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{attribute}: right (top) and wrong (bottom), by the attribute judge", fontsize=9)
    fig.tight_layout()
    return fig


def plot_colour_swaps(eval_dir: str | Path, group: str = "training voices", n: int = 6) -> plt.Figure:
    """Pairs of the colour experiment: the caption as said, and with one colour word changed
    (same voice, same noise); green title = the judge confirms the swap. The first successes fill
    half the columns and the first failures the rest (where there are enough of each), so that
    a learner sees both, whatever the success rate."""
    path = Path(eval_dir) / f"colour_swap_{_slug(group)}.npz"
    f = load_array(path)
    if "swaps_json" not in f:
        raise BadFileError(f"{path} has no swap records (swaps_json): it was written by an older "
                           f"version; delete the eval folder to rebuild it")
    swaps = json.loads(str(f["swaps_json"]))
    original, swapped, success = f["original"], f["swapped"], np.asarray(f["success"], bool)
    n = min(n, len(swaps))
    wins, losses = np.flatnonzero(success), np.flatnonzero(~success)
    k = min(len(wins), max(n - len(losses), n // 2))      # successes shown
    shown = np.concatenate([wins[:k], losses[:n - k]])
    fig, axes = plt.subplots(2, n, figsize=(2.1 * n, 4.8), squeeze=False)
    for col, i in enumerate(shown):
        s = swaps[i]
        axes[0, col].imshow(original[i])
        axes[0, col].set_title("\n".join(_wrap(s["caption"], 24)), fontsize=6)
        axes[1, col].imshow(swapped[i])
        axes[1, col].set_title(f"{s['old']} -> {s['new']} ({s['attribute'].replace('_color', '')})",
                               fontsize=7, color="green" if success[i] else "red")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _judged_captions(cfg, runs_dir: str | Path | None, n: int) -> tuple:
    """What the "drawn" scores share: the cached attribute judge, and ``_drawn_captions``."""
    cache = step_dir("data", cfg, runs_dir) / "cache"
    judge = load_attribute_judge(attribute_judge_path(cache, cfg.gan.stage_sizes[-1], cfg.seed))
    return judge, _drawn_captions(cfg, runs_dir, n)


def _drawn_captions(cfg, runs_dir: str | Path | None, n: int) -> dict[str, tuple]:
    """Per split, the training-voice group of every caption (``QueryGroup``), its mentions and a
    seeded draw of ``n`` of them."""
    dirs = {s: step_dir(s, cfg, runs_dir) for s in ("data", "speech", "sen")}
    index = read_dataset(dirs["data"])
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x10C]))
    captions = {}
    for split in ("train", "test"):
        records = index.split(split)
        group = test_queries(dirs["speech"], load_array(Path(dirs["sen"]) / "embeddings" / f"speech_{split}.npy"),
                             records, split)[GROUPS[0]]
        pick = rng.choice(len(group.embeddings), min(n, len(group.embeddings)), replace=False)
        captions[split] = (group, group.mentions(records), pick)
    return captions


def drawn_test_captions(cfg, runs_dir: str | Path | None = None, n: int = 500) -> tuple[np.ndarray, list[dict]]:
    """The ``n`` test captions (training voices) that ``drawn_by_snapshot`` judges: the position of
    each one's image in the test split, and what each mentions (for generators that are not
    conditioned on speech, such as ``benchmarks/bench_reference_cgan.py``'s)."""
    group, mentions, pick = _drawn_captions(cfg, runs_dir, n)["test"]
    return group.image_pos[pick], [mentions[i] for i in pick]


def mention_onehots(mentions: list[dict], attributes: dict[str, list[str]]) -> np.ndarray:
    """The oracle condition of ``bench_gan_quality.py --oracle``: per caption, one-hots of the
    values it mentions, every attribute side by side (52 values for ToyBirds), scaled to unit
    length as the SEN's embeddings are. (n, number of values) float32; a caption that mentions
    nothing gives zeros."""
    offsets = np.cumsum([0] + [len(v) for v in attributes.values()])
    where = dict(zip(attributes, offsets))
    out = np.zeros((len(mentions), int(offsets[-1])), np.float32)
    for i, said in enumerate(mentions):
        for attr, value in said.items():
            if value not in attributes[attr]:
                raise ValueError(f"caption {i} mentions {attr}={value!r}, not one of {attributes[attr]}")
            out[i, where[attr] + attributes[attr].index(value)] = 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1.0)


def _drawn(s2i, judge, captions: tuple, seed: int, attributes: dict | None = None) -> dict:
    """The judge's per-attribute accuracy (and ``overall``) on images generated from the picked
    captions: from their speech embeddings, or with ``attributes`` from ``mention_onehots``."""
    group, mentions, pick = captions
    condition = (group.embeddings[pick] if attributes is None
                 else mention_onehots([mentions[i] for i in pick], attributes))
    images = s2i.generate_each(condition, seed=seed)
    acc = attribute_accuracy(judge.predict(images), [mentions[i] for i in pick])
    return {"overall": acc["overall"], **acc["per_attribute"]}


def embedding_or_generator(cfg, runs_dir: str | Path | None = None, n: int = 500) -> pd.DataFrame:
    """Where a mentioned attribute gets lost, per attribute (training voices):

    - ``in the speech embedding``: ``sen.report.mention_probe`` of the SEN speech embeddings, fit on
      the training captions, scored on the test captions (unseen species). If this is low, the
      embedding does not carry the attribute and no generator can draw it.
    - ``drawn, training captions`` / ``drawn, test captions``: the attribute judge's accuracy on
      images generated from ``n`` captions of each split (seeded draw). Low on both while the probe
      is high: the generator is the limit. High on training captions only: it does not generalise
      to unseen species.
    - ``chance``: one over the number of values of the attribute.
    """
    judge, captions = _judged_captions(cfg, runs_dir, n)
    s2i = speech_to_image(cfg, runs_dir)
    drawn = {split: _drawn(s2i, judge, c, cfg.seed) for split, c in captions.items()}
    (train, train_mentions, _), (test, test_mentions, _) = captions["train"], captions["test"]
    table = pd.DataFrame({
        "in the speech embedding": mention_probe(train.embeddings, train_mentions, test.embeddings, test_mentions),
        "drawn, training captions": pd.Series(drawn["train"]).drop("overall"),
        "drawn, test captions": pd.Series(drawn["test"]).drop("overall"),
    })
    attributes = toy_module(cfg.data.dataset).ATTRIBUTES
    table["chance"] = [1 / len(attributes[a]) for a in table.index]
    return table.round(3)


def drawn_by_snapshot(cfg, gan_dir: str | Path, runs_dir: str | Path | None = None, n: int = 500,
                      oracle: bool = False) -> pd.DataFrame:
    """The attribute judge's accuracy on ``n`` training and ``n`` test captions (the same seeded
    draw as ``embedding_or_generator``) for every EMA snapshot ``checkpoints/generator_ema_<it>.pt``
    of a GAN run folder: one row per (iteration, split), ``overall`` then one column per attribute.
    How fast a change makes the generator draw what was said, before spending a full run on it.
    ``oracle``: the run was conditioned on ``mention_onehots``, and so are its judged images."""
    snapshots = sorted(Path(gan_dir).glob("checkpoints/generator_ema_*.pt"))
    if not snapshots:
        raise FileNotFoundError(f"no checkpoints/generator_ema_*.pt in {gan_dir}: train the GAN first")
    judge, captions = _judged_captions(cfg, runs_dir, n)
    device = select_device(cfg.device, cfg.precision)
    speech_encoder = load_speech_encoder(step_dir("sen", cfg, runs_dir), device)
    attributes = toy_module(cfg.data.dataset).ATTRIBUTES if oracle else None
    rows = []
    for path in snapshots:
        s2i = SpeechToImage(speech_encoder, load_generator(path, device), cfg.speech, device, cfg.profile)
        iteration = int(path.stem.rsplit("_", 1)[1])
        for split, c in captions.items():
            rows.append({"iteration": iteration, "captions": split,
                         **_drawn(s2i, judge, c, cfg.seed, attributes)})
    return pd.DataFrame(rows).set_index(["iteration", "captions"]).round(3)


def fid_by_snapshot(cfg, gan_dir: str | Path, runs_dir: str | Path | None = None) -> dict[int, float]:
    """FID against the real test images of every EMA snapshot of a GAN run folder, as the eval step
    computes it: one image per test image from one of its captions (training voices), the same
    noise rows. Iteration -> FID. Costs one generation and one Inception pass of the test split
    per snapshot (~1 min for 1000 images on 2 cores)."""
    snapshots = sorted(Path(gan_dir).glob("checkpoints/generator_ema_*.pt"))
    if not snapshots:
        raise FileNotFoundError(f"no checkpoints/generator_ema_*.pt in {gan_dir}: train the GAN first")
    device = select_device(cfg.device, cfg.precision)
    data_dir, sen_dir = (step_dir(s, cfg, runs_dir) for s in ("data", "sen"))
    test = read_dataset(data_dir).split("test")
    real = instruments(evaluation_settings(cfg), data_dir, cfg.gan.stage_sizes[-1]).real_features
    queries = test_queries(step_dir("speech", cfg, runs_dir),
                           load_array(sen_dir / "embeddings" / "speech_test.npy"), test)[GROUPS[0]]
    one = queries.one_per_image(len(test), cfg.seed)
    speech_encoder = load_speech_encoder(sen_dir, device)
    out = {}
    for path in snapshots:
        s2i = SpeechToImage(speech_encoder, load_generator(path, device), cfg.speech, device, cfg.profile)
        images = s2i.generate_each(queries.embeddings[one], seed=cfg.seed)
        out[int(path.stem.rsplit("_", 1)[1])] = round(fid.fid_from_features(real, fid.inception_features(images)), 2)
    return out


def resolution_ladder(size: int) -> list[int]:
    """The resolutions ``attribute_accuracy_references`` sees real images through: the image size,
    then 1/2, 3/8, 1/4, 3/16 and 1/8 of it (64 px: 64, 32, 24, 16, 12, 8)."""
    return sorted({max(1, round(size * f)) for f in (1, 1 / 2, 3 / 8, 1 / 4, 3 / 16, 1 / 8)}, reverse=True)


def other_species(classes: np.ndarray, positions: np.ndarray, seed: int) -> np.ndarray:
    """For each of ``positions``, a seeded random image whose class is not ``classes[position]``."""
    classes = np.asarray(classes)
    if len(np.unique(classes)) < 2:
        raise ValueError("other_species needs images of at least two classes")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x07E]))
    return np.array([rng.choice(np.flatnonzero(classes != classes[p])) for p in positions])


def attribute_accuracy_references(cfg, runs_dir: str | Path | None = None, n: int = 500
                                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """What an attribute accuracy means: the judge's score on real images standing in for the
    generated ones, for the ``n`` test captions that ``drawn_by_snapshot`` judges (training voices).

    - ``own image``, then ``own image through P px``: each caption's own real image, shrunk to P
      pixels and resized back (``attribute_judge.through_resolution``, P from ``resolution_ladder``):
      a generator that draws exactly the right bird, but only as sharp as a P-pixel image.
    - ``another species' image``: a real image of another test species (``other_species``): a
      generator that draws perfect birds and ignores what was said.

    Returns the table (``overall`` then one column per attribute) and the images of the first 8
    captions (fewer if ``n`` is smaller), (8, rows, S, S, 3) uint8 with one image per row of the
    table in its order, for ``plot_references``."""
    judge, captions = _judged_captions(cfg, runs_dir, n)
    group, mentions, pick = captions["test"]
    index = read_dataset(step_dir("data", cfg, runs_dir))
    classes = np.array([r.class_id for r in index.split("test")])
    size = cfg.gan.stage_sizes[-1]
    real = image_cache(index, "test", size)
    positions = group.image_pos[pick]
    own = np.asarray(real[positions])
    said = [mentions[i] for i in pick]
    stand_ins = {f"own image through {px} px" if px < size else "own image":
                 (through_resolution(own, px) if px < size else own) for px in resolution_ladder(size)}
    stand_ins["another species' image"] = np.asarray(real[other_species(classes, positions, cfg.seed)])
    rows = {}
    for name, images in stand_ins.items():
        acc = attribute_accuracy(judge.predict(images), said)
        rows[name] = {"overall": acc["overall"], **acc["per_attribute"]}
    examples = np.stack([images[:8] for images in stand_ins.values()], axis=1)
    return pd.DataFrame(rows).T.round(3), examples


def plot_references(examples: np.ndarray, names: list[str]) -> plt.Figure:
    """The stand-ins of ``attribute_accuracy_references``: one column per row of its table."""
    k, m = examples.shape[:2]
    fig, axes = plt.subplots(k, m, figsize=(1.25 * m, 1.25 * k), squeeze=False)
    for i in range(k):
        for j in range(m):
            axes[i, j].imshow(examples[i, j])
            axes[i, j].axis("off")
    for j, name in enumerate(names):
        axes[0, j].set_title("\n".join(_wrap(name, 14)), fontsize=7)
    fig.tight_layout()
    return fig


def listening_table(results: dict) -> pd.DataFrame:
    """Attribute accuracy of the images generated from each query group: the training and held-out
    voices (every test caption) and the sen step's listening tests (captions of some test images,
    ``listening`` of results.json), with each group's difference from the training voices."""
    rows = {name.removeprefix("S2IGAN, "): figures for name, figures in results["results"].items()
            if name.startswith("S2IGAN, ") and "attribute accuracy" in figures}
    rows.update(results.get("listening") or {})
    table = pd.DataFrame({name: {"attribute accuracy": f["attribute accuracy"],
                                 **{a: f["attribute accuracy per attribute"].get(a)
                                    for a in ("belly_color", "wing_color", "size")
                                    if a in f["attribute accuracy per attribute"]}}
                          for name, f in rows.items()}).T.astype(float)
    if "training voices" in table.index:
        table.insert(1, "vs training voices", table["attribute accuracy"] - table.loc["training voices", "attribute accuracy"])
    return table.round(3)
