"""Tables and plots for the data tour of notebook 01."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..data.build import toy_module
from ..data.layout import DatasetIndex


def split_table(index: DatasetIndex) -> pd.DataFrame:
    """Images and classes per split."""
    rows = [{"split": s, **c} for s, c in index.info["counts"].items()]
    return pd.DataFrame(rows).set_index("split")


def class_grid(index: DatasetIndex, split: str = "train", n_classes: int = 6, per_class: int = 6,
               with_name: bool = True) -> plt.Figure:
    """A grid of images: one row per class, ``per_class`` images of that class."""
    records = index.split(split)
    by_class: dict[int, list] = {}
    for r in records:
        by_class.setdefault(r.class_id, []).append(r)
    class_ids = list(by_class)[:n_classes]
    cols = min(per_class, max(len(by_class[c]) for c in class_ids))
    fig, axes = plt.subplots(len(class_ids), cols, figsize=(1.4 * cols + (2.2 if with_name else 0),
                                                             1.45 * len(class_ids)), squeeze=False)
    for row, cid in enumerate(class_ids):
        for col in range(cols):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(by_class[cid]):
                ax.imshow(index.load_image(by_class[cid][col].key))
        if with_name:
            axes[row][0].text(-0.1, 0.5, by_class[cid][0].class_name.replace("_", " "),
                              transform=axes[row][0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{index.name}: {split} classes", fontsize=10)
    fig.tight_layout()
    return fig


def captions_beside_images(index: DatasetIndex, keys: list[str], n_captions: int = 3) -> plt.Figure:
    """Images with some of their captions printed beside them."""
    fig, axes = plt.subplots(len(keys), 2, figsize=(10, 1.7 * len(keys)),
                             gridspec_kw={"width_ratios": [1, 5]}, squeeze=False)
    for (ax_img, ax_txt), key in zip(axes, keys):
        rec = index.record(key)
        ax_img.imshow(index.load_image(key))
        ax_img.axis("off")
        ax_txt.axis("off")
        ax_txt.text(0, 0.5, "\n".join(f"{i}. {c}" for i, c in enumerate(rec.captions[:n_captions])),
                    va="center", fontsize=9, wrap=True)
    fig.tight_layout()
    return fig


def attribute_frame(index: DatasetIndex) -> pd.DataFrame:
    """One row per image: split, class and each ground-truth attribute (toy datasets)."""
    rows = [{"key": r.key, "split": r.split, "class": r.class_name, **(r.attributes or {})}
            for r in index.records]
    return pd.DataFrame(rows)


def attribute_counts_plot(index: DatasetIndex, attributes: list[str] | None = None) -> plt.Figure:
    """How often each attribute value occurs among the classes of each split (seaborn)."""
    if not index.classes or index.classes[0].get("attributes") is None:
        raise ValueError(f"dataset {index.name} has no ground-truth attributes to plot")
    frame = pd.DataFrame([{"split": c["split"], **c["attributes"]} for c in index.classes])
    attributes = attributes or [c for c in frame.columns if c != "split"]
    cols = 3
    rows = -(-len(attributes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, attr in zip(axes.flat, attributes):
        order = frame[attr].value_counts().index
        sns.countplot(data=frame, y=attr, hue="split", order=order, ax=ax)
        ax.set_title(attr, fontsize=9)
        ax.set_xlabel("classes")
        ax.set_ylabel("")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(attributes):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def mention_counts(index: DatasetIndex) -> pd.Series:
    """How often each attribute is mentioned by a caption (what the speech will talk about)."""
    counts: dict[str, int] = {}
    for r in index.records:
        for m in r.mentions or ():
            for attr in m:
                counts[attr] = counts.get(attr, 0) + 1
    return pd.Series(counts, name="mentions").sort_values(ascending=False)


def part_masks_figure(dataset: str, class_id: int, index: int = 0, size: int = 128,
                      seed: int = 0) -> plt.Figure:
    """A toy image beside the masks of its coloured parts: the ground truth later metrics use."""
    module = toy_module(dataset)
    cls = module.class_table()[class_id]
    image, masks = module.render(cls, index, size=size, seed=seed, with_masks=True)
    parts = [(attr, part) for attr, part in module.COLOR_PARTS.items() if masks[part].any()]
    fig, axes = plt.subplots(1, len(parts) + 1, figsize=(2.2 * (len(parts) + 1), 2.6))
    axes[0].imshow(image)
    axes[0].set_title(cls.name.split(".", 1)[-1].replace("_", " "), fontsize=8)
    for ax, (attr, part) in zip(axes[1:], parts):
        ax.imshow(masks[part], cmap="gray")
        ax.set_title(f"{part}: {cls.attributes[attr]}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def scenes_figure(class_ids: list[int], index: int = 0, size: int = 64, seed: int = 0) -> plt.Figure:
    """The same ToyBirds images in the natural scene (the ``toybirds`` profile) and in the plain
    scene (``toybirds_plain``, the default): one column per species."""
    scenes = {"natural scene\n(toybirds)": toy_module("toybirds"), "plain scene\n(toybirds_plain)":
              toy_module("toybirds_plain")}
    table = toy_module("toybirds").class_table()
    fig, axes = plt.subplots(len(scenes), len(class_ids), figsize=(1.5 * len(class_ids) + 1.2, 3.2),
                             squeeze=False)
    for row, (label, module) in enumerate(scenes.items()):
        for col, cid in enumerate(class_ids):
            ax = axes[row][col]
            ax.imshow(module.render(table[cid], index, size=size, seed=seed))
            ax.set_xticks([]), ax.set_yticks([])
        axes[row][0].set_ylabel(label, fontsize=8)
    fig.suptitle("the same species, image and pose draws, in both scenes", fontsize=9)
    fig.tight_layout()
    return fig
