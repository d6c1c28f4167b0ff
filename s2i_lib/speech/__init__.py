"""Spoken captions (TTS) and S2IGAN's log-mel front end; the ``speech`` pipeline step that runs them
is ``s2i_lib.steps.speech.build_speech_step``.

The TTS engines (onnxruntime for Piper, eSpeak NG's library) and pandas are imported only when
used; torch comes with the package (the synthesis workers' thread settings, ``device.py``).
"""
from ..voices import UnknownVoiceError, available_voices, parse_voice
from .tts import TARGET_SAMPLE_RATE, Synthesizer, WeightsNotAvailableError, load_synthesizer, sample_params
from .synthesis import (CaptionError, check_waveform, normalise_caption, plan_utterances, read_jsonl,
                        synthesize_plan)
from .features import (AudioError, FeatureStore, LogMel, build_feature_store, frame_params, log_mel,
                       pad_collate, read_audio)

__all__ = [
    "TARGET_SAMPLE_RATE", "Synthesizer", "UnknownVoiceError", "WeightsNotAvailableError",
    "available_voices", "load_synthesizer", "parse_voice", "sample_params",
    "CaptionError", "check_waveform", "normalise_caption", "plan_utterances", "read_jsonl",
    "synthesize_plan",
    "AudioError", "FeatureStore", "LogMel", "build_feature_store", "frame_params", "log_mel", "pad_collate",
    "read_audio",
]

