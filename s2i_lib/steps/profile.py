"""What the code below the steps needs of a profile, taken from its ``Config``: the trained models
in its run folders (the demo, the notebooks, the benchmarks) and the evaluation's settings."""
from __future__ import annotations

from pathlib import Path

import torch

from ..artifacts import step_dir
from ..config import Config
from ..device import select_device
from ..evaluation.protocol import ProtocolSettings
from ..inference import SpeechToImage


def speech_to_image(cfg: Config, runs_dir: str | Path | None = None,
                    device: torch.device | str | None = None) -> SpeechToImage:
    """The trained SEN and generator in ``cfg``'s run folders (on ``cfg.device``, or ``device``);
    a missing step is a FileNotFoundError (to build the missing or stale steps first:
    ``pipeline.ensure("gan", cfg, runs_dir)``)."""
    return SpeechToImage.from_dirs(step_dir("sen", cfg, runs_dir), step_dir("gan", cfg, runs_dir), cfg.speech,
                                   device or select_device(cfg.device, cfg.precision), cfg.profile)


def evaluation_settings(cfg: Config) -> ProtocolSettings:
    """What the evaluation protocol reads of ``cfg``: the seed, the dataset, the generated images'
    size, the eval and sen sections, and the speech step's captions and voices."""
    return ProtocolSettings(seed=cfg.seed, dataset=cfg.data.dataset, image_size=cfg.gan.stage_sizes[-1],
                            eval=cfg.eval, sen=cfg.sen, captions_per_image=cfg.speech.captions_per_image,
                            training_voices=tuple(cfg.speech.voices), heldout_voices=tuple(cfg.speech.heldout_voices))
