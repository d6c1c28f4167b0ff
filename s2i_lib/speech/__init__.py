"""Spoken captions (TTS), S2IGAN's log-mel front end, and the ``speech`` pipeline step.

Heavy modules (torch, onnxruntime, pandas) are imported only when their functions are used.
"""
from .tts import (TARGET_SAMPLE_RATE, Synthesizer, UnknownVoiceError, WeightsNotAvailableError,
                  available_voices, load_synthesizer, parse_voice, sample_params)
from .synthesis import (CaptionError, check_waveform, normalise_caption, plan_utterances, read_jsonl,
                        synthesize_plan)

__all__ = [
    "TARGET_SAMPLE_RATE", "Synthesizer", "UnknownVoiceError", "WeightsNotAvailableError",
    "available_voices", "load_synthesizer", "parse_voice", "sample_params",
    "CaptionError", "check_waveform", "normalise_caption", "plan_utterances", "read_jsonl",
    "synthesize_plan",
    "AudioError", "FeatureStore", "LogMel", "log_mel", "pad_collate", "read_audio",
    "build_speech_step",
]


def __getattr__(name: str):  # torch-based parts on demand, so `import s2i_lib.speech` stays light
    if name in ("AudioError", "FeatureStore", "LogMel", "log_mel", "pad_collate", "read_audio",
                "build_feature_store", "frame_params"):
        from . import features
        return getattr(features, name)
    if name == "build_speech_step":
        from .pipeline import build_speech_step
        return build_speech_step
    raise AttributeError(f"module 's2i_lib.speech' has no attribute {name!r}")
