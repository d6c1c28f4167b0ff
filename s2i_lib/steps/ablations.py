"""The ablations of the paper's Table 1 (and speech against text), trained and evaluated on the same
data, budget and judges as the full model (``eval.ablations: true``, or ``eval --ablations``).

============================== ======================================================================
variant                        what changes
============================== ======================================================================
w/o dense                      StackGAN-v2 stacking: a stage does not concatenate the previous one's
                               features (``gan.dense: false``)
w/o RS                         no relation supervisor (``gan.relation_supervisor: false``)
w/o SEN                        the speech encoder is not trained: the GAN is conditioned on the
                               embeddings of a randomly initialised SED (the paper's "w/o SEN")
text-conditioned               the GAN is conditioned on the text baseline's embeddings of the
                               written captions (``gan.condition_on: text``)
============================== ======================================================================

Each variant trains in ``<eval>/ablations/<name>/gan`` (resumable: an interrupted run continues
from there; the full model's figures, in ``<eval>/model_results.json``, are not computed again)
and costs one more ``gan`` step. The text-conditioned model is evaluated on the written test
captions (no voices, so no colour swap).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..artifacts import json_once, load_array
from ..config import Config
from ..data.layout import ImageRecord, read_dataset
from ..device import select_device
from ..evaluation.protocol import QueryGroup, evaluate_model, test_queries
from ..gan.trainer import GENERATOR_FILE, load_generator
from ..inference import SpeechToImage, load_speech_encoder
from ..sen.speech_encoder import SpeechEncoder
from ..sen.training import embed_queries, speech_queries, text_queries
from ..speech.features import FeatureStore
from .gan import group_by_image, train_gan_step
from .profile import evaluation_settings

VARIANTS: dict[str, dict] = {
    "w/o dense": {"dense": False},
    "w/o RS": {"relation_supervisor": False},
    "w/o SEN": {},
    "text-conditioned": {"condition_on": "text"},
}


def untrained_speech_encoder(cfg: Config, n_mels: int) -> SpeechEncoder:
    """The SED with its initial weights (seeded), as in the paper's "w/o SEN"."""
    torch.manual_seed(cfg.seed + 1)
    return SpeechEncoder.from_config(cfg.sen, n_mels).eval()


def utterance_embeddings(encoder: SpeechEncoder, speech_dir: Path, split: str,
                         records: list[ImageRecord], device: torch.device) -> np.ndarray:
    """Embeddings of a split's utterances by ``encoder``, in the SEN export's row order."""
    store = FeatureStore(speech_dir, split)
    queries = speech_queries(store, {r.key: i for i, r in enumerate(records)})
    return embed_queries(encoder.to(device), queries, 256, device)


def run_ablations(cfg: Config, inputs: dict[str, Path], out_dir: Path, judges, test: list[ImageRecord]) -> dict:
    device = select_device(cfg.device, cfg.precision)
    train = read_dataset(inputs["data"]).split("train")
    results = {}
    for name, change in VARIANTS.items():
        folder = out_dir / "ablations" / name.replace("/", "").replace(" ", "_")
        # read back if an earlier, interrupted run of this step evaluated it already
        results.update(json_once(folder / "results.json", lambda: _train_and_evaluate(
            name, change, folder, cfg, inputs, judges, test, train, device)))
    return results


def _train_and_evaluate(name: str, change: dict, folder: Path, cfg: Config, inputs: dict[str, Path],
                        judges, test: list[ImageRecord], train: list[ImageRecord], device: torch.device) -> dict:
    """Train the variant ``name``'s generator in ``folder / "gan"`` and return its figures."""
    v_cfg = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, **change))
    speech_encoder = load_speech_encoder(inputs["sen"], device)
    train_embeddings = None
    test_emb = load_array(Path(inputs["sen"]) / "embeddings" / "speech_test.npy")
    if name == "w/o SEN":
        speech_encoder = untrained_speech_encoder(cfg, speech_encoder.n_mels).to(device)
        store = FeatureStore(inputs["speech"], "train")
        wanted = {r.key for r in train}
        train_embeddings = group_by_image(
            utterance_embeddings(speech_encoder, inputs["speech"], "train", train, device),
            [k for k in store.keys if k in wanted], train)
        test_emb = utterance_embeddings(speech_encoder, inputs["speech"], "test", test, device)
    print(f"[eval] ablation {name!r}: training its generator in {folder / 'gan'}")
    train_gan_step(v_cfg, folder / "gan", inputs, embeddings=train_embeddings)
    s2i = SpeechToImage(speech_encoder, load_generator(folder / "gan" / GENERATOR_FILE, device), cfg.speech, device,
                        cfg.profile)
    if name == "text-conditioned":
        q = text_queries(test, cfg.speech.captions_per_image)
        groups = {"written captions": QueryGroup(
            load_array(Path(inputs["sen"]) / "embeddings" / "text_test.npy"), q.image_pos, q.caption_index, q.voices)}
        v_cfg = dataclasses.replace(v_cfg, eval=dataclasses.replace(cfg.eval, colour_swaps=0))
    else:
        groups = test_queries(inputs["speech"], test_emb, test)
    figures = evaluate_model(s2i, groups, judges, test, evaluation_settings(v_cfg), folder, name)
    return {f"{name}, {g}": f for g, f in figures.items()}
