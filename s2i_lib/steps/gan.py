"""The ``gan`` step: train the generator on the SEN step's caption embeddings (docs/paper_notes.md §6 to §9).

Inputs: the dataset (training images), the speech step (which utterance belongs to which image)
and the SEN step (the embedding of every utterance, the text baseline's embedding of every written
caption, and the trained image encoder that the relation supervisor looks through,
``sen.image_encoder.SenImageFeatures``). The model and its training loop are ``s2i_lib/gan/``.

Outputs, in ``runs/<profile>/gan/``::

    generator.pt                  the EMA generator of the last iteration (``gan.load_generator``)
    checkpoints/latest.pt         the full training state (resume); generator_ema_<it>.pt snapshots
    samples/iter_<it>.png         sample grids: real image, then stages 1..3, fixed noise and captions
    loss_history.json             loss curves (also in metrics.json)
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from ..artifacts import atomic_path, load_array
from ..config import Config
from ..data.layout import ImageRecord, read_dataset
from ..data.torch_datasets import ImageCaptionDataset
from ..device import select_device
from ..gan.blocks import count_parameters
from ..gan.trainer import GENERATOR_FILE, GanTrainer, GanTrainingSet
from ..sen.image_encoder import SenImageFeatures
from ..sen.training import backbone_features
from ..speech.features import FeatureStore


def group_by_image(embeddings: np.ndarray, keys: list[str], records: list[ImageRecord]) -> np.ndarray:
    """(N, n_captions, D) from one embedding per utterance (``keys[i]``: its image's key).

    ``n_captions`` is the most utterances any image has; an image with fewer (a caption the speech
    step refused) repeats its own, so every image keeps only its own captions."""
    if len(embeddings) != len(keys):
        raise ValueError(f"{len(embeddings)} embeddings for {len(keys)} utterances: the SEN step's "
                         f"export does not match the speech step; rebuild the sen step")
    rows: dict[str, list[int]] = {r.key: [] for r in records}
    for i, k in enumerate(keys):
        if k in rows:
            rows[k].append(i)
    missing = [k for k, v in rows.items() if not v]
    if missing:
        raise ValueError(f"{len(missing)} images have no spoken caption (e.g. {missing[0]!r}); "
                         f"the GAN needs at least one caption per image")
    n_cap = max(len(v) for v in rows.values())
    out = np.empty((len(records), n_cap, embeddings.shape[1]), np.float32)
    for i, r in enumerate(records):
        own = rows[r.key]
        out[i] = embeddings[[own[j % len(own)] for j in range(n_cap)]]
    return out


def caption_embeddings(cfg: Config, inputs: dict[str, Path], records: list[ImageRecord],
                       split: str) -> np.ndarray:
    """The conditioning embeddings of ``records`` (a whole split, in dataset order) as
    (N, n_captions, D): the spoken captions (training voices only) or, with
    ``gan.condition_on: text``, the text baseline's embeddings of the written captions."""
    emb_dir = Path(inputs["sen"]) / "embeddings"
    if cfg.gan.condition_on == "text":
        path = emb_dir / f"text_{split}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: gan.condition_on=text needs the text "
                                    f"baseline (sen.text_baseline: true)")
        n_cap = cfg.speech.captions_per_image
        keys = [r.key for r in records for _ in range(min(n_cap, len(r.captions)))]
        return group_by_image(load_array(path), keys, records)
    store = FeatureStore(inputs["speech"], split)
    wanted = {r.key for r in records}
    rows = [i for i, k in enumerate(store.keys) if k in wanted]   # the SEN export's row order
    emb = load_array(emb_dir / f"speech_{split}.npy")
    seen = ~store.heldout[rows]
    keys = [store.keys[r] for r in rows]
    return group_by_image(emb[seen], [k for k, s in zip(keys, seen) if s], records)


def cached_view_features(cfg: Config, index, extractor: SenImageFeatures) -> torch.Tensor | None:
    """The RS features of the cached backbone views of every training image (N, views, d), or None
    when they would not be the views the GAN trains on (the data's image size is not the GAN's
    last stage) or ``gan.rs_cached_views`` is off. Builds the cache if the SEN step has not."""
    if not cfg.gan.rs_cached_views:
        return None
    if cfg.data.image_size != cfg.gan.stage_sizes[-1]:
        print(f"[gan] the cached views are {cfg.data.image_size} px, the last stage "
              f"{cfg.gan.stage_sizes[-1]} px: the RS runs the backbone on every image instead")
        return None
    return extractor.of_backbone_features(backbone_features(index, "train", cfg.sen, cfg.data.image_size, cfg.seed))


def train_gan_step(cfg: Config, out_dir: Path, inputs: dict[str, Path],
                   embeddings: np.ndarray | None = None) -> dict:
    """Work function of the ``gan`` step (see ``s2i_lib.pipeline``). ``embeddings`` (N, n_captions,
    D) replaces the SEN's (the evaluation's "w/o SEN" ablation passes those of an untrained encoder).
    ``gan.seed`` (when set) replaces ``cfg.seed`` in the GAN's own randomness only (initialisation,
    noise, batches, augmentation), not in what the SEN step made (the RS's cached views): a second
    seed of the same GAN on the same upstream steps (``--set gan.seed=1``)."""
    device = select_device(cfg.device, cfg.precision)
    seed = cfg.seed if cfg.gan.seed is None else cfg.gan.seed
    g = cfg.gan
    index = read_dataset(inputs["data"])
    train = index.split("train")
    dataset = ImageCaptionDataset(index, "train", sizes=tuple(g.stage_sizes), augment=True, seed=seed)
    if embeddings is None:
        embeddings = caption_embeddings(cfg, inputs, train, "train")
    extractor = SenImageFeatures(inputs["sen"], cfg.sen) if g.relation_supervisor else None
    rs_features = cached_view_features(cfg, index, extractor) if extractor is not None else None
    data = GanTrainingSet.from_image_caption_dataset(dataset, embeddings, rs_features)
    trainer = GanTrainer(g, data.embed_dim, out_dir, feature_extractor=extractor, device=device, seed=seed)
    print(f"[gan] {len(data)} training images x {embeddings.shape[1]} captions, conditioned on "
          f"{g.condition_on} ({data.embed_dim}-d); G {count_parameters(trainer.generator) / 1e6:.2f} M "
          f"parameters; {g.iterations} iterations of batch {g.batch_size} on {device}")
    figures = trainer.train(data)
    snapshot = out_dir / "checkpoints" / f"generator_ema_{trainer.iteration:07d}.pt"
    with atomic_path(out_dir / GENERATOR_FILE) as tmp:
        shutil.copyfile(snapshot, tmp)
    samples = sorted((out_dir / "samples").glob("iter_*.png"))
    if not samples or samples[-1].stem != f"iter_{trainer.iteration:07d}":
        samples.append(trainer.save_samples(data))
    figures.update({
        "device": str(device), "images": len(data), "captions_per_image": int(embeddings.shape[1]),
        "condition_on": g.condition_on,
        "parameters": {"generator": count_parameters(trainer.generator),
                       "discriminators": [count_parameters(d) for d in trainer.discriminators],
                       "relation_supervisor": (count_parameters(trainer.relation)
                                               if trainer.relation is not None else 0)},
        "samples": [str(p.relative_to(out_dir)) for p in samples],
        "loss_history": trainer.history,
    })
    return figures
