"""How the ``eval`` step measures a model: generate the test images from their spoken captions, then
score them (the step itself is ``s2i_lib/steps/eval.py``).

For each group of test queries (captions spoken by the training voices; by the held-out voices) it
generates one image per utterance (noise row i from ``eval`` seed and i), then measures:

- on **one generated image per test image** (its caption drawn with a fixed seed): FID and KID
  against the real test images (TF Inception features), the Inception Score under the classifier of
  the test classes, the paper's mAP (real test images query the generated images, class relevance;
  2 query images per class and all their captions, as ``mAP_evaluate.py``), R-precision with the SEN;
- on **every generated image**: attribute accuracy under the attribute judge (toy datasets);
- the **colour swap**: test captions with one colour word changed, both spoken by the same voice,
  generated with the same noise; success = the judge sees the new colour on that part and every
  other mentioned attribute unchanged.

The listening tests of the ``sen`` step (other accents, a neural voice, degraded audio: captions
of some test images, ``speech/listening.py``) get the attribute accuracy of their generated images,
in ``listening`` of results.json.

The real test images get the same measurements where they apply (IS, R-precision, attribute
accuracy): the ceiling each number can reach here. The dataset's instruments (``instruments``) are
built by the data step and only loaded here; the ablations (``steps/ablations.py``) are measured
with the same ``evaluate_model``.

What the protocol reads of a profile is a ``ProtocolSettings``, which the steps fill from the
profile's ``Config`` (``steps/profile.py``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..artifacts import atomic_path, load_array, read_json
from ..data.build import TOY_DATASETS, toy_module
from ..data.captions import swap_colour
from ..data.layout import ImageRecord, read_dataset
from ..data.torch_datasets import image_cache
from ..inference import SpeechToImage
from ..progress import tqdm
from ..sen.image_encoder import SenImageFeatures
from ..speech.features import FeatureStore
from ..step_configs import EvalConfig, SenConfig
from . import attribute_judge, fid
from .inception_score import inception_score, train_is_classifier
from .r_precision import r_precision
from .retrieval_map import paper_queries, retrieval_map

GROUPS = ("training voices", "held-out voices")


@dataclass(frozen=True)
class ProtocolSettings:
    """What the evaluation reads of a profile (``steps/profile.py`` fills it from the ``Config``)."""
    seed: int                       # noise, query picks, bootstrap splits
    dataset: str                    # ``data.dataset``: the attribute judge and colour words need a toy one
    image_size: int                 # the generated images' size (the GAN's last stage): the instruments'
    eval: EvalConfig
    sen: SenConfig                  # its image encoder scores R-precision
    captions_per_image: int
    training_voices: tuple[str, ...]   # the colour swaps are spoken by one of each group's voices
    heldout_voices: tuple[str, ...]


@dataclass
class QueryGroup:
    """The test utterances of one group with their SEN embeddings, in speech-store order."""
    embeddings: np.ndarray       # (Q, D)
    image_pos: np.ndarray        # (Q,) position of the utterance's image in the test split
    caption_index: np.ndarray    # (Q,)
    voices: list[str]

    def mentions(self, records: list[ImageRecord]) -> list[dict]:
        return [records[p].mentions[c] for p, c in zip(self.image_pos, self.caption_index)]

    def one_per_image(self, n_images: int, seed: int) -> np.ndarray:
        """One query per test image (a seeded draw among its captions), in image order."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE1]))
        rows = [[] for _ in range(n_images)]
        for q, p in enumerate(self.image_pos):
            rows[p].append(q)
        missing = [p for p, r in enumerate(rows) if not r]
        if missing:
            raise ValueError(f"{len(missing)} test images have no utterance in this group "
                             f"(e.g. test image {missing[0]})")
        return np.array([r[int(rng.integers(len(r)))] for r in rows])


