"""Tables and plots of a trained SEN for notebook 02."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..artifacts import load_array, read_json
from ..config import SenConfig
from ..data.captions import word_kind
from ..data.layout import read_dataset
from ..speech.features import FeatureStore
from ..speech.synthesis import read_jsonl
from ..sen.losses import distinctive_loss, matching_loss
from ..sen.retrieval import attribute_precision_chance, expected_average_precision
from ..sen.training import backbone_features


CHANCE_ROW = "chance (random ranking)"


def retrieval_chance(records: Sequence, image_pos: Sequence[int], caption_index: Sequence[int],
                     ks: Sequence[int] = (1, 5, 10), k_attribute: int = 10) -> dict[str, float]:
    """What a uniformly random ranking scores on average, under the names of
    ``sen.training.retrieval_figures``, for queries that are the captions ``caption_index[q]`` of
    the images ``records[image_pos[q]]``, each searched against all of ``records`` (N images):

    - ``speech_to_image_R@k``: k / N (one relevant image); ``speech_to_image_median_rank``: the
      middle rank, (N + 1) / 2;
    - ``image_to_speech_R@k`` (only when every image has a query, as there): the chance that one of
      an image's c queries is among k drawn from the Q queries, 1 - C(Q - c, k) / C(Q, k), averaged
      over the images;
    - ``class_mAP_all_queries`` and ``class_mAP_one_query_per_class`` (the first caption-0 query
      of each class): ``sen.retrieval.expected_average_precision`` of the query's class size;
    - ``attribute_precision@k_attribute`` (records with mentions): ``attribute_precision_chance``."""
    image_pos, caption_index = np.asarray(image_pos, dtype=int), np.asarray(caption_index, dtype=int)
    if image_pos.shape != caption_index.shape or image_pos.ndim != 1 or not len(image_pos):
        raise ValueError(f"need one image position and one caption index per query, got shapes "
                         f"{image_pos.shape} and {caption_index.shape}")
    n = len(records)
    image_class = np.array([r.class_id for r in records])
    class_size = {c: int(k) for c, k in zip(*np.unique(image_class, return_counts=True))}
    chance: dict[str, float] = {f"speech_to_image_R@{k}": min(k, n) / n for k in ks}
    chance["speech_to_image_median_rank"] = (n + 1) / 2
    q = len(image_pos)
    per_image = np.bincount(image_pos, minlength=n)
    if (per_image > 0).all():
        for k in ks:
            drawn = min(k, q)
            chance[f"image_to_speech_R@{k}"] = float(np.mean([1 - math.comb(q - c, drawn) / math.comb(q, drawn)
                                                            for c in per_image]))
    query_class = image_class[image_pos]
    chance["class_mAP_all_queries"] = float(np.mean([expected_average_precision(class_size[c], n)
                                                     for c in query_class]))
    first = np.unique(query_class[caption_index == caption_index.min()])
    chance["class_mAP_one_query_per_class"] = float(np.mean([expected_average_precision(class_size[c], n)
                                                             for c in first]))
    if records and records[0].mentions is not None:
        mentions = [records[p].mentions[c] for p, c in zip(image_pos, caption_index)]
        chance[f"attribute_precision@{k_attribute}"] = attribute_precision_chance(
            mentions, [r.attributes for r in records])
    return chance


def results_table(sen_dir: str | Path, chance: dict[str, float] | None = None) -> pd.DataFrame:
    """The test-set retrieval metrics: one row per query kind (training voices, held-out, text), and
    with ``chance`` (``retrieval_chance``) a last row of what a random ranking scores."""
    results = read_json(Path(sen_dir) / "results.json")
    table = pd.DataFrame(results).T
    if chance is not None:
        table.loc[CHANCE_ROW] = pd.Series(chance).round(4)   # as results.json rounds
    table.columns = [c.replace("speech_to_image", "query→image").replace("image_to_speech", "image→query")
                     for c in table.columns]
    return table


def chance_losses(sen: SenConfig, n_classes: int | None = None) -> dict[str, float]:
    """The SEN's losses when the encoders know nothing, computed by the library's own loss functions
    on chance inputs (so that they follow the code):

    - ``"matching"``: ``matching_loss`` on a batch of ``sen.batch_size`` pairs whose similarities are
      all equal (every embedding the same unit vector): each direction's softmax is uniform over
      the B candidates, log B, and the two directions add up. A batch holding two captions of one
      species has fewer candidates (the same-class mask) and a little less.
    - ``"distinctive"``: ``distinctive_loss`` of a classifier with equal logits over the
      ``n_classes`` training classes (2 log C), 0 with ``sen.distinctive_loss`` off.
    - ``"total"``: their sum, as ``train_sen_model`` adds them.

    Without ``n_classes`` (and the distinctive loss on) only ``"matching"`` is given."""
    b = sen.batch_size
    same = torch.nn.functional.normalize(torch.ones(b, sen.embed_dim), dim=1)
    chance = {"matching": float(matching_loss(same, same, None, sen.gamma))}
    if not sen.distinctive_loss:
        chance["distinctive"] = 0.0
    elif n_classes is not None:
        def uniform(x: torch.Tensor) -> torch.Tensor:   # a classifier that knows nothing
            return torch.zeros(len(x), n_classes)
        chance["distinctive"] = float(distinctive_loss(uniform, same, same, torch.zeros(b, dtype=torch.long)))
    if "distinctive" in chance:
        chance["total"] = chance["matching"] + chance["distinctive"]
    return chance


def plot_training(sen_dir: str | Path, sen: SenConfig | None = None, n_classes: int | None = None) -> plt.Figure:
    """Loss per epoch and validation class mAP, for the speech model and the text baseline. With
    ``sen`` (the run's ``SenConfig``) the loss panel has dashed grey lines at chance
    (``chance_losses``; the total's only with ``n_classes``, the training classes)."""
    figures = read_json(Path(sen_dir) / "metrics.json")["figures"]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.2))
    for name in ("speech", "text"):
        h = figures.get(f"{name}_history")
        if not h:
            continue
        ax_loss.plot(h["epoch"], h["loss"], label=f"{name}: total")
        ax_loss.plot(h["epoch"], h["matching"], "--", label=f"{name}: matching")
        ax_val.plot(h["val_epoch"], h["val_class_mAP"], "o-", label=name)
        ax_val.axvline(h["best_epoch"], ls=":", color=ax_val.lines[-1].get_color())
    if sen is not None:
        chance = chance_losses(sen, n_classes)
        for key, style in (("total", (0, (6, 3))), ("matching", (0, (2, 2)))):
            if key in chance:
                ax_loss.axhline(chance[key], ls=style, lw=1.2, color="grey", zorder=0, label=f"chance ({key})")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax_val.set(xlabel="epoch", ylabel="class mAP", title="validation classes (dotted: kept epoch)")
    ax_loss.legend(fontsize=7)
    ax_val.legend(fontsize=7)
    fig.tight_layout()
    return fig


