"""Training of the speech embedding network: queries (spoken or written captions), the model, the
training loop with model selection on validation classes, and the retrieval figures
(docs/paper_notes.md §4 and §5). The ``sen`` step (``s2i_lib/steps/sen.py``) runs it on the profile's data, exports
the embeddings and evaluates retrieval on the unseen test classes.

Differences from the original, on purpose:
- model selection uses **validation classes carved from the training classes**; the original
  selected on the test classes, which makes its test numbers optimistic;
- the frozen backbone's features are computed once per image for a fixed set of augmented views
  and cached; an epoch draws one view per image instead of running the backbone on a fresh crop;
- the attention pooling masks padded frames (see ``speech_encoder.py``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..artifacts import atomic_path, load_checkpoint
from ..step_configs import SenConfig
from ..data.layout import DatasetIndex, ImageRecord
from ..data.torch_datasets import image_cache
from ..device import precision
from ..progress import tqdm
from ..rng import rng_state, set_rng_state
from ..speech.features import FeatureStore, pad_collate
from .backbones import cache_backbone_features, load_configured_backbone
from .image_encoder import ImageEncoder
from .losses import distinctive_loss, make_classifier, matching_loss
from .retrieval import (attribute_precision_at_k, class_map, class_map_one_query_per_class,
                        recall_at_k)
from .speech_encoder import MIN_FRAMES, SpeechEncoder

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


# ------------------------------------------------------------------------------------ queries
@dataclass
class Queries:
    """Spoken (or written) captions of a set of images: what the query encoder embeds.

    ``image_pos[q]`` is the position of query q's image in the image list it goes with;
    ``fetch(qs)`` returns the encoder input of those queries as ``(padded, lengths)``.
    """
    image_pos: np.ndarray
    caption_index: np.ndarray
    heldout: np.ndarray
    voices: list[str]
    lengths: np.ndarray
    fetch: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]

    def subset(self, mask: np.ndarray) -> "Queries":
        rows = np.flatnonzero(mask)
        return Queries(self.image_pos[rows], self.caption_index[rows], self.heldout[rows],
                       [self.voices[r] for r in rows], self.lengths[rows], lambda qs: self.fetch(rows[qs]))


def speech_queries(store: FeatureStore, position_of_key: dict[str, int]) -> Queries:
    rows = np.array([i for i, k in enumerate(store.keys) if k in position_of_key], dtype=np.int64)

    def fetch(qs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_collate([store[int(rows[q])] for q in qs])

    return Queries(np.array([position_of_key[store.keys[r]] for r in rows], dtype=np.int64),
                   store.caption_index[rows], store.heldout[rows], [store.voices[r] for r in rows],
                   store.lengths[rows], fetch)


# Written captions for the text baseline: lower-case letters and a little punctuation.
TEXT_ALPHABET = " abcdefghijklmnopqrstuvwxyz',.-"


def encode_text(text: str) -> torch.Tensor:
    """Character ids (0 = padding, 1 = unknown); padded with spaces to the encoder's minimum."""
    ids = [TEXT_ALPHABET.find(ch) + 2 if ch in TEXT_ALPHABET else 1 for ch in text.lower()]
    ids += [2] * max(0, MIN_FRAMES - len(ids))
    return torch.tensor(ids, dtype=torch.int64)


def text_queries(records: list[ImageRecord], captions_per_image: int) -> Queries:
    """One query per written caption that is also spoken (the same captions as the speech)."""
    pos, cap, texts = [], [], []
    for i, r in enumerate(records):
        for c in range(min(captions_per_image, len(r.captions))):
            pos.append(i), cap.append(c), texts.append(encode_text(r.captions[c]))

    def fetch(qs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [texts[int(q)] for q in qs]
        lengths = torch.tensor([len(s) for s in seqs])
        return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True), lengths

    n = len(pos)
    return Queries(np.array(pos), np.array(cap), np.zeros(n, bool), ["text"] * n,
                   np.array([len(t) for t in texts]), fetch)


class TextEncoder(nn.Module):
    """The text baseline: character embeddings fed to the same network as the speech."""

    def __init__(self, cfg: SenConfig, width: int = 40):
        super().__init__()
        self.embed = nn.Embedding(len(TEXT_ALPHABET) + 2, width, padding_idx=0)
        self.encoder = SpeechEncoder.from_config(cfg, n_mels=width)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids), lengths)


# ------------------------------------------------------------------------------------- model
class SenModel(nn.Module):
    """Query encoder (speech or text) + image projection + the shared class head."""

    def __init__(self, query_encoder: nn.Module, feat_dim: int, cfg: SenConfig, n_classes: int):
        super().__init__()
        self.query_encoder = query_encoder
        self.image_encoder = ImageEncoder(feat_dim, cfg.embed_dim)
        self.classifier = make_classifier(cfg.embed_dim, n_classes)