def test_queries(speech_dir: Path, embeddings: np.ndarray, records: list[ImageRecord],
                 split: str = "test") -> dict[str, QueryGroup]:
    """Split the SEN export of a split's utterances (rows in speech-store order; ``records``: that
    split's images) into the voice groups."""
    store = FeatureStore(speech_dir, split)
    position = {r.key: i for i, r in enumerate(records)}
    rows = np.array([i for i, k in enumerate(store.keys) if k in position])
    if len(rows) != len(embeddings):
        raise ValueError(f"{len(embeddings)} {split} embeddings for {len(rows)} {split} utterances: "
                         f"rebuild the sen step")
    pos = np.array([position[store.keys[r]] for r in rows])
    held = store.heldout[rows]
    out = {}
    for name, mask in zip(GROUPS, (~held, held)):
        if mask.any():
            out[name] = QueryGroup(embeddings[mask], pos[mask], store.caption_index[rows][mask],
                                    [store.voices[r] for r in rows[mask]])
    return out


def listening_queries(sen_dir: Path) -> dict[str, QueryGroup]:
    """The sen step's listening tests (``listening.json`` and one embedding file per group)."""
    emb_dir = Path(sen_dir) / "embeddings"
    if not (emb_dir / "listening.json").exists():
        return {}
    index = read_json(emb_dir / "listening.json")
    pos, cap = np.asarray(index["image_pos"], np.int64), np.asarray(index["caption_index"], np.int64)
    out = {}
    for name, group in index["groups"].items():
        emb = load_array(emb_dir / "listening" / Path(group["file"]).name)
        if len(emb) != len(pos):
            raise ValueError(f"{emb_dir / 'listening' / group['file']}: {len(emb)} embeddings for "
                             f"{len(pos)} listening captions: rebuild the sen step")
        out[name] = QueryGroup(emb, pos, cap, [group["voice"]] * len(pos))
    return out


def listening_accuracy(s2i: SpeechToImage, groups: dict[str, QueryGroup], judges: "Judges",
                       test: list[ImageRecord], seed: int) -> dict:
    """Attribute accuracy of the images generated from each listening group's captions (noise
    from ``seed``)."""
    results = {}
    for name, queries in groups.items():
        images = s2i.generate_each(queries.embeddings, seed=seed, progress=f"S2IGAN: generating ({name})")
        acc = attribute_judge.attribute_accuracy(judges.attribute_judge.predict(images), queries.mentions(test))
        results[name] = {"attribute accuracy": acc["overall"], "attribute accuracy per attribute": acc["per_attribute"],
                         "queries": int(len(images))}
    return results


# ---------------------------------------------------------------------------------- metrics
def test_features_path(cache_dir: str | Path, size: int) -> Path:
    """Where the TF Inception features of the real test images at ``size`` px are cached (in the
    dataset's ``cache/`` folder: computed once, used by FID, the paper's mAP and notebook 04)."""
    return Path(cache_dir) / f"inception_test_{size}.npy"


def attribute_judge_path(cache_dir: str | Path, size: int, seed: int) -> Path:
    """Where the attribute judge of a toy dataset at ``size`` px is cached (the dataset's ``cache/``)."""
    return Path(cache_dir) / f"attribute_judge_{size}_seed{seed}.pt"


def cached_attribute_judge(settings: ProtocolSettings, data_dir: str | Path, size: int):
    """The evaluation's attribute judge (``eval.judge_images`` renders, ``judge_epochs``),
    trained once and cached beside the dataset: it depends only on the renderer."""
    s = settings
    return attribute_judge.train_attribute_judge(s.dataset, size, s.seed,
                                 attribute_judge_path(Path(data_dir) / "cache", size, s.seed),
                                 n_images=s.eval.judge_images, epochs=s.eval.judge_epochs)


@dataclass
class Instruments:
    """What measures the images of a dataset at one size and depends on nothing but the dataset:
    the real test images, their TF Inception features (FID, KID, mAP), the classifier of the test
    classes (IS) and, on a toy dataset, the attribute judge."""
    real: np.ndarray                 # uint8 (N, S, S, 3), the test split in index order
    real_features: np.ndarray        # (N, 2048)
    is_classifier: object
    attribute_judge: object | None
    # FID and KID of as many real training images (other species, drawn with the seed) against the
    # real test images: the floor a generator of this dataset can reach
    floor: dict | None = None

    def report(self) -> dict:
        return {"is_classifier": self.is_classifier.report,
                "attribute_judge": self.attribute_judge.report if self.attribute_judge else None}