class TestEmbeddings:
    """Speech queries and images of the test split with their embeddings (for the plots below)."""

    def __init__(self, data_dir: str | Path, speech_dir: str | Path, sen_dir: str | Path):
        self.index = read_dataset(data_dir)
        self.records = self.index.split("test")
        self.store = FeatureStore(speech_dir, "test")
        self.speech = load_array(Path(sen_dir) / "embeddings" / "speech_test.npy")
        self.images = load_array(Path(sen_dir) / "embeddings" / "image_test.npy")
        position = {r.key: i for i, r in enumerate(self.records)}
        self.image_of_query = np.array([position[k] for k in self.store.keys])
        self.class_of_image = np.array([r.class_id for r in self.records])
        wav = {row["id"]: row["path"] for row in read_jsonl(Path(speech_dir) / "manifest.jsonl")}
        self.wav_paths = [Path(speech_dir) / wav[u] for u in self.store.ids]

    def caption(self, q: int) -> str:
        return self.records[self.image_of_query[q]].captions[int(self.store.caption_index[q])]

    def top_k(self, q: int, k: int = 5) -> np.ndarray:
        return np.argsort(-(self.images @ self.speech[q]), kind="stable")[:k]


def plot_query(emb: TestEmbeddings, q: int, k: int = 5) -> plt.Figure:
    """A spoken query, the image it was said about, and the k images the SEN retrieves for it."""
    top = emb.top_k(q, k)
    fig, axes = plt.subplots(1, k + 1, figsize=(1.9 * (k + 1), 2.4))
    truth = emb.image_of_query[q]
    panels = [(truth, "said about")] + [(i, f"#{n + 1}") for n, i in enumerate(top)]
    for ax, (i, title) in zip(axes, panels):
        ax.imshow(emb.index.load_image(emb.records[i].key))
        same = emb.class_of_image[i] == emb.class_of_image[truth]
        ax.set_title(title + (" (same class)" if title.startswith("#") and same else ""), fontsize=8,
                     color="green" if same else "black")
        ax.axis("off")
    fig.suptitle(f'"{emb.caption(q)}" ({emb.store.voices[q]})', fontsize=9)
    fig.tight_layout()
    return fig


