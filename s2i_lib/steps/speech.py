"""The ``speech`` step: dataset captions -> WAVs (manifest) -> log-mel features.

``python -m s2i_lib speech --profile P`` (through ``s2i_lib.pipeline.ensure``) calls
:func:`build_speech_step`. Its folder ``runs/<profile>/speech/`` holds::

    wavs/ab/<hash>.wav        16-bit PCM mono 22.05 kHz; content-addressed (see speech/synthesis.py)
    manifest.jsonl            one row per spoken utterance
    errors.jsonl              one row per refused caption / synthesis, with its reason
    features/<split>.npy, features/<split>.offsets.npy, features/<split>.index.json
    started.json, metrics.json   (written by s2i_lib.artifacts.run_step)

The step is resumable: after an interruption (even SIGKILL), calling it again on the same folder
keeps every WAV already written and every complete feature split, and does the rest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..data.layout import read_dataset
from ..speech.features import build_feature_store
from ..speech.synthesis import plan_utterances, synthesize_plan, utterance_summary


def build_speech_step(cfg: Config, out_dir: Path, inputs: dict[str, Path],
                      progress: bool = True) -> dict[str, Any]:
    """Synthesize the spoken captions of ``inputs["data"]`` and compute their features in ``out_dir``.

    Returns the figures for metrics.json: counts (per split / voice / backend, held-out), errors by
    reason, synthesis time, utterances/s and real-time factor per backend, feature time, frames,
    feature utterances/s and the total audio hours.
    """
    out_dir = Path(out_dir)
    index = read_dataset(inputs["data"])
    plan = plan_utterances(index.records, cfg.speech, cfg.seed)
    syn = synthesize_plan(plan, out_dir, cfg.speech, workers=cfg.speech.workers, progress=progress)
    feats = build_feature_store(out_dir, syn.manifest, cfg.speech, workers=cfg.speech.workers,
                                progress=progress)
    figures = utterance_summary(syn.manifest, syn.errors)
    figures.update({
        "dataset": index.name,
        "images": len(index.records),
        "planned": syn.figures["planned"],
        "unique_wavs": syn.figures["unique_wavs"],
        "wavs_synthesized": syn.figures["wavs_synthesized"],   # in this call (a resume does fewer)
        "wavs_reused": syn.figures["wavs_reused"],
        "synthesis_time_s": syn.figures["synthesis_time_s"],
        "synthesis_utt_per_s": syn.figures["synthesis_utt_per_s"],
        "synthesis_per_backend": syn.figures["per_backend"],
        "real_time_factor": {b: s["real_time_factor"] for b, s in syn.figures["per_backend"].items()},
        "cpu_real_time_factor": {b: s["cpu_real_time_factor"]
                                 for b, s in syn.figures["per_backend"].items()},
        "features_time_s": feats["features_time_s"],
        "features_cpu_s": feats["feature_cpu_s"],
        "frames": feats["frames_total"],
        "frames_computed": feats["frames"],
        "feature_utt_per_s": feats["feature_utt_per_s"],
        "feature_frames_per_s": feats["feature_frames_per_s"],
        "feature_splits_reused": feats["feature_splits_reused"],
    })
    return figures
