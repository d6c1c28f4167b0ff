"""Voice names (``"backend:name"``) and the names of the listening tests' degradations: the
vocabulary a profile may use in ``speech.voices``, ``speech.heldout_voices``, ``sen.listening_voices``
and ``sen.listening_degradations``.

Apart from the synthesizers (``speech/tts.py``) and the degradations' signal processing
(``speech/listening.py``), which import torch and ONNX Runtime: ``config`` checks a profile's names
with this module alone. The eSpeak NG languages and variants are the files of the bundled
``espeakng-loader`` data folder.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

BACKENDS = ("piper", "espeak", "tacotron2")
PIPER_VOICES = ("joe",)
TACOTRON2_VOICES = ("ljspeech", "ljspeech-gl")

# The listening tests' degradations (``speech.listening.degrade`` implements each one).
DEGRADATIONS = ("noise_10db", "reverb", "telephone")


class UnknownVoiceError(ValueError):
    """A voice name that no backend knows; the message lists the valid ones."""


# ------------------------------------------------------------------------------------- naming
def parse_voice(voice: str) -> tuple[str, str]:
    """``"espeak:en-us+f3"`` -> ``("espeak", "en-us+f3")``; an unknown voice raises UnknownVoiceError."""
    if not isinstance(voice, str) or ":" not in voice:
        raise UnknownVoiceError(f"voice {voice!r} must look like 'backend:name'. {_voices_help()}")
    backend, name = voice.split(":", 1)
    if backend not in BACKENDS:
        raise UnknownVoiceError(f"voice {voice!r}: unknown backend {backend!r}. {_voices_help()}")
    valid = {"piper": PIPER_VOICES, "tacotron2": TACOTRON2_VOICES}.get(backend)
    if valid is not None and name not in valid:
        raise UnknownVoiceError(f"voice {voice!r}: {backend} has the voices "
                                f"{', '.join(f'{backend}:{v}' for v in valid)}. {_voices_help()}")
    if backend == "espeak":
        lang, _, variant = name.partition("+")
        langs, variants = espeak_languages(), espeak_variants()
        if lang.lower() not in {x.lower() for x in langs}:
            raise UnknownVoiceError(f"voice {voice!r}: eSpeak NG has no language {lang!r}. {_voices_help()}")
        if "+" in name and variant not in variants:
            raise UnknownVoiceError(f"voice {voice!r}: eSpeak NG has no voice variant {variant!r}; "
                                    f"variants: {', '.join(variants)}. {_voices_help()}")
    return backend, name


def validate_voice(voice: str) -> None:
    parse_voice(voice)


def backend_of(voice: str) -> str:
    return parse_voice(voice)[0]


def available_voices(english_only: bool = True) -> list[str]:
    """Voices without eSpeak variants (any eSpeak language takes ``+<variant>``, see espeak_variants)."""
    langs = [x for x in espeak_languages() if not english_only or x.lower().startswith("en")]
    return ([f"piper:{v}" for v in PIPER_VOICES] + [f"espeak:{x.lower()}" for x in langs]
            + [f"tacotron2:{v}" for v in TACOTRON2_VOICES])


def _voices_help() -> str:
    try:
        en = [x.lower() for x in espeak_languages() if x.lower().startswith("en")]
        some = [v for v in espeak_variants() if v in ("f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3",
                                                      "m4", "m5", "m6", "m7", "Alicia", "Andy")]
    except RuntimeError:
        en, some = ["en-us"], ["f3"]
    return ("Valid voices: piper:joe; tacotron2:ljspeech, tacotron2:ljspeech-gl; "
            f"espeak:<language>[+<variant>] with English languages {', '.join(en)} "
            f"and variants such as {', '.join(some)} (all: s2i_lib.voices.espeak_variants()).")


@lru_cache(maxsize=1)
def _espeak_data_dir() -> Path:
    try:
        import espeakng_loader
    except ImportError as e:
        raise RuntimeError("eSpeak NG voices need the 'espeakng-loader' package "
                           "(pip install -r requirements.txt)") from e
    return Path(espeakng_loader.get_data_path())


@lru_cache(maxsize=1)
def espeak_languages() -> tuple[str, ...]:
    """Language voices of the bundled eSpeak NG (file names under ``espeak-ng-data/lang``)."""
    root = _espeak_data_dir() / "lang"
    return tuple(sorted(p.name for p in root.rglob("*") if p.is_file()))


@lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    """Voice variants (``+f3``, ``+m3``, ``+Alicia``, ...) of the bundled eSpeak NG."""
    root = _espeak_data_dir() / "voices" / "!v"
    return tuple(sorted(p.name for p in root.iterdir() if p.is_file()))