def plot_projection(emb: TestEmbeddings, n_classes: int = 10) -> plt.Figure:
    """Speech and image embeddings of some test classes, projected on their first two principal
    components (PCA): same colour = same class; dots = speech, crosses = images."""
    classes = np.unique(emb.class_of_image)[:n_classes]
    q_mask = np.isin(emb.class_of_image[emb.image_of_query], classes)
    i_mask = np.isin(emb.class_of_image, classes)
    points = np.concatenate([emb.speech[q_mask], emb.images[i_mask]])
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    n_q = int(q_mask.sum())
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1],
                          "class": np.concatenate([emb.class_of_image[emb.image_of_query][q_mask],
                                                   emb.class_of_image[i_mask]]).astype(str),
                          "kind": ["speech"] * n_q + ["image"] * int(i_mask.sum())})
    fig, ax = plt.subplots(figsize=(6.5, 5))
    sns.scatterplot(data=frame, x="x", y="y", hue="class", style="kind", markers={"speech": "o", "image": "X"},
                    s=40, alpha=0.75, ax=ax, legend="brief")
    ax.set(title="test embeddings, first two principal components", xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def similarity_blocks(emb: TestEmbeddings, n_classes: int = 5,
                      per_class: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``per_class`` test images of each of the first ``n_classes`` test species (rows)
    against the first-voice spoken captions about them (columns), grouped by species: the cosine
    similarities, and the species of each row and of each column."""
    first_voice = np.flatnonzero(~emb.store.heldout)
    classes = np.unique(emb.class_of_image)[:n_classes]
    images = np.concatenate([np.flatnonzero(emb.class_of_image == c)[:per_class] for c in classes])
    rank = np.full(len(emb.images), len(images))
    rank[images] = np.arange(len(images))
    queries = first_voice[np.isin(emb.image_of_query[first_voice], images)]
    queries = queries[np.argsort(rank[emb.image_of_query[queries]], kind="stable")]
    sims = emb.images[images] @ emb.speech[queries].T
    return sims, emb.class_of_image[images], emb.class_of_image[emb.image_of_query[queries]]


def plot_similarity(emb: TestEmbeddings, n_classes: int = 5, per_class: int = 6) -> plt.Figure:
    """``similarity_blocks`` as a heatmap, with a white line between species: bright blocks on the
    diagonal mean the SEN puts a species' images near the captions about that species."""
    sims, row_class, col_class = similarity_blocks(emb, n_classes, per_class)
    fig, ax = plt.subplots(figsize=(7, 5))
    sns.heatmap(sims, cmap="viridis", ax=ax, xticklabels=False, yticklabels=False,
                cbar_kws={"label": "cosine similarity"})
    for k in np.flatnonzero(row_class[1:] != row_class[:-1]) + 1:
        ax.axhline(k, color="white", lw=1)
    for k in np.flatnonzero(col_class[1:] != col_class[:-1]) + 1:
        ax.axvline(k, color="white", lw=1)
    ax.set(xlabel="spoken captions (grouped by image, then species)", ylabel="images (grouped by species)",
           title=f"image-speech similarity, {len(np.unique(row_class))} unseen species x {per_class} images")
    fig.tight_layout()
    return fig


def linear_probe(x_train: np.ndarray, y_train: Sequence, x_test: np.ndarray, y_test: Sequence,
                 steps: int = 200, lr: float = 1e-3, seed: int = 0) -> float:
    """Test accuracy of a linear classifier (softmax regression on standardised features,
    full-batch Adam) fit on (``x_train``, ``y_train``); labels are any hashable values.

    Written by hand (a few lines of torch) because scikit-learn is not a dependency."""
    import torch
    import torch.nn.functional as F

    values = sorted({str(v) for v in list(y_train) + list(y_test)})
    y_tr = torch.tensor([values.index(str(v)) for v in y_train])
    y_te = torch.tensor([values.index(str(v)) for v in y_test])
    x_tr = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
    x_te = torch.as_tensor(np.asarray(x_test, dtype=np.float32))
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(x_tr.shape[1], len(values), generator=g) * 0.01).requires_grad_()
    b = torch.zeros(len(values), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(x_tr @ w + b, y_tr).backward()
        opt.step()
    with torch.no_grad():
        return float(((x_te @ w + b).argmax(1) == y_te).float().mean())


def attribute_probe(train_features: np.ndarray, train_records: list, test_features: np.ndarray,
                    test_records: list, steps: int = 200, seed: int = 0) -> pd.Series:
    """How well each attribute can be read off image features of UNSEEN species: one
    ``linear_probe`` per attribute, fit on the training images and scored on the test images. An
    upper bound, in spirit, on what a retrieval through a linear projection of these features can
    get right about that attribute."""
    accuracy = {attr: linear_probe(train_features, [r.attributes[attr] for r in train_records], test_features,
                                   [r.attributes[attr] for r in test_records], steps=steps, seed=seed)
                for attr in sorted(train_records[0].attributes)}
    return pd.Series(accuracy, name="test accuracy")


def mention_probe(train_embeddings: np.ndarray, train_mentions: list[dict], test_embeddings: np.ndarray,
                  test_mentions: list[dict], steps: int = 500, lr: float = 1e-2, seed: int = 0) -> pd.Series:
    """How well each attribute a caption MENTIONS can be read off its embedding: per attribute, a
    ``linear_probe`` fit on the training captions that mention it and scored on the test captions
    that mention it. Captions that do not mention an attribute carry no information about it, so
    they are left out (an ``attribute_probe`` of caption embeddings would count them as errors)."""
    accuracy = {}
    for attr in sorted({a for m in train_mentions for a in (m or {})}):
        tr = [i for i, m in enumerate(train_mentions) if attr in (m or {})]
        te = [i for i, m in enumerate(test_mentions) if attr in (m or {})]
        if tr and te:
            accuracy[attr] = linear_probe(train_embeddings[tr], [train_mentions[i][attr] for i in tr],
                                          test_embeddings[te], [test_mentions[i][attr] for i in te],
                                          steps=steps, lr=lr, seed=seed)
    return pd.Series(accuracy, name="test accuracy")


def probe_table(cfg, data_dir: str | Path, sen_dir: str | Path) -> pd.DataFrame:
    """``attribute_probe`` of the frozen backbone's features (centre view) and of the trained SEN
    image embeddings, side by side, with the chance level (the most frequent value)."""
    index = read_dataset(data_dir)
    train, test = index.split("train"), index.split("test")
    emb = Path(sen_dir) / "embeddings"
    table = pd.DataFrame({
        f"frozen {cfg.sen.backbone} features": attribute_probe(
            backbone_features(index, "train", cfg.sen, cfg.data.image_size, cfg.seed)[:, 0], train,
            backbone_features(index, "test", cfg.sen, cfg.data.image_size, cfg.seed)[:, 0], test),
        "SEN image embeddings": attribute_probe(load_array(emb / "image_train.npy"), train,
                                                load_array(emb / "image_test.npy"), test),
    })
    table["chance (most frequent value)"] = [
        pd.Series([str(r.attributes[a]) for r in test]).value_counts(normalize=True).iloc[0] for a in table.index]
    return table.round(3)


KIND_COLOURS = {"colour": "tab:red", "part": "tab:blue", "size or shape": "tab:green", "count": "tab:purple"}


def plot_listening(heard, dataset: str) -> plt.Figure:
    """One utterance: its log-mel features with the words said, and under them the encoder's
    attention over time (averaged over feature dimensions, and where the dimensions peak). Words
    that say an attribute are shaded by kind. ``heard``: a ``word_attention.Listening``."""
    fig, (ax_mel, ax_att) = plt.subplots(2, 1, figsize=(11, 5), sharex=True,
                                         gridspec_kw={"height_ratios": [1, 1.2]})
    hop = heard.centres_s[1] - heard.centres_s[0] if len(heard.centres_s) > 1 else 0.04
    duration = len(heard.features) * hop / 4    # an output frame every 4 input frames
    ax_mel.imshow(heard.features.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, duration, 0, heard.features.shape[1]))
    ax_mel.set(ylabel="mel bin")
    fig.suptitle(f'"{heard.text}"', fontsize=10)
    uniform = 1 / len(heard.weights)
    ax_att.plot(heard.centres_s, heard.weights / uniform, color="black", label="attention (mean over dimensions)")
    ax_att.bar(heard.centres_s, heard.peaks / uniform, width=hop * 0.9, color="grey", alpha=0.5,
               label="dimensions peaking at this frame")
    ax_att.axhline(1, ls=":", color="grey")
    ax_att.set(xlabel="time (s)", ylabel="x uniform", ylim=(0, None))
    for w in heard.words:
        kind = word_kind(w.word, dataset)
        ax_mel.axvline(w.start_s, color="white", lw=0.6)
        ax_att.axvline(w.start_s, color="lightgrey", lw=0.6)
        if kind in KIND_COLOURS:
            ax_att.axvspan(w.start_s, w.end_s, color=KIND_COLOURS[kind], alpha=0.18)
        ax_mel.text((w.start_s + w.end_s) / 2, heard.features.shape[1] * 1.02, w.word, ha="center",
                    va="bottom", fontsize=8, rotation=40, color=KIND_COLOURS.get(kind, "black"))
    kinds = [k for k in KIND_COLOURS if any(word_kind(w.word, dataset) == k for w in heard.words)]
    first = ax_att.legend(loc="upper left", fontsize=8)
    ax_att.add_artist(first)
    ax_att.legend([plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k], alpha=0.3) for k in kinds], kinds,
                  loc="upper right", fontsize=8, title="words saying a")
    fig.tight_layout()
    return fig


def listening_table(sen_dir: str | Path, k: int = 10, chance: dict[str, float] | None = None) -> pd.DataFrame:
    """Speech->image retrieval of every query group of the sen step, the listening tests
    included, with each group's attribute P@k against the training voices'; with ``chance``
    (``retrieval_chance`` of the listening captions) a last row of what a random ranking scores."""
    results = read_json(Path(sen_dir) / "results.json")
    key = f"attribute_precision@{k}"
    table = pd.DataFrame({name: {key: r.get(key), "speech_to_image_R@10": r.get("speech_to_image_R@10"),
                                 "class_mAP_all_queries": r.get("class_mAP_all_queries"), "queries": r.get("queries")}
                          for name, r in results.items() if name != "text"}).T
    if key in table and "speech (training voices)" in table.index and table[key].notna().all():
        table.insert(1, "vs training voices", table[key].astype(float) - float(table.loc["speech (training voices)", key]))
    if chance is not None:
        table.loc[CHANCE_ROW] = pd.Series({c: round(chance[c], 4) for c in table.columns if c in chance})
    return table
