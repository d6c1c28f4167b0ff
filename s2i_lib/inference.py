"""Speech (or a typed caption, spoken by a TTS voice) -> SEN embedding -> generated images.

The one path from a caption to a picture, shared by the evaluation (colour swaps, held-out voices),
the demo notebook and ``python -m s2i_lib generate``::

    s2i = steps.profile.speech_to_image(cfg)            # the sen + gan steps of a profile, once built
    wave = s2i.speak("a small bird with a red crown", voice="espeak:en-us")
    emb = s2i.embed([s2i.features(wave)])              # (1, D), unit norm
    images = s2i.generate(emb, n=4, seed=0)            # (1, 4, 3, S, S) uint8, the last stage

Noise: ``generate`` draws ``z`` (and the conditioning noise) from ``seed`` alone, so the same seed
with two captions uses the same noise: what the colour experiment needs.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import BadFileError, load_checkpoint, require_finite
from .device import precision
from .gan.trainer import GENERATOR_FILE, load_generator
from .progress import tqdm
from .sen.speech_encoder import MIN_FRAMES, SpeechEncoder
from .speech.features import log_mel
from .speech.tts import load_synthesizer, sample_params
from .step_configs import SenConfig, SpeechConfig


def load_speech_encoder(sen_dir: str | Path, device: torch.device | str = "cpu") -> SpeechEncoder:
    """The trained speech encoder of a ``sen`` step folder (eval mode)."""
    path = Path(sen_dir) / "speech_encoder.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build the sen step first "
                                f"(python -m s2i_lib sen --profile ...)")
    state = load_checkpoint(path)
    try:
        fields = {f for f in SenConfig.__dataclass_fields__}
        sen_cfg = SenConfig(**{k: v for k, v in state["sen"].items() if k in fields})
        encoder = SpeechEncoder.from_config(sen_cfg, state["n_mels"])
        encoder.load_state_dict(state["state_dict"])
    except Exception as e:   # a foreign file fails here (KeyError, TypeError, RuntimeError...)
        raise BadFileError(f"{path} is damaged or not a speech encoder ({type(e).__name__} while "
                           f"loading it)") from None
    require_finite(encoder, path)
    return encoder.to(device).eval()


# Seeds are 0 .. 2**63 - 1: torch takes up to 2**64 - 1 (and wraps negative ones), but a signed
# 64-bit range survives every store a seed goes through (JSON readers, numpy int64, databases).
MAX_SEED = 2**63 - 1


def noise(n: int, z_dim: int, cond_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, eps) for ``n`` images, from ``seed`` (0 .. ``MAX_SEED``) alone."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED} (2**63 - 1), got {seed}")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, z_dim, generator=g), torch.randn(n, cond_dim, generator=g)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (..., 3, H, W) -> uint8 (..., H, W, 3)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


@dataclass
class SpeechToImage:
    speech_encoder: SpeechEncoder
    generator: torch.nn.Module
    speech: SpeechConfig          # the speech step's settings: sample rate and features
    device: torch.device
    profile: str = "PROFILE"      # named in the messages that say how to rebuild a step

    @classmethod
    def from_dirs(cls, sen_dir: str | Path, gan_dir: str | Path, speech: SpeechConfig,
                  device: torch.device | str = "cpu", profile: str = "PROFILE") -> "SpeechToImage":
        """The models of a ``sen`` and a ``gan`` step folder, hearing speech as the ``speech``
        step's settings say. A missing file is a FileNotFoundError, a damaged one a BadFileError;
        both say which command (for ``profile``) rebuilds it."""
        gen_path = Path(gan_dir) / GENERATOR_FILE
        if not gen_path.exists():
            raise FileNotFoundError(f"{gen_path} is missing: build the gan step first "
                                    f"(python -m s2i_lib gan --profile {profile})")
        device = torch.device(device)
        p = profile
        try:
            encoder = load_speech_encoder(sen_dir, device)
        except BadFileError as e:   # the gan step depends on the sen step: it is rebuilt after it
            raise BadFileError(f"{e}; rebuild it: python -m s2i_lib sen --profile {p} --force, "
                               f"then python -m s2i_lib gan --profile {p}") from None
        try:
            generator = load_generator(gen_path, device)
        except BadFileError as e:
            raise BadFileError(f"{e}; rebuild it: python -m s2i_lib gan --profile {p} --force") from None
        return cls(encoder, generator, speech, device, profile)

    # --- speech in
    def speak(self, text: str, voice: str, seed: int = 0) -> np.ndarray:
        """``text`` spoken by ``voice`` ("backend:name") at the speech step's sample rate, with the
        speech step's per-utterance randomness (rate, pitch) drawn from ``seed`` and the text."""
        synth = _synthesizer(voice, self.speech.sample_rate)
        params = sample_params(voice, seed, f"demo-{zlib.crc32(text.encode())}")
        return synth.synthesize(text, params)

    def speak_with_prosody_of(self, text: str, voice: str, reference: str, seed: int = 0) -> np.ndarray:
        """``text`` spoken by ``voice`` at the rate and pitch that ``speak(reference, voice, seed)``
        uses: two captions that differ in one word are then said the same way, so that only the
        word differs (the colour experiment)."""
        synth = _synthesizer(voice, self.speech.sample_rate)
        params = sample_params(voice, seed, f"demo-{zlib.crc32(reference.encode())}")
        return synth.synthesize(text, params)

    def features(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Log-mel features (T, n_mels) of a waveform at the speech step's sample rate."""
        s = self.speech
        return log_mel(wave, s.sample_rate, s.n_mels, s.win_ms, s.hop_ms)

    @torch.no_grad()
    def embed(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Unit-norm SEN embeddings (B, D) of a list of (T, n_mels) feature arrays."""
        if not features:
            raise ValueError("embed() needs at least one utterance")
        lengths = torch.tensor([max(len(f), MIN_FRAMES) for f in features])
        x = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
        for i, f in enumerate(features):
            x[i, :len(f)] = torch.as_tensor(f)
        with precision().autocast("sen_embedding", torch.device(self.device).type):
            return self.speech_encoder(x.to(self.device), lengths).float().cpu()

    # --- images out
    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor | np.ndarray, n: int = 1, seed: int = 0,
                 all_stages: bool = False) -> np.ndarray | list[np.ndarray]:
        """``n`` images per embedding, uint8 (B, n, S, S, 3) at the last stage (or a list, one
        array per stage, with ``all_stages``). Image j of every embedding uses the same noise."""
        emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        if emb.dim() != 2:
            raise ValueError(f"embeddings must be (B, D), got {tuple(emb.shape)}")
        b = emb.shape[0]
        z, eps = noise(n, self.generator.z_dim, self.generator.ca.cond_dim, seed)
        z, eps = z.repeat(b, 1), eps.repeat(b, 1)   # image j of every caption: the same noise
        with precision().autocast("generation", torch.device(self.device).type):
            images, _, _ = self.generator(z.to(self.device), emb.repeat_interleave(n, 0).to(self.device),
                                          eps.to(self.device))
        out = [to_uint8(im).reshape(b, n, im.shape[-2], im.shape[-1], 3) for im in images]
        return out if all_stages else out[-1]

    @torch.no_grad()
    def generate_each(self, embeddings: torch.Tensor | np.ndarray, seed: int = 0, batch_size: int = 64,
                      progress: str | bool | None = None) -> np.ndarray:
        """One image per embedding with its own noise, uint8 (B, S, S, 3) at the last stage: how test
        images are generated for evaluation. Noise row i depends only on ``seed`` and i, so the same
        embeddings in the same order give the same images, in any batch size. ``progress``: a bar
        label (or True for "generating"); None or False: no bar."""
        emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        z, eps = noise(len(emb), self.generator.z_dim, self.generator.ca.cond_dim, seed)
        size = self.generator.stage_sizes[-1]
        out = np.empty((len(emb), size, size, 3), np.uint8)
        for start in tqdm(range(0, len(emb), batch_size),
                          desc=progress if isinstance(progress, str) else "generating", disable=not progress):
            sl = slice(start, start + batch_size)
            with precision().autocast("generation", torch.device(self.device).type):
                images, _, _ = self.generator(z[sl].to(self.device), emb[sl].to(self.device),
                                              eps[sl].to(self.device))
            out[sl] = to_uint8(images[-1])
        return out


_SYNTHS: dict[tuple[str, int], object] = {}


def _synthesizer(voice: str, sample_rate: int):
    """Loaded voices are kept: loading Piper takes a second, synthesis a fraction of that."""
    key = (voice, sample_rate)
    if key not in _SYNTHS:
        _SYNTHS[key] = load_synthesizer(voice, sample_rate=sample_rate, threads=1)
    return _SYNTHS[key]