def validation_classes(train_class_ids: list[int], fraction: float, seed: int) -> list[int]:
    """Training classes held out for model selection (unseen in training, like the test classes)."""
    classes = sorted(set(train_class_ids))
    n_val = max(1, round(fraction * len(classes)))
    if len(classes) - n_val < 2:
        raise ValueError(f"{len(classes)} training classes are too few to carve {n_val} validation "
                         f"class(es) and keep 2 for training; use more classes or a smaller "
                         f"sen.val_fraction")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A1]))
    return sorted(int(c) for c in rng.choice(classes, size=n_val, replace=False))


@torch.no_grad()
def embed_queries(encoder: nn.Module, queries: Queries, batch_size: int, device: torch.device) -> np.ndarray:
    """Embeddings of every query, in query order (eval mode: BN running statistics)."""
    encoder.eval()
    n = len(queries.image_pos)
    order = np.argsort(queries.lengths, kind="stable")   # similar lengths together: less padding
    out = None
    for start in range(0, n, batch_size):
        qs = order[start:start + batch_size]
        x, lengths = queries.fetch(qs)
        with precision().autocast("sen_embedding", device.type):
            e = encoder(x.to(device), lengths).float().cpu().numpy()
        if out is None:
            out = np.empty((n, e.shape[1]), np.float32)
        out[qs] = e
    return out if out is not None else np.zeros((0, 0), np.float32)


@torch.no_grad()
def embed_images(image_encoder: ImageEncoder, features: np.ndarray, device: torch.device) -> np.ndarray:
    """Embeddings of the centre view (view 0) of every image."""
    image_encoder.eval()
    x = torch.from_numpy(np.ascontiguousarray(features[:, 0], dtype=np.float32)).to(device)
    with precision().autocast("sen_embedding", device.type):
        return image_encoder(x).float().cpu().numpy()


def retrieval_figures(sp: np.ndarray, queries: Queries, img: np.ndarray, records: list[ImageRecord],
                      k: int = 10) -> dict:
    """Every retrieval figure of a set of queries against its images."""
    img_class = np.array([r.class_id for r in records])
    sp_class = img_class[queries.image_pos]
    # a listening test speaks captions of some test images, all of which it searches
    figures = recall_at_k(sp, img, queries.image_pos, both_ways=len(np.unique(queries.image_pos)) == len(img))
    figures["class_mAP_all_queries"] = class_map(sp, sp_class, img, img_class)
    first = queries.caption_index == queries.caption_index.min()
    # the original: one query per class, the caption-0 utterance of the first image of the class
    figures["class_mAP_one_query_per_class"] = class_map_one_query_per_class(
        sp[first], sp_class[first], img, img_class)
    if records and records[0].mentions is not None:
        mentions = [records[p].mentions[c] for p, c in zip(queries.image_pos, queries.caption_index)]
        figures[f"attribute_precision@{k}"] = attribute_precision_at_k(
            sp, mentions, img, [r.attributes for r in records], k=k)
    figures["queries"] = int(len(sp))
    return {k_: round(float(v), 4) if isinstance(v, float) else v for k_, v in figures.items()}


