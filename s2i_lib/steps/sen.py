"""The ``sen`` step: train the speech embedding network, select it on validation classes, export
embeddings, and evaluate retrieval on the unseen test classes (docs/paper_notes.md §4 and §5).

The network, its training loop and the retrieval figures are ``s2i_lib/sen/training.py``; this
module wires them to the profile's data and speech steps and writes ``runs/<profile>/sen/``: the
trained encoders, their embeddings of every utterance, image and written caption (``embeddings/``),
the listening tests' (``speech/listening.py``) and the retrieval figures (``results.json``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..artifacts import atomic_path, atomic_write_json
from ..config import Config
from ..data.layout import ImageRecord, read_dataset
from ..device import select_device
from ..sen.backbones import backbone_spec
from ..sen.speech_encoder import SpeechEncoder
from ..sen.training import (Queries, SenModel, TextEncoder, backbone_features, embed_images, embed_queries,
                            retrieval_figures, speech_queries, text_queries, train_sen_model,
                            validation_classes)
from ..speech.features import FeatureStore, pad_collate
from ..speech.listening import group_texts, listening_captions, listening_groups, speak_groups


def train_sen_step(cfg: Config, out_dir: Path, inputs: dict[str, Path]) -> dict:
    """Work function of the ``sen`` step (see ``s2i_lib.pipeline``)."""
    device = select_device(cfg.device, cfg.precision)
    torch.manual_seed(cfg.seed)
    index = read_dataset(inputs["data"])
    train_all, test = index.split("train"), index.split("test")
    val_classes = set(validation_classes([r.class_id for r in train_all], cfg.sen.val_fraction, cfg.seed))
    train = [r for r in train_all if r.class_id not in val_classes]
    val = [r for r in train_all if r.class_id in val_classes]
    atomic_write_json(out_dir / "val_classes.json", sorted(val_classes))

    t0 = time.perf_counter()
    feats_train_all = backbone_features(index, "train", cfg.sen, cfg.data.image_size, cfg.seed)
    feats_test = np.asarray(backbone_features(index, "test", cfg.sen, cfg.data.image_size, cfg.seed))
    feature_time = time.perf_counter() - t0
    pos_all = {r.key: i for i, r in enumerate(train_all)}
    train_rows = np.array([pos_all[r.key] for r in train])
    val_rows = np.array([pos_all[r.key] for r in val])
    feats_train = np.asarray(feats_train_all[train_rows])
    feats_val = np.asarray(feats_train_all[val_rows])

    store_train, store_test = FeatureStore(inputs["speech"], "train"), FeatureStore(inputs["speech"], "test")
    q_train = speech_queries(store_train, {r.key: i for i, r in enumerate(train)})
    q_val = speech_queries(store_train, {r.key: i for i, r in enumerate(val)})
    q_test = speech_queries(store_test, {r.key: i for i, r in enumerate(test)})

    label_of = {c: i for i, c in enumerate(sorted({r.class_id for r in train}))}
    labels = np.array([label_of[r.class_id] for r in train])
    raw_class = np.array([r.class_id for r in train])
    feat_dim = backbone_spec(cfg.sen.backbone).feat_dim

    # speech
    t1 = time.perf_counter()
    speech_model = SenModel(SpeechEncoder.from_config(cfg.sen, store_train.n_mels), feat_dim, cfg.sen,
                            len(label_of)).to(device)
    history = train_sen_model(speech_model, q_train, feats_train, labels, raw_class, q_val, feats_val,
                              val, cfg.sen, out_dir, "speech", device, cfg.seed)
    speech_time = time.perf_counter() - t1
    figures: dict = {"device": str(device), "backbone": cfg.sen.backbone,
                     "feature_cache_time_s": round(feature_time, 1),
                     "speech_train_time_s": round(speech_time, 1),
                     "images": {"train": len(train), "val": len(val), "test": len(test)},
                     "val_classes": len(val_classes), "speech_history": history}

    img_test = embed_images(speech_model.image_encoder, feats_test, device)
    sp_test = embed_queries(speech_model.query_encoder, q_test, 256, device)
    seen, held = ~q_test.heldout, q_test.heldout
    results = {"speech (training voices)": retrieval_figures(sp_test[seen], q_test.subset(seen), img_test, test)}
    if held.any():
        results["speech (held-out voices)"] = retrieval_figures(sp_test[held], q_test.subset(held), img_test, test)
    t3 = time.perf_counter()
    listened = listening_tests(cfg, speech_model.query_encoder, test, img_test, device, out_dir / "embeddings")
    if listened:
        results.update(listened)
        figures["listening_time_s"] = round(time.perf_counter() - t3, 1)

    # export: embeddings in FeatureStore row order, per data split, and the trained encoders
    emb_dir = out_dir / "embeddings"
    for split, store, records in (("train", store_train, train_all), ("test", store_test, test)):
        q_all = speech_queries(store, {r.key: i for i, r in enumerate(records)})
        _save_npy(emb_dir / f"speech_{split}.npy", embed_queries(speech_model.query_encoder, q_all, 256, device))
        feats = feats_train_all if split == "train" else feats_test
        _save_npy(emb_dir / f"image_{split}.npy", embed_images(speech_model.image_encoder, np.asarray(feats), device))
    with atomic_path(out_dir / "speech_encoder.pt") as tmp:
        torch.save({"state_dict": speech_model.query_encoder.state_dict(), "sen": cfg.to_dict()["sen"],
                    "n_mels": store_train.n_mels}, tmp)
    with atomic_path(out_dir / "image_encoder.pt") as tmp:
        torch.save({"state_dict": speech_model.image_encoder.state_dict(), "backbone": cfg.sen.backbone,
                    "backbone_input_size": cfg.sen.backbone_input_size,
                    "feat_dim": feat_dim, "embed_dim": cfg.sen.embed_dim}, tmp)

    # text baseline: the same network and losses on the written captions
    if cfg.sen.text_baseline:
        t2 = time.perf_counter()
        n_cap = cfg.speech.captions_per_image
        text_model = SenModel(TextEncoder(cfg.sen), feat_dim, cfg.sen, len(label_of)).to(device)
        figures["text_history"] = train_sen_model(
            text_model, text_queries(train, n_cap), feats_train, labels, raw_class,
            text_queries(val, n_cap), feats_val, val, cfg.sen, out_dir, "text", device, cfg.seed)
        figures["text_train_time_s"] = round(time.perf_counter() - t2, 1)
        q_text = text_queries(test, n_cap)
        results["text"] = retrieval_figures(embed_queries(text_model.query_encoder, q_text, 256, device), q_text,
                                            embed_images(text_model.image_encoder, feats_test, device), test)
        for split, records in (("train", train_all), ("test", test)):
            q = text_queries(records, n_cap)
            _save_npy(emb_dir / f"text_{split}.npy", embed_queries(text_model.query_encoder, q, 256, device))
        with atomic_path(out_dir / "text_encoder.pt") as tmp:
            torch.save({"state_dict": text_model.query_encoder.state_dict(), "sen": cfg.to_dict()["sen"]}, tmp)
    figures["test"] = results
    atomic_write_json(out_dir / "results.json", results)
    return figures


def listening_jobs(cfg: Config, test: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray, list]:
    """(image positions, caption indices, [(group, what it says), ...]) of the listening tests
    (``speech/listening.py``): every group says the same test captions, or their attributes in held-out
    frames; a group with nothing to say (held-out phrasings of a real dataset) is left out."""
    groups = listening_groups(cfg.speech, cfg.sen)
    pos, cap = listening_captions(len(test), cfg.speech.captions_per_image, cfg.sen.listening_captions)
    texts = [test[p].captions[c] for p, c in zip(pos, cap)]
    mentions = [test[p].mentions[c] for p, c in zip(pos, cap)] if test[0].mentions is not None else None
    said = [(g, group_texts(g, texts, mentions, cfg.data.dataset, cfg.seed)) for g in groups]
    return pos, cap, [(g, t) for g, t in said if t is not None]


def listening_tests(cfg: Config, encoder: nn.Module, test: list[ImageRecord], img_test: np.ndarray,
                    device: torch.device, emb_dir: Path, progress: bool = True) -> dict:
    """Retrieval figures of every listening group (``listening_jobs``) on the same test
    captions; each group's embeddings go to ``emb_dir/listening/<group>.npy``, indexed by
    ``emb_dir/listening.json`` (the evaluation generates images from them)."""
    pos, cap, jobs = listening_jobs(cfg, test)
    if not jobs:
        return {}
    spoken = speak_groups(jobs, cfg.speech, cfg.seed, cfg.speech.workers, progress)
    results, index = {}, {}
    for (group, said), feats in zip(jobs, spoken):
        queries = Queries(pos, cap, np.ones(len(pos), bool), [group.voice] * len(pos),
                          np.array([len(f) for f in feats]),
                          lambda qs, feats=feats: pad_collate([feats[int(q)] for q in qs]))
        emb = embed_queries(encoder, queries, 256, device)
        results[group.name] = retrieval_figures(emb, queries, img_test, test)
        _save_npy(emb_dir / "listening" / f"{group.slug}.npy", emb)
        index[group.name] = {"file": f"{group.slug}.npy", "voice": group.voice, "degradation": group.degradation}
        if group.held_out_phrasing:
            index[group.name]["texts"] = said
    atomic_write_json(emb_dir / "listening.json", {"image_pos": pos.tolist(), "caption_index": cap.tolist(),
                                                   "groups": index})
    return results


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array.astype(np.float32))