def instruments(settings: ProtocolSettings, data_dir: str | Path, size: int) -> Instruments:
    """The dataset's instruments at ``size`` px, each computed or trained once and cached in the
    dataset's ``cache/`` (keyed by what it was built from), so that every evaluation, ablation and
    benchmark of the dataset shares them. The data step builds them (``data_step``); the eval
    step loads them, or builds them when the data step made them for another size or config."""
    cache = Path(data_dir) / "cache"
    index = read_dataset(data_dir)
    real = image_cache(index, "test", size)
    classes = np.array([r.class_id for r in index.split("test")])
    seed = settings.seed
    is_classifier = train_is_classifier(real, classes, seed, cache / f"is_classifier_{size}_seed{seed}.pt",
                                        cache / f"is_features_{size}_seed{seed}.npy")
    real_features = fid.cached_features(real, test_features_path(cache, size), progress=True)
    judge = cached_attribute_judge(settings, data_dir, size) if settings.dataset in TOY_DATASETS else None
    return Instruments(real, real_features, is_classifier, judge, fid_floor(seed, index, real_features, size))


def fid_floor(seed: int, index, real_features: np.ndarray, size: int) -> dict | None:
    """FID and KID of real training images against the real test images, as many of each (drawn
    with ``seed``): how far two sets of *real* images of different species are. A generator
    of the test species is measured against the same test images, so this is its floor."""
    train = index.split("train")
    n = min(len(train), len(real_features))
    if n < 2:
        return None
    pick = np.sort(np.random.default_rng(np.random.SeedSequence([int(seed), 0xF1D])).choice(
        len(train), n, replace=False))
    images = np.asarray(image_cache(index, "train", size))[pick]
    feats = fid.cached_features(images, Path(index.root) / "cache" /
                                f"inception_train_{size}_{n}_seed{seed}.npy", progress=True)
    return fid.fid_and_kid(real_features, feats, seed=seed)


