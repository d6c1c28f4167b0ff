"""The ``eval`` step: generate the test images from their spoken captions and measure them
(``evaluation/protocol.py`` says how), then the table of ``results.json`` (``table.md``,
``metrics.png``). With ``eval.ablations`` it also trains and evaluates the ablated models
(``ablations.py``) and puts them in the same table.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import atomic_write_json, json_once, load_array
from ..config import Config
from ..data.layout import read_dataset
from ..device import select_device
from ..evaluation.protocol import (GROUPS, Judges, evaluate_model, image_metrics, listening_accuracy,
                                   listening_queries, test_queries)
from ..evaluation.table import write_table
from ..inference import SpeechToImage
from . import ablations
from .profile import evaluation_settings


def evaluate_step(cfg: Config, out_dir: Path, inputs: dict[str, Path]) -> dict:
    """Work function of the ``eval`` step (see ``s2i_lib.pipeline``)."""
    device = select_device(cfg.device, cfg.precision)
    index = read_dataset(inputs["data"])
    test = index.split("test")
    emb = load_array(Path(inputs["sen"]) / "embeddings" / "speech_test.npy")
    groups = test_queries(inputs["speech"], emb, test)
    settings = evaluation_settings(cfg)
    judges = Judges(settings, inputs, test, device)
    real = judges.real

    def full_model() -> dict:
        # the ceiling: the real test images under the same judges
        ref = groups[GROUPS[0]]
        results = {"real test images": image_metrics(judges, real[ref.image_pos], ref,
                                                     ref.one_per_image(len(test), cfg.seed), test, settings, real=True)}
        if judges.instruments.floor is not None:   # the FID a generator of these species can reach
            results["real training images (FID floor)"] = dict(judges.instruments.floor)
        s2i = SpeechToImage.from_dirs(inputs["sen"], inputs["gan"], cfg.speech, device, cfg.profile)
        for group, figures in evaluate_model(s2i, groups, judges, test, settings, out_dir, "S2IGAN").items():
            results[f"S2IGAN, {group}"] = figures
        return results

    # kept apart, so that a run interrupted in the ablations resumes after the full model (the
    # ablations keep theirs in ablations/<name>/results.json)
    results = json_once(out_dir / "model_results.json", full_model)
    listening = {}
    if judges.attribute_judge is not None:
        listen = listening_queries(inputs["sen"])
        if listen:
            listening = json_once(out_dir / "listening_results.json", lambda: listening_accuracy(
                SpeechToImage.from_dirs(inputs["sen"], inputs["gan"], cfg.speech, device, cfg.profile),
                listen, judges, test, cfg.seed))
    if cfg.eval.ablations:
        results.update(ablations.run_ablations(cfg, inputs, out_dir, judges, test))
    judge_figures = judges.report()
    atomic_write_json(out_dir / "results.json", {"results": results, "listening": listening, "judges": judge_figures})
    write_table(results, out_dir)
    return {"results": results, "listening": listening, "judges": judge_figures, "device": str(device)}
