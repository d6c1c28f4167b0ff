"""The ``data`` step: the dataset (a toy dataset rendered, or a prepared CUB/Oxford folder indexed;
``s2i_lib/data/build.py``), then the evaluation's instruments of it (``evaluation.protocol.instruments``).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..config import Config
from ..data.build import TOY_DATASETS, build_toy_dataset, link_prepared_dataset
from ..device import cpu_count, select_device
from ..evaluation.inception_score import TooFewImagesError
from ..evaluation.protocol import instruments
from .profile import evaluation_settings


def build_data_step(cfg: Config, out_dir: Path, inputs: dict[str, Path]) -> dict:
    """The dataset of the ``data`` step: ``cfg.data.dataset`` rendered (toy datasets) or indexed
    (a folder prepared by ``data_scripts/prepare_*.py``) into ``out_dir``."""
    d = cfg.data
    if d.dataset in TOY_DATASETS:
        info = build_toy_dataset(out_dir, d.dataset, d.image_size, d.images_per_class, cfg.seed,
                                 d.n_train_classes, d.n_test_classes, min(d.workers, cpu_count()))
    else:
        prepared = Path(d.root).expanduser()
        if not prepared.is_absolute():
            prepared = Path(__file__).resolve().parents[2] / prepared
        info = link_prepared_dataset(out_dir, prepared, d.n_train_classes, d.n_test_classes)
    return {"dataset": info["name"], "counts": info["counts"],
            "captions_per_image": info["captions_per_image"]}


def data_step(cfg: Config, out_dir: Path, inputs: dict[str, Path]) -> dict:
    """Work function of the ``data`` step (see ``s2i_lib.pipeline``): the dataset
    (``build_data_step``), then its instruments at the size the eval step measures (the
    GAN's last stage). They are the dataset's, not a model's: built here, the eval step measures the
    model only, and a new GAN or an ablation is evaluated without them being built again."""
    figures = build_data_step(cfg, out_dir, inputs)
    select_device(cfg.device, cfg.precision)   # threads and precision, as in the eval step
    t0 = time.perf_counter()
    size = cfg.gan.stage_sizes[-1]
    try:
        built = instruments(evaluation_settings(cfg), out_dir, size)
    except TooFewImagesError as e:   # a dataset too small to measure on (one image per class): the
        # dataset is still built; the eval step will stop with the same message if it is asked for
        print(f"[data] the evaluation's instruments were not built: {e}")
        figures["instruments"] = {"size": size, "not_built": str(e)}
        return figures
    judge = built.attribute_judge.report if built.attribute_judge else None
    figures["instruments"] = {
        "size": size, "time_s": round(time.perf_counter() - t0, 1),
        "is_classifier_heldout_accuracy": round(built.is_classifier.report["heldout_accuracy"], 4),
        "fid_floor": None if built.floor is None else round(built.floor["fid"], 2),
        # on held-out rendered images, the attribute it reads worst
        "attribute_judge_lowest_heldout_accuracy": (
            None if judge is None else round(min(judge["heldout_rendered"]["per_attribute"].values()), 4))}
    return figures