class Judges:
    """Everything that scores images, loaded once: the dataset's ``Instruments`` (Inception
    features for FID and mAP, the IS classifier, the attribute judge) and the SEN image encoder
    (R-precision), which is the model's."""

    def __init__(self, settings: ProtocolSettings, inputs: dict[str, Path], test: list[ImageRecord],
                 device: torch.device):
        self.settings, self.device = settings, device
        self.instruments = instruments(settings, inputs["data"], settings.image_size)
        self.real = self.instruments.real
        self.real_features = self.instruments.real_features
        self.is_classifier = self.instruments.is_classifier
        self.attribute_judge = self.instruments.attribute_judge
        self.classes = np.array([r.class_id for r in test])
        self.sen_images = SenImageFeatures(inputs["sen"], settings.sen).to(device).eval()

    @torch.no_grad()
    def sen_embeddings(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = [self.sen_images(fid.images_to_model_input(images[i:i + batch_size]).to(self.device)).cpu().numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)

    def report(self) -> dict:
        return self.instruments.report()


def map_gallery(image_pos: np.ndarray, caption_index: np.ndarray, query_images: np.ndarray) -> np.ndarray:
    """The utterances whose generated images the mAP queries search: those of the query images,
    each caption once (its first utterance). The held-out voices say every test caption twice; the
    two groups' mAPs compare only over galleries of the same captions (and it halves that cost)."""
    rows = np.flatnonzero(np.isin(image_pos, query_images))
    _, first = np.unique(np.stack([image_pos[rows], caption_index[rows]]), axis=1, return_index=True)
    return rows[np.sort(first)]


def image_metrics(judges: Judges, images: np.ndarray, queries: QueryGroup, one: np.ndarray,
                  records: list[ImageRecord], settings: ProtocolSettings, real: bool = False) -> dict:
    """Every metric of one set of images: ``images[q]`` goes with query q; ``one`` picks one query
    per test image. With ``real``, ``images`` are the real images (no FID/mAP against themselves)."""
    subset = images[one]
    out: dict = {}
    if not real:
        # FID/KID on one image per test image; the paper's mAP: two real images per test class
        # query the images generated from all of their captions (mAP_evaluate.py)
        queries_rows = paper_queries(judges.classes)
        gallery = map_gallery(queries.image_pos, queries.caption_index, queries_rows)
        rows = np.union1d(one, gallery)
        feats = fid.inception_features(images[rows], progress=True)
        at = {q: i for i, q in enumerate(rows.tolist())}
        out.update(fid.fid_and_kid(judges.real_features, feats[[at[q] for q in one]], seed=settings.seed))
        out["mAP"] = retrieval_map(judges.real_features, judges.classes,
                                                 feats[[at[q] for q in gallery]], queries.image_pos[gallery])["map"]
    score = inception_score(judges.is_classifier.logits(subset), splits=settings.eval.is_splits,
                                            seed=settings.seed)
    out.update(inception_score=score["is_mean"], inception_score_std=score["is_std"])
    out["R-precision"] = r_precision(
        judges.sen_embeddings(subset), queries.embeddings[one], judges.classes[queries.image_pos[one]],
        seed=settings.seed, pool_emb=queries.embeddings, pool_class=judges.classes[queries.image_pos])["r_precision"]
    if judges.attribute_judge is not None:
        acc = attribute_judge.attribute_accuracy(judges.attribute_judge.predict(images), queries.mentions(records))
        out["attribute accuracy"] = acc["overall"]
        out["attribute accuracy per attribute"] = acc["per_attribute"]
    return out


# ------------------------------------------------------------------------------ colour swap
def colour_swaps(records: list[ImageRecord], captions_per_image: int, dataset: str, n: int,
                 seed: int) -> list[dict]:
    """``n`` test captions with one mentioned colour changed to another colour of that part
    (seeded). Captions where the swap is ambiguous (``swap_colour`` gives None) are skipped."""
    toy = toy_module(dataset)
    attributes, colour_parts = toy.ATTRIBUTES, toy.COLOR_PARTS
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC010]))
    pairs = [(i, c) for i, r in enumerate(records) for c in range(min(captions_per_image, len(r.captions)))]
    swaps = []
    for k in rng.permutation(len(pairs)):
        i, c = pairs[k]
        mentions = records[i].mentions[c]
        options = [a for a in colour_parts if a in mentions and mentions[a] != "none"]
        if not options:
            continue
        attr = options[int(rng.integers(len(options)))]
        values = [v for v in attributes[attr] if v not in (mentions[attr], "none")]
        new = values[int(rng.integers(len(values)))]
        text = swap_colour(records[i].captions[c], mentions, attr, new)
        if text is None:
            continue
        swaps.append({"image": int(i), "caption_index": int(c), "attribute": attr, "old": mentions[attr],
                      "new": new, "caption": records[i].captions[c], "swapped": text,
                      "mentions": mentions})
        if len(swaps) == n:
            break
    return swaps


def swap_voice(voices: list[str]) -> str:
    """The voice that speaks both captions of a swap: the first eSpeak voice (fast), else the first."""
    return next((v for v in voices if v.startswith("espeak:")), voices[0])


def run_colour_swaps(s2i: SpeechToImage, judge, swaps: list[dict], voice: str, seed: int) -> tuple[dict, dict]:
    """Speak each caption and its swapped version with ``voice``, generate both with the same noise,
    and let the judge say whether the named part changed to the new colour (and nothing else
    mentioned changed). Returns (figures, arrays for the notebook's grid)."""
    def embed(waves: list[np.ndarray]) -> np.ndarray:
        feats = [s2i.features(w) for w in waves]
        return np.concatenate([s2i.embed(feats[i:i + 64]).numpy() for i in range(0, len(feats), 64)])

    # both versions at the rate and pitch of the original, so that only the colour word differs
    said = [s2i.speak(s["caption"], voice, seed) for s in tqdm(swaps, desc=f"speaking ({voice})", leave=False)]
    swapped_said = [s2i.speak_with_prosody_of(s["swapped"], voice, s["caption"], seed) for s in swaps]
    original = s2i.generate_each(embed(said), seed=seed)
    swapped = s2i.generate_each(embed(swapped_said), seed=seed)   # the same noise, row by row
    figures, success = swap_outcomes(swaps, judge.predict(original), judge.predict(swapped))
    return {"voice": voice, **figures}, {"original": original, "swapped": swapped, "success": success}