# ---------------------------------------------------------------------------------- training
MAX_SKIPPED_STEPS = 5   # per epoch: more than a rare numerical accident, the training has diverged


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def train_sen_model(model: SenModel, train_q: Queries, train_feats: np.ndarray, train_labels: np.ndarray,
                    train_class: np.ndarray, val_q: Queries, val_feats: np.ndarray,
                    val_records: list[ImageRecord], cfg: SenConfig, out_dir: Path, tag: str,
                    device: torch.device, seed: int) -> dict:
    """Train ``model``, keep the best epoch on the validation classes, resume from a checkpoint.

    An epoch is one pass over the training images with one random caption (and voice) and one
    random cached view per image, as in the original. Returns the training history.
    """
    ckpt_path, best_path = out_dir / f"{tag}_{CHECKPOINT}", out_dir / f"{tag}_{BEST}"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    history: dict = {"epoch": [], "loss": [], "matching": [], "distinctive": [], "lr": [],
                     "val_epoch": [], "val_class_mAP": [], "val_R@10": []}
    start_epoch, best = 0, {"score": -math.inf, "epoch": -1}
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
    if ckpt_path.exists():  # resume where an interrupted run stopped
        state = load_checkpoint(ckpt_path)   # on the CPU: the RNG states must stay there
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        set_rng_state(state["rng"])
        print(f"[sen/{tag}] resuming at epoch {start_epoch + 1}/{cfg.epochs}")

    queries_of_image = [[] for _ in range(len(train_feats))]
    for q, p in enumerate(train_q.image_pos):
        queries_of_image[p].append(q)
    has_query = np.array([len(q) > 0 for q in queries_of_image])
    images = np.flatnonzero(has_query)
    n_views = train_feats.shape[1]
    labels = torch.from_numpy(train_labels)
    classes = torch.from_numpy(train_class)
    eval_every = max(1, cfg.epochs // 10)

    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"SEN ({tag})", initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        lr = cfg.lr * 0.1 ** (epoch // cfg.lr_decay_every)   # step decay, epochs counted from 0
        for g in optimizer.param_groups:
            g["lr"] = lr
        model.train()
        # one random caption (and voice) per image; batches of similar length (less padding, a
        # GRU step costs the padded length), in random order
        chosen = np.array([random.choice(queries_of_image[i]) for i in images])
        order = np.argsort(train_q.lengths[chosen] + np.random.rand(len(chosen)), kind="stable")
        n_batches = len(order) // cfg.batch_size                             # drop_last
        batches = np.random.permutation(n_batches)
        sums = np.zeros(3)
        steps = skipped = 0
        for b in batches:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            batch, qs = images[idx], chosen[idx]
            views = np.random.randint(0, n_views, size=len(batch))
            x, lengths = train_q.fetch(qs)
            feats = torch.from_numpy(np.asarray(train_feats[batch, views], dtype=np.float32)).to(device)
            with precision().autocast("sen_training", device.type):
                sp = model.query_encoder(x.to(device), lengths).float()
                im = model.image_encoder(feats).float()
            l_match = matching_loss(im, sp, classes[batch].to(device), cfg.gamma)
            l_dist = (distinctive_loss(model.classifier, im, sp, labels[batch].to(device))
                      if cfg.distinctive_loss else torch.zeros((), device=device))
            loss = l_match + l_dist
            optimizer.zero_grad(set_to_none=True)
            finite = _finite(loss)
            if finite:
                loss.backward()
                finite = _finite(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
            if not finite:
                # a step that would write NaN into the weights is skipped, as torch's GradScaler
                # skips them; it happened, rarely and not reproducibly, in the bf16 training (docs/experiments.md)
                skipped += 1
                if skipped > MAX_SKIPPED_STEPS:
                    raise FloatingPointError(
                        f"SEN ({tag}): {skipped} steps of epoch {epoch + 1} had a non-finite loss or gradient; "
                        f"the last good checkpoint {ckpt_path} is kept; lower sen.lr")
                continue
            optimizer.step()
            sums += (loss.item(), l_match.item(), l_dist.item())
            steps += 1
        if steps == 0 and skipped:
            raise FloatingPointError(f"SEN ({tag}): every step of epoch {epoch + 1} had a non-finite loss or "
                                     f"gradient; the last good checkpoint {ckpt_path} is kept; lower sen.lr")
        if steps == 0:
            raise ValueError(f"sen.batch_size={cfg.batch_size} is larger than the "
                             f"{len(images)} training images: no full batch")
        mean = sums / steps
        for key, v in zip(("loss", "matching", "distinctive"), mean):
            history[key].append(round(float(v), 5))
        history["epoch"].append(epoch + 1)
        history["lr"].append(lr)
        history.setdefault("skipped_steps", []).append(skipped)   # an older checkpoint's history has none
        bar.set_postfix(loss=f"{mean[0]:.3f}")
        if (epoch + 1) % eval_every == 0 or epoch + 1 == cfg.epochs:
            sp = embed_queries(model.query_encoder, val_q, 256, device)
            im = embed_images(model.image_encoder, val_feats, device)
            fig = retrieval_figures(sp, val_q, im, val_records)
            score = fig["class_mAP_all_queries"]
            history["val_epoch"].append(epoch + 1)
            history["val_class_mAP"].append(score)
            history["val_R@10"].append(fig["speech_to_image_R@10"])
            if score > best["score"]:
                best = {"score": score, "epoch": epoch + 1}
                with atomic_path(best_path) as tmp:
                    torch.save(model.state_dict(), tmp)
        with atomic_path(ckpt_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch, "best": best, "history": history, "rng": rng_state()}, tmp)
    model.load_state_dict(load_checkpoint(best_path, map_location=device))
    history["best_epoch"], history["best_val_class_mAP"] = best["epoch"], best["score"]
    return history


# ------------------------------------------------------------------------- cached features
def backbone_features(index: DatasetIndex, split: str, sen: SenConfig, image_size: int, seed: int) -> np.ndarray:
    """Cached backbone features (N, views, D) of a split's images at ``image_size`` px, kept beside
    the dataset: they depend only on the images, the backbone and the ``seed`` of the views' crops
    (in the file name, so that runs with another seed keep their own), so a new SEN configuration
    reuses them."""
    images = image_cache(index, split, image_size)
    backbone = load_configured_backbone(sen)
    path = index.root / "cache" / (f"features_{sen.backbone}{backbone.spec.input_size}_{split}_"
                                   f"{image_size}_{sen.feature_views}v_seed{seed}.npy")
    return cache_backbone_features(sen.backbone, images, sen.feature_views, seed, path, backbone=backbone)
