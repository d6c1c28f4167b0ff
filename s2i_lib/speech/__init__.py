"""Spoken captions (TTS) and S2IGAN's log-mel front end; the ``speech`` pipeline step that runs them
is ``s2i_lib.steps.speech.build_speech_step``.

Heavy modules (torch, onnxruntime, pandas) are imported only when their functions are used.
"""
from ..voices import UnknownVoiceError, available_voices, parse_voice
from .tts import TARGET_SAMPLE_RATE, Synthesizer, WeightsNotAvailableError, load_synthesizer, sample_params
from .synthesis import (CaptionError, check_waveform, normalise_caption, plan_utterances, read_jsonl,
                        synthesize_plan)

__all__ = [
    "TARGET_SAMPLE_RATE", "Synthesizer", "UnknownVoiceError", "WeightsNotAvailableError",
    "available_voices", "load_synthesizer", "parse_voice", "sample_params",
    "CaptionError", "check_waveform", "normalise_caption", "plan_utterances", "read_jsonl",
    "synthesize_plan",
    "AudioError", "FeatureStore", "LogMel", "log_mel", "pad_collate", "read_audio",
]


def __getattr__(name: str):  # torch-based parts on demand, so `import s2i_lib.speech` stays light
    if name in ("AudioError", "FeatureStore", "LogMel", "log_mel", "pad_collate", "read_audio",
                "build_feature_store", "frame_params"):
        from . import features
        return getattr(features, name)
    raise AttributeError(f"module 's2i_lib.speech' has no attribute {name!r}")