def swap_outcomes(swaps: list[dict], before: list[dict], after: list[dict]) -> tuple[dict, np.ndarray]:
    """Score colour swaps from the judge's readings of the original (``before``) and the swapped
    (``after``) images: success = the part took the new colour and every other mentioned attribute
    reads as it did before. Overall and per swapped attribute; returns (figures, success per swap)."""
    changed = np.array([a[s["attribute"]] == s["new"] for s, a in zip(swaps, after)])
    # "kept": the judge reads every other mentioned attribute of the swapped image as it read it in
    # the original one (the word changed one part, nothing else)
    kept = np.array([all(a[k] == b[k] for k in s["mentions"] if k != s["attribute"])
                     for s, a, b in zip(swaps, after, before)])
    was_right = np.array([b[s["attribute"]] == s["old"] for s, b in zip(swaps, before)])
    # the stricter reading: the swapped image draws everything its caption says
    as_said = np.array([all(a[k] == v for k, v in s["mentions"].items() if k != s["attribute"])
                        for s, a in zip(swaps, after)]) & changed
    success = changed & kept
    attrs = np.array([s["attribute"] for s in swaps])
    figures = {"n": len(swaps), "success": float(np.mean(success)),
               "part_took_new_colour": float(changed.mean()), "other_attributes_kept": float(kept.mean()),
               "part_had_old_colour_before": float(was_right.mean()),
               "swapped_caption_all_drawn": float(as_said.mean()),
               "per_attribute": {a: {"n": int((attrs == a).sum()), "success": float(success[attrs == a].mean()),
                                     "part_took_new_colour": float(changed[attrs == a].mean())}
                                 for a in sorted(set(attrs.tolist()))}}
    return figures, success


# ------------------------------------------------------------------------------ one model
def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("-", "_").replace("(", "").replace(")", "").replace(",", "")


def evaluate_model(s2i: SpeechToImage, groups: dict[str, QueryGroup], judges: Judges, test: list[ImageRecord],
                   settings: ProtocolSettings, out_dir: Path, label: str) -> dict:
    """Generate every test utterance's image with ``s2i`` and measure it, per group; the images of
    one caption per test image and the colour-swap pairs are kept in ``out_dir`` for the notebook."""
    results, s = {}, settings
    swap_colours = judges.attribute_judge is not None and s.eval.colour_swaps > 0
    if swap_colours:   # the same captions for every group
        swaps = colour_swaps(test, s.captions_per_image, s.dataset, s.eval.colour_swaps, s.seed)
    for name, queries in groups.items():
        t0 = time.perf_counter()
        images = s2i.generate_each(queries.embeddings, seed=s.seed, progress=f"{label}: generating ({name})")
        one = queries.one_per_image(len(test), s.seed)
        figures = image_metrics(judges, images, queries, one, test, s)
        if swap_colours:
            voices = list(s.training_voices if name == GROUPS[0] else s.heldout_voices)
            figures["colour swap"], arrays = run_colour_swaps(s2i, judges.attribute_judge, swaps, swap_voice(voices), s.seed)
            # the swap records as JSON text: an object array would need unpickling to read back
            _save(out_dir / f"colour_swap_{_slug(name)}.npz", swaps_json=np.array(json.dumps(swaps)), **arrays)
        _save(out_dir / f"generated_{_slug(name)}.npz", images=images[one], query=one,
              image_pos=queries.image_pos[one], caption_index=queries.caption_index[one])
        figures["time_s"] = round(time.perf_counter() - t0, 1)
        results[name] = figures
    return results


def _save(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
