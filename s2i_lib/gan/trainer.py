"""Training the generator, the discriminators and the relation supervisor (docs/paper_notes.md §7 and §8).

One iteration, ``GanTrainer.train_step``, as ``condGANTrainer.train`` in the original:

1. draw ``z`` and run G once: images at every stage, ``mu``, ``logvar``;
2. update each discriminator on ``fake.detach()`` (``losses.discriminator_loss``: BCE, real -> 1,
   wrong -> 0 conditional / 1 unconditional, fake -> 0);
3. update the relation supervisor (``relation_supervisor_loss``: features of real, similar, wrong
   and the detached fake);
4. update G once, scored by the *updated* discriminators and RS:
   ``sum_i generator_adversarial_loss_i + kl_coeff * KL + rs_coeff * CE(RS(real, fake), 1)``;
5. EMA (0.999, with a warm-up for short runs) of G's parameters, kept in a separate module.

The losses are plain functions beside the parts they score (``losses.py``, ``conditioning.kl_loss``,
``relation_supervisor.py``); ``train_step`` reads as the algorithm, and the engineering sits in
small helpers beside it: the divergence guard and optimiser step (``_step``), autocast
(``_autocast``), the judges' frozen weights and DDP unwrapping in the G update
(``_judges_frozen``), the RS features, cached or computed (``_rs_features``). What is not in the
paper plugs in through ``extensions.Extensions`` (``self.extensions``), which also lists every
other non-paper option of the GAN.

Differences from the original, on purpose:

* **The EMA never overwrites the live G.** The original's ``save_model`` copies the averaged
  weights into the training G and never restores them, so every checkpoint restarted training
  from the average (StackGAN-v2's bug). Here the EMA generator is its own module (its BN buffers
  follow the live G's) and is what samples and checkpoints for evaluation use.
* **The wrong image is always of another class.** The original redraws a same-class "wrong" image
  once only, so it can still be a matching image; here it is drawn uniformly among the images of
  the other classes.
* **Image features for the RS are computed once per iteration** (real, similar and wrong in one
  batch without gradient; the fake once, with its graph kept for the G update). The original ran
  Inception 10 times per iteration: four times in ``train_MDnet`` and, in ``train_Gnet``, on the
  fake and the real image at every stage although only the last stage's features are used.
  With ``GanTrainingSet(rs_features=...)`` (``gan.rs_cached_views``: on in the CPU profiles, off in the paper profiles) the
  real, similar and wrong features come from the SEN step's cached views instead, and only the
  fake goes through the extractor.
* Discriminators output logits and the losses use ``binary_cross_entropy_with_logits`` (the
  original's sigmoid + ``BCELoss``, numerically safe and valid under autocast); in the G update the
  discriminators' and the RS's own weight gradients are not computed (the original computed and
  discarded them).
* On the CPU the trainer keeps freed memory in the process (``keep_freed_memory_in_process``):
  otherwise every iteration page-faults its gigabytes of activations in again.

An addition, off unless ``gan.contrastive_coeff > 0`` (it needs ``gan.d_projection``): a
contrastive term on each discriminator's projection scores, in steps 2 and 4 (``extensions.py``).

Everything random in training (data order, captions, wrong/similar images, crops, flips, ``z``
and the CA's noise) comes from one ``torch.Generator`` in the batch sampler; its state, the epoch
position and the global RNGs (torch, CUDA, numpy, python) go into every checkpoint, so an
interrupted run resumes bit for bit (on the CPU) where the checkpoint left it. The sample grids
use their own fixed noise and do not touch any of these.
"""
from __future__ import annotations

import copy
import ctypes
import dataclasses
import math
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..artifacts import BadFileError, atomic_path, atomic_write_json, load_checkpoint, require_finite
from ..step_configs import GanConfig
from ..device import precision
from ..progress import tqdm
from ..rng import rng_state, set_rng_state
from .conditioning import kl_loss
from .discriminator import discriminators_from_config
from .extensions import Extensions
from .generator import Generator
from .losses import discriminator_loss, generator_adversarial_loss
from .relation_supervisor import (FrozenFeatureExtractor, RelationSupervisor, relation_generator_loss,
                                  relation_supervisor_loss)

CHECKPOINT_FORMAT = 1
LATEST = "latest.pt"
GENERATOR_FILE = "generator.pt"   # the gan step's generator, in its folder (``load_generator``)
# GanConfig keys that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"iterations", "checkpoint_every", "sample_every"}


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a distributed run (``world_size == 1``: a plain run); made by
    ``s2i_lib.gan.distributed.init_distributed`` under torchrun."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


class GanDivergenceError(RuntimeError):
    """A loss (or a weight) became NaN or infinite; training stopped before writing anything."""


# ------------------------------------------------------------------------------------------ data
class GanTrainingSet:
    """The GAN's training data, held in memory: images, class ids, per-image caption embeddings.

    ``images``: (N, L, L, 3) uint8 (the layout of ``ImageCaptionDataset.array``, may be a numpy
    memmap) or (N, 3, L, L) uint8 / float in [-1, 1]; ``L`` is the load size (76/64 of the
    largest stage size when ``augment``, e.g. 304 for 256, as StackGAN) or the largest stage size.
    ``class_ids``: (N,). ``embeddings``: (N, n_captions, D) (the SEN step's output).

    Augmentation, as the original: a random ``S x S`` crop (S = the largest stage size) and a
    random horizontal flip; the smaller stages are bilinear (antialiased) resizes of that crop.

    ``rs_features`` (optional): (N, V, d), the relation supervisor's features of V fixed augmented
    views of every image (in the pipeline, the SEN step's cached backbone views through the SEN
    image encoder: ``step.SenImageFeatures.of_backbone_features``). With them the batches carry
    the features of the real, similar and wrong images (a random view each) and the trainer runs
    the extractor on the generated images only: 1.28 -> 0.98 s per iteration on the default
    profile (96 fewer images through EfficientNet-Lite0). It is the approximation the SEN's own
    training makes (a few fixed views per image instead of a fresh crop every time); they must be
    the trainer's extractor's features, which ``GanTrainer.make_sampler`` checks by size only.

    As a map-style dataset, item ``i`` is a dict with ``images`` (one tensor per stage size),
    ``embedding`` (one of the image's captions, drawn uniformly), ``class_id`` and ``index``.
    The trainer does not use ``__getitem__``; it draws whole batches with ``GanBatchSampler``,
    which also needs the "wrong" and "similar" images that only the whole set can provide.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, class_ids: np.ndarray | torch.Tensor,
                 embeddings: np.ndarray | torch.Tensor, stage_sizes: list[int] | tuple[int, ...],
                 augment: bool = True, seed: int = 0,
                 rs_features: np.ndarray | torch.Tensor | None = None):
        self.images = images
        if images.ndim != 4:
            raise ValueError(f"images must be (N, L, L, 3) or (N, 3, L, L), got {tuple(images.shape)}")
        self.channels_last_layout = images.shape[-1] == 3 and images.shape[1] != 3
        self.load_size = int(images.shape[1] if self.channels_last_layout else images.shape[2])
        self.class_ids = torch.as_tensor(np.asarray(class_ids), dtype=torch.long)
        self.embeddings = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        self.stage_sizes = sorted(int(s) for s in stage_sizes)
        self.crop_size = self.stage_sizes[-1]
        self.augment = augment
        n = images.shape[0]
        if self.class_ids.shape != (n,):
            raise ValueError(f"class_ids must be ({n},), got {tuple(self.class_ids.shape)}")
        if self.embeddings.dim() != 3 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings must be ({n}, n_captions, D), got {tuple(self.embeddings.shape)}")
        self.rs_features = None
        if rs_features is not None:
            self.rs_features = torch.as_tensor(np.asarray(rs_features), dtype=torch.float32)
            if self.rs_features.dim() != 3 or self.rs_features.shape[0] != n:
                raise ValueError(f"rs_features must be ({n}, views, d), got {tuple(self.rs_features.shape)}")
        if self.load_size < self.crop_size:
            raise ValueError(f"images are {self.load_size} px, smaller than the largest stage "
                             f"({self.crop_size} px)")
        if len(torch.unique(self.class_ids)) < 2:
            raise ValueError("the GAN needs at least two classes (a 'wrong' image is of another class)")
        # class blocks of the images sorted by class: wrong/similar sampling without rejection loops
        self.order = torch.argsort(self.class_ids, stable=True)
        classes, counts = torch.unique(self.class_ids, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        lookup = {int(c): (int(s), int(k)) for c, s, k in zip(classes, starts, counts)}
        self.block_start = torch.tensor([lookup[int(c)][0] for c in self.class_ids])
        self.block_count = torch.tensor([lookup[int(c)][1] for c in self.class_ids])
        self.rank_in_block = torch.empty(n, dtype=torch.long)
        self.rank_in_block[self.order] = torch.arange(n) - self.block_start[self.order]
        self._item_generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_image_caption_dataset(cls, dataset, embeddings: np.ndarray | torch.Tensor,
                                   rs_features: np.ndarray | torch.Tensor | None = None) -> "GanTrainingSet":
        """From an ``s2i_lib.data.torch_datasets.ImageCaptionDataset`` (its uint8 image cache, class
        ids, sizes and augmentation switch) and the SEN embeddings of its images, in its order."""
        return cls(dataset.array, dataset.class_ids, embeddings, dataset.sizes, augment=dataset.augment,
                   rs_features=rs_features)

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        g = self._item_generator
        top, left, flip = self._draw_crops(1, g)
        cap = int(torch.randint(0, self.embeddings.shape[1], (), generator=g))
        images = self.load(torch.tensor([i]), top, left, flip)
        return {"images": [x[0] for x in images], "embedding": self.embeddings[i, cap],
                "class_id": int(self.class_ids[i]), "index": i}

    # --- pieces used by the sampler
    def _draw_crops(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        span = self.load_size - self.crop_size + 1 if self.augment else 1
        offsets = torch.randint(0, span, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        if not self.augment:
            offsets.fill_((self.load_size - self.crop_size) // 2)
            flips.zero_()
        return offsets[:, 0], offsets[:, 1], flips

    def _raw(self, idx: torch.Tensor) -> torch.Tensor:
        """(n, 3, L, L) float in [-1, 1]."""
        ids = idx.tolist()
        if isinstance(self.images, torch.Tensor):
            x = self.images[idx]
        else:
            x = torch.from_numpy(np.stack([np.asarray(self.images[i]) for i in ids]))
        if self.channels_last_layout:
            x = x.permute(0, 3, 1, 2)
        if x.dtype == torch.uint8:
            return x.float().div_(127.5).sub_(1.0)
        return x.float()

    def load(self, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
             ) -> list[torch.Tensor]:
        """Images ``idx`` cropped at (top, left), flipped where ``flip``, at every stage size."""
        raw = self._raw(idx)
        s = self.crop_size
        crops = []
        for k in range(len(idx)):
            c = raw[k, :, int(top[k]):int(top[k]) + s, int(left[k]):int(left[k]) + s]
            crops.append(c.flip(-1) if bool(flip[k]) else c)
        full = torch.stack(crops).contiguous()
        return [full if size == s else
                F.interpolate(full, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                for size in self.stage_sizes]

    def centre(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Images ``idx`` without augmentation (centre crop), at every stage size."""
        off = torch.full((len(idx),), (self.load_size - self.crop_size) // 2)
        return self.load(idx, off, off, torch.zeros(len(idx), dtype=torch.bool))


@dataclass
class GanBatch:
    """One rank's share of a training batch (all on the CPU; ``to`` moves it)."""
    real: list[torch.Tensor]        # one (b, 3, s, s) per stage
    wrong: list[torch.Tensor]       # a random image of another class, every stage
    similar: torch.Tensor | None    # a random other image of the same class, last stage only
    embedding: torch.Tensor         # (b, D)
    class_id: torch.Tensor
    index: torch.Tensor
    z: torch.Tensor                 # (b, z_dim)
    eps: torch.Tensor               # (b, cond_dim): the CA's noise
    # (3, b, d): the RS features of real, similar and wrong, when the set has ``rs_features``
    # (then ``similar`` is not loaded)
    rs_features: torch.Tensor | None = None

    def to(self, device: torch.device, memory_format=torch.contiguous_format) -> "GanBatch":
        def mv(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device, non_blocking=True)
            return t.contiguous(memory_format=memory_format) if t.dim() == 4 else t
        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else mv(t)
        return GanBatch([mv(t) for t in self.real], [mv(t) for t in self.wrong], opt(self.similar),
                        mv(self.embedding), self.class_id, self.index, mv(self.z), mv(self.eps),
                        opt(self.rs_features))


class GanBatchSampler:
    """Shuffled epochs without replacement (``drop_last``), as the original's DataLoader, plus the
    wrong/similar draws, the caption choice, the augmentation and the noise of every batch.

    Every random number is drawn for the *global* batch from one generator, identically on every
    DDP rank; a rank then loads only its slice. So the data a run sees does not depend on the
    number of processes, and the state to checkpoint is just the generator and the epoch position.
    """

    def __init__(self, data: GanTrainingSet, batch_size: int, z_dim: int, cond_dim: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if len(data) < batch_size:
            raise ValueError(f"the training set has {len(data)} images, fewer than gan.batch_size "
                             f"= {batch_size}")
        if batch_size % world_size or batch_size // world_size < 2:
            raise ValueError(f"gan.batch_size = {batch_size} must be divisible by the number of "
                             f"processes ({world_size}), with at least 2 images per process "
                             f"(batch normalisation)")
        self.data, self.batch_size, self.z_dim, self.cond_dim = data, batch_size, z_dim, cond_dim
        self.per_rank = batch_size // world_size
        self.lo = rank * self.per_rank
        self.generator = torch.Generator().manual_seed(seed)
        self.batches_per_epoch = len(data) // batch_size
        self.epoch, self.position = 0, 0
        self.permutation = torch.randperm(len(data), generator=self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch,
                "position": self.position, "permutation": self.permutation.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.permutation = state["permutation"].clone()

    def _other_class(self, idx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        d = self.data
        start, count = d.block_start[idx], d.block_count[idx]
        r = torch.minimum((u * (len(d) - count)).long(), len(d) - count - 1)
        return d.order[torch.where(r < start, r, r + count)]

    def _same_class(self, idx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        d = self.data
        start, count, own = d.block_start[idx], d.block_count[idx], d.rank_in_block[idx]
        # a class with one image has no "other" image: the similar image is then itself
        r = torch.minimum((u * (count - 1).clamp(min=1)).long(), (count - 2).clamp(min=0))
        r = torch.where(count > 1, torch.where(r < own, r, r + 1), own)
        return d.order[start + r]

    def next_batch(self) -> GanBatch:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self.permutation = torch.randperm(len(self.data), generator=self.generator)
        b, g, d = self.batch_size, self.generator, self.data
        idx = self.permutation[self.position * b:(self.position + 1) * b]
        self.position += 1
        # the draw order below is part of the reproducibility contract: do not reorder
        caption = torch.randint(0, d.embeddings.shape[1], (b,), generator=g)
        wrong = self._other_class(idx, torch.rand(b, generator=g))
        similar = self._same_class(idx, torch.rand(b, generator=g))
        crops = [d._draw_crops(b, g) for _ in range(3)]  # real, wrong, similar
        z = torch.randn(b, self.z_dim, generator=g)
        eps = torch.randn(b, self.cond_dim, generator=g)

        sl = slice(self.lo, self.lo + self.per_rank)
        own = [tuple(t[sl] for t in c) for c in crops]
        similar_images = rs_features = None
        if d.rs_features is not None:
            # drawn after everything above, so the draws without the table are unchanged
            views = torch.randint(0, d.rs_features.shape[1], (3, b), generator=g)
            rows = torch.stack([idx, similar, wrong])
            rs_features = d.rs_features[rows[:, sl], views[:, sl]]
        else:
            similar_images = d.load(similar[sl], *own[2])[-1]
        return GanBatch(real=d.load(idx[sl], *own[0]), wrong=d.load(wrong[sl], *own[1]),
                        similar=similar_images,
                        embedding=d.embeddings[idx[sl], caption[sl]], class_id=d.class_ids[idx[sl]],
                        index=idx[sl], z=z[sl], eps=eps[sl], rs_features=rs_features)


# ------------------------------------------------------------------------------------- trainer
_ALLOCATOR_TUNED: bool | None = None


def keep_freed_memory_in_process() -> bool:
    """Make glibc serve every allocation from the heap and keep freed memory (up to 2 GB at the
    top) instead of returning it to the kernel. Returns whether it applied (Linux/glibc only).

    A training iteration allocates and frees the same large activations every time. By default
    glibc maps each block of 32 MB or more fresh from the kernel and unmaps it on free, so every
    iteration page-faults in and zeroes gigabytes again: at the paper size, batch 8, that was
    1.1-1.9 million page faults and 3-4 s of system time per iteration on 2 CPU cores (about a
    fifth of the iteration). With the memory kept, the steady state has no page faults; the cost
    is a larger peak footprint (fragmentation): +8 % peak RSS at the paper size (5.1 -> 5.5 GB),
    +37 % on the default profile with the RS (3.7 -> 5.1 GB). It is process-wide and applied once,
    by ``GanTrainer`` on the CPU unless ``keep_freed_memory=False``.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
                _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_max, 0) == 1
                                        and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1)
            except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
                pass
    return _ALLOCATOR_TUNED


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


class GanTrainer:
    """Trains G, the discriminators and (with a feature extractor) the relation supervisor.

    ``cfg``: a ``GanConfig``. ``embed_dim``: size of the conditioning embeddings (the SEN's
    ``embed_dim``). ``out_dir``: where checkpoints, samples and curves go (see ``train``).
    ``feature_extractor``: a module mapping images in [-1, 1] at the last stage size to (B, d)
    features (the frozen SEN image encoder in the pipeline); required when
    ``cfg.relation_supervisor``. It must let gradients through (no ``torch.no_grad`` inside).
    ``seed`` fixes the initialisation, the data order and the noise. ``dist_context``: from
    ``s2i_lib.gan.distributed.init_distributed`` under torchrun (the process group must exist).
    ``log_every``: each point of the loss curves is the mean of that many iterations.
    ``keep_freed_memory``: on the CPU, see ``keep_freed_memory_in_process`` (faster, more memory).
    """

    def __init__(self, cfg, embed_dim: int, out_dir: str | Path, feature_extractor: nn.Module | None = None,
                 device: torch.device | str = "cpu", seed: int = 0, dist_context: DistContext | None = None,
                 log_every: int = 10, progress: bool = True, n_samples: int = 8,
                 keep_freed_memory: bool = True):
        self.cfg, self.embed_dim, self.seed = cfg, int(embed_dim), int(seed)
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.ctx = dist_context or DistContext()
        self.log_every, self.progress, self.n_samples = int(log_every), progress, int(n_samples)
        if cfg.relation_supervisor and feature_extractor is None:
            raise ValueError("gan.relation_supervisor is true but no feature_extractor was given "
                             "(the frozen SEN image encoder); pass one or set "
                             "gan.relation_supervisor=false")
        cuda = self.device.type == "cuda"
        if not cuda and keep_freed_memory:
            keep_freed_memory_in_process()
        # bf16 autocast + channels_last where the precision says so (device.precision: measured
        # per part); the losses, the KL and the RS features are computed in fp32 all the same
        self.amp = precision().uses_bf16("gan")
        self.memory_format = precision().memory_format("gan")

        torch.manual_seed(self.seed)  # the orthogonal initialisation
        self.generator = Generator.from_config(cfg, self.embed_dim).to(self.device)
        self.discriminators = discriminators_from_config(cfg).to(self.device)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.extractor: FrozenFeatureExtractor | None = None
        self.relation: RelationSupervisor | None = None
        if cfg.relation_supervisor:
            self.extractor = FrozenFeatureExtractor(feature_extractor).to(self.device)
            feat_dim = self.extractor.feature_dim(cfg.stage_sizes[-1], self.device)
            self.relation = RelationSupervisor(feat_dim).to(self.device)
        for m in self._trainable_modules():
            m.to(memory_format=self.memory_format)
        self.generator_ema.to(memory_format=self.memory_format)

        adam = dict(lr=cfg.lr, betas=tuple(cfg.betas), foreach=True)  # no weight decay, constant lr
        self.opt_g = torch.optim.Adam(self.generator.parameters(), **adam)
        self.opt_d = [torch.optim.Adam(d.parameters(), **adam) for d in self.discriminators]
        self.opt_rs = (torch.optim.Adam(self.relation.parameters(), **adam)
                       if self.relation is not None else None)
        self.extensions = Extensions.from_config(cfg)   # the non-paper terms of the update

        # the modules the training step calls: DDP wrappers in a distributed run
        self._g, self._ds, self._rs = self.generator, list(self.discriminators), self.relation
        if self.ctx.active:
            ddp = dict(device_ids=[self.device.index] if cuda else None)
            self._g = nn.parallel.DistributedDataParallel(self.generator, **ddp)
            self._ds = [nn.parallel.DistributedDataParallel(d, **ddp) for d in self.discriminators]
            if self.relation is not None:
                self._rs = nn.parallel.DistributedDataParallel(self.relation, **ddp)

        self.iteration = 0
        self.history: list[dict] = []
        self._window: dict[str, float] = {}
        self._window_n = 0
        self.sampler: GanBatchSampler | None = None
        self.checkpoint_iteration: int | None = None  # of the last checkpoint written or loaded
        self.stage_names = [f"{s}" for s in cfg.stage_sizes]

    # ------------------------------------------------------------------------- paths & modules
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def latest_path(self) -> Path:
        return self.checkpoint_dir / LATEST

    def _trainable_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.generator, *self.discriminators]
        return mods + ([self.relation] if self.relation is not None else [])

    def modules_for_digest(self) -> dict[str, nn.Module]:
        """Every module whose state a resumed run must reproduce."""
        mods = {"generator": self.generator, "generator_ema": self.generator_ema}
        mods.update({f"discriminator{s}": d for s, d in zip(self.cfg.stage_sizes, self.discriminators)})
        if self.relation is not None:
            mods["relation_supervisor"] = self.relation
        return mods

    def _autocast(self):
        return (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.amp
                else nullcontext())

    def _meta(self, n_images: int) -> dict:
        return {"gan": dataclasses.asdict(self.cfg), "embed_dim": self.embed_dim, "seed": self.seed,
                "n_images": n_images,
                "feature_dim": self.relation.feat_dim if self.relation is not None else None}

    # ---------------------------------------------------------------------------------- guard
    def _guard(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """Values of ``losses`` (averaged over DDP ranks); raise if any is NaN or infinite.

        Called before each backward, so a bad loss never reaches the weights; every rank sees the
        same averaged values and stops together."""
        vals = torch.stack([v.detach().float() for v in losses.values()])
        if self.ctx.active:
            dist.all_reduce(vals)
            vals /= self.ctx.world_size
        out = dict(zip(losses.keys(), vals.tolist()))
        for name, v in out.items():
            if not math.isfinite(v):
                self._diverged(f"loss {name} = {v}", self.iteration + 1)
        return out

    def _diverged(self, what: str, iteration: int) -> None:
        kept = (f"the last good checkpoint {self.latest_path} (iteration {self.checkpoint_iteration}) "
                f"was left untouched" if self.checkpoint_iteration is not None
                else "no checkpoint had been written yet")
        raise GanDivergenceError(
            f"GAN training diverged at iteration {iteration}: {what}. Training stopped; "
            f"{kept}. Try a lower gan.lr, or resume from the checkpoint with another seed.")

    # ------------------------------------------------------------------------------ one step
    def train_step(self, batch: GanBatch) -> dict[str, float]:
        """One iteration (paper notes §7.3) on this rank's ``batch``; returns the losses (rank
        averages). The paper's losses, plus ``self.extensions``' terms (0 unless configured)."""
        cfg, ext = self.cfg, self.extensions
        batch = batch.to(self.device, self.memory_format)
        logs: dict[str, float] = {}

        # 1. G forward, once: an image per stage, the CA's mu and logvar
        with self._autocast():
            fakes, mu, logvar = self._g(batch.z, batch.embedding, batch.eps)
        mu_d = mu.detach()

        # 2. each discriminator: real -> 1, wrong -> 0 (conditional) / 1, detached fake -> 0
        for name, d, opt, real, wrong, fake in zip(self.stage_names, self._ds, self.opt_d,
                                                    batch.real, batch.wrong, fakes):
            with self._autocast():
                real_c, real_u, *match = d(real, mu_d, match=ext.wants_match)
                wrong_logits, fake_logits = d(wrong, mu_d), d(fake.detach(), mu_d)
            loss = (discriminator_loss((real_c, real_u), wrong_logits, fake_logits)
                    + ext.discriminator_term(*match))
            self._step(opt, f"D{name}", loss, logs)

        # 3. relation supervisor: (real, real) -> 0, (real, similar / detached fake) -> 1, (real, wrong) -> 2
        if self.relation is not None:
            f_real, f_similar, f_wrong, f_fake = self._rs_features(batch, fakes[-1])
            loss = relation_supervisor_loss(self._rs, f_real, f_similar, f_fake.detach(), f_wrong,
                                            cfg.rs_mode)
            self._step(self.opt_rs, "RS", loss, logs)

        # 4. generator, judged by the discriminators and the RS as just updated:
        # L_G = sum_i generator_adversarial_loss_i + kl_coeff * KL + rs_coeff * RS_G
        with self._judges_frozen() as (judges, relation):
            terms: dict[str, torch.Tensor] = {}
            with self._autocast():
                for name, d, fake in zip(self.stage_names, judges, fakes):
                    cond, uncond, *match = d(fake, mu, match=ext.wants_match)
                    terms[f"G{name}"] = generator_adversarial_loss((cond, uncond)) + ext.generator_term(*match)
            adversarial = sum(terms.values())
            kl = kl_loss(mu.float(), logvar.float())
            total = adversarial + cfg.kl_coeff * kl
            if relation is not None:
                terms["G_RS"] = relation_generator_loss(relation, f_real, f_fake)
                total = total + cfg.rs_coeff * terms["G_RS"]
            self._step(self.opt_g, "G", total, logs, parts={**terms, "KL": kl})

        # 5. EMA in its own module
        self._update_ema()
        return logs

    # --- the engineering of one step
    def _step(self, optimizer: torch.optim.Optimizer, name: str, loss: torch.Tensor,
              logs: dict[str, float], parts: dict[str, torch.Tensor] | None = None) -> None:
        """One optimiser step on ``loss``: the divergence guard first (on ``loss`` and the
        ``parts`` logged with it; the values, rank-averaged, go into ``logs``), so that a NaN never
        reaches the weights; then backward (DDP averages the gradients), step, and the gradients
        freed."""
        logs.update(self._guard({**(parts or {}), name: loss}))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @contextmanager
    def _judges_frozen(self) -> Iterator[tuple[list[nn.Module], RelationSupervisor | None]]:
        """The discriminators and the RS for the G update: the raw modules (not their DDP
        wrappers, whose gradients are not synchronised here) with their weights' gradients off
        meanwhile (the original computed and discarded them). Yields (discriminators, RS or None)."""
        judges = [_unwrap(d) for d in self._ds]
        frozen = judges + ([self.relation] if self.relation is not None else [])
        for m in frozen:
            m.requires_grad_(False)
        try:
            yield judges, self.relation
        finally:
            for m in frozen:
                m.requires_grad_(True)

    def _rs_features(self, batch: GanBatch, fake: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The RS features (fp32) of the real, similar and wrong images and of the last stage's
        generated image ``fake``, the latter with its graph (the G update reuses it).

        Each image goes through the frozen extractor once per iteration: real, similar and wrong
        in one batch without gradient, or not at all when their features come with the batch
        (``gan.rs_cached_views``, an extension: the SEN step's cached views); the fake once. (The
        original ran Inception 10 times per iteration: 4 times in the RS update and, in the G
        update, on the fake and the real image at every stage, using only the last stage's
        features.)"""
        if batch.rs_features is not None:
            f_real, f_similar, f_wrong = batch.rs_features.float().unbind(0)
        else:
            with torch.no_grad(), self._autocast():
                f_real, f_similar, f_wrong = self.extractor(
                    torch.cat([batch.real[-1], batch.similar, batch.wrong[-1]])
                ).float().split(batch.similar.shape[0])
        with self._autocast():  # with the graph: reused by the G update
            f_fake = self.extractor(fake).float()
        if not f_fake.requires_grad:
            raise ValueError("the feature extractor blocks gradients (torch.no_grad inside?): the "
                             "RS term could not train the generator")
        return f_real, f_similar, f_wrong, f_fake

    @torch.no_grad()
    def _update_ema(self) -> None:
        # warm-up (TensorFlow's ExponentialMovingAverage with num_updates): early on the average
        # follows G closely, so that a short run's EMA is not mostly its random initialisation
        # (0.999 ** 1000 = 37 %); from iteration ~9000 on this is cfg.ema_decay
        d = min(self.cfg.ema_decay, (1 + self.iteration) / (10 + self.iteration))
        ema_p = list(self.generator_ema.parameters())
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, [p.detach() for p in self.generator.parameters()], alpha=1.0 - d)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    # ---------------------------------------------------------------------------- checkpoints
    def _sync_buffers(self) -> None:
        """All ranks take rank 0's BN running statistics before a checkpoint, so that every rank
        holds exactly what the checkpoint holds (each rank updates them from its own share of the
        batch; DDP re-broadcasts them only at the next forward)."""
        if self.ctx.active:
            for m in self.modules_for_digest().values():
                for t in m.buffers():
                    dist.broadcast(t.data, 0)

    def _check_weights_finite(self) -> None:
        for name, m in self.modules_for_digest().items():
            for pname, p in m.named_parameters():
                if not torch.isfinite(p).all():
                    self._diverged(f"weight {name}.{pname} is not finite", self.iteration)

    def save_checkpoint(self, n_images: int) -> Path:
        self._check_weights_finite()
        self._sync_buffers()
        if not self.ctx.is_main:
            return self.latest_path
        state = {
            "format": CHECKPOINT_FORMAT, "iteration": self.iteration, "meta": self._meta(n_images),
            "generator": self.generator.state_dict(), "generator_ema": self.generator_ema.state_dict(),
            "discriminators": [d.state_dict() for d in self.discriminators],
            "relation_supervisor": self.relation.state_dict() if self.relation is not None else None,
            "optimizers": {"generator": self.opt_g.state_dict(),
                           "discriminators": [o.state_dict() for o in self.opt_d],
                           "relation_supervisor": self.opt_rs.state_dict() if self.opt_rs else None},
            "sampler": self.sampler.state_dict() if self.sampler is not None else None,
            "rng": rng_state(),
            "history": self.history, "window": {"sums": dict(self._window), "n": self._window_n},
        }
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.latest_path) as tmp:
            torch.save(state, tmp)
        with atomic_path(self.checkpoint_dir / f"generator_ema_{self.iteration:07d}.pt") as tmp:
            torch.save({"iteration": self.iteration, "meta": state["meta"],
                        "state_dict": state["generator_ema"]}, tmp)
        self.write_history()
        self.checkpoint_iteration = self.iteration
        return self.latest_path

    def load_checkpoint(self, path: str | Path, n_images: int) -> None:
        state = load_checkpoint(path)
        foreign = (f"{path} is damaged or not a GAN checkpoint of this library version; delete "
                   f"{self.out_dir} to start again")
        try:
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
            mine, theirs = self._meta(n_images), state["meta"]
            diff = [f"gan.{k}" for k in mine["gan"] if k not in RESUMABLE_CHANGES
                    and mine["gan"][k] != theirs["gan"].get(k)]
            diff += [k for k in ("embed_dim", "seed", "n_images", "feature_dim") if mine[k] != theirs[k]]
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise BadFileError(f"{foreign} ({e.__class__.__name__}: {e})") from e
        if diff:
            raise BadFileError(f"cannot resume from {path}: it was made with other settings "
                               f"({', '.join(diff)}); delete {self.out_dir} to start again")
        try:   # a file of the right format whose contents do not fit these models is foreign too
            self.generator.load_state_dict(state["generator"])
            self.generator_ema.load_state_dict(state["generator_ema"])
            for d, s in zip(self.discriminators, state["discriminators"], strict=True):
                d.load_state_dict(s)
            if self.relation is not None:
                self.relation.load_state_dict(state["relation_supervisor"])
                self.opt_rs.load_state_dict(state["optimizers"]["relation_supervisor"])
            self.opt_g.load_state_dict(state["optimizers"]["generator"])
            for o, s in zip(self.opt_d, state["optimizers"]["discriminators"], strict=True):
                o.load_state_dict(s)
            if self.sampler is not None and state["sampler"] is not None:
                self.sampler.load_state_dict(state["sampler"])
            set_rng_state(state["rng"])
            self.iteration = int(state["iteration"])
            self.history = list(state["history"])
            self._window = dict(state["window"]["sums"])
            self._window_n = int(state["window"]["n"])
        except torch.OutOfMemoryError:
            raise   # a good checkpoint on a full device is not a damaged file
        except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as e:
            raise BadFileError(f"{foreign} ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from e
        self.checkpoint_iteration = self.iteration

    def write_history(self) -> None:
        if self.ctx.is_main:
            atomic_write_json(self.out_dir / "loss_history.json",
                              {"every": self.log_every, "records": self.history})

    # -------------------------------------------------------------------------------- samples
    @torch.no_grad()
    def save_samples(self, data: GanTrainingSet) -> Path:
        """A grid with one column per fixed caption: the real image, then every stage of the EMA
        generator (eval mode, fixed noise), upsampled to the last size."""
        import torchvision.utils as vutils   # here: importing torchvision takes seconds; only samples need it

        n = min(self.n_samples, len(data))
        idx = torch.linspace(0, len(data) - 1, n).round().long()
        g = torch.Generator().manual_seed(self.seed + 1)  # fixed noise, independent of training
        z = torch.randn(n, self.cfg.z_dim, generator=g)
        eps = torch.randn(n, self.cfg.condition_dim, generator=g)
        emb = data.embeddings[idx, 0]
        real = data.centre(idx)[-1]
        self.generator_ema.eval()
        with self._autocast():
            fakes, _, _ = self.generator_ema(z.to(self.device), emb.to(self.device), eps.to(self.device))
        size = self.cfg.stage_sizes[-1]
        rows = [real] + [F.interpolate(f.float().cpu(), size=(size, size), mode="nearest") for f in fakes]
        grid = vutils.make_grid(torch.cat(rows), nrow=n, padding=2, normalize=True, value_range=(-1, 1))
        path = self.out_dir / "samples" / f"iter_{self.iteration:07d}.png"
        with atomic_path(path) as tmp:
            vutils.save_image(grid, tmp)
        return path

    # ---------------------------------------------------------------------------------- train
    def make_sampler(self, data: GanTrainingSet) -> GanBatchSampler:
        if data.embed_dim != self.embed_dim:
            raise ValueError(f"the embeddings are {data.embed_dim}-d, the trainer was built for "
                             f"{self.embed_dim}")
        if data.stage_sizes != sorted(self.cfg.stage_sizes):
            raise ValueError(f"the data serves sizes {data.stage_sizes}, gan.stage_sizes is "
                             f"{self.cfg.stage_sizes}")
        if (self.relation is not None and data.rs_features is not None
                and data.rs_features.shape[2] != self.relation.feat_dim):
            raise ValueError(f"the data's rs_features are {data.rs_features.shape[2]}-d, the feature "
                             f"extractor gives {self.relation.feat_dim}: they must be its features")
        return GanBatchSampler(data, self.cfg.batch_size, self.cfg.z_dim, self.cfg.condition_dim,
                               seed=self.seed, rank=self.ctx.rank, world_size=self.ctx.world_size)

    def _record(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self._window[k] = self._window.get(k, 0.0) + v
        self._window_n += 1
        if self.iteration % self.log_every == 0:
            self.history.append({"iteration": self.iteration,
                                 **{k: v / self._window_n for k, v in self._window.items()}})
            self._window, self._window_n = {}, 0

    def train(self, data: GanTrainingSet, iterations: int | None = None, resume: bool = True,
              callback: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
        """Train up to ``iterations`` (total, default ``cfg.iterations``), resuming from
        ``out_dir/checkpoints/latest.pt`` if it exists (and ``resume``).

        Writes (rank 0 only), under ``out_dir``:
          ``checkpoints/latest.pt``            the full training state, every ``checkpoint_every``
                                               iterations and at the end (atomic);
          ``checkpoints/generator_ema_<it>.pt`` the EMA generator at each checkpoint;
          ``samples/iter_<it>.png``            sample grids every ``sample_every`` iterations;
          ``loss_history.json``                the loss curves (means over ``log_every`` iterations).
        ``callback(iteration, losses)`` runs after every iteration (after any checkpoint).
        Returns JSON-able figures.
        """
        iterations = int(iterations if iterations is not None else self.cfg.iterations)
        self.sampler = self.make_sampler(data)
        if resume and self.latest_path.exists():
            self.load_checkpoint(self.latest_path, len(data))
        start = self.iteration
        for m in self._trainable_modules():
            m.train()
        bar = tqdm(total=iterations, initial=start, desc="GAN", unit="it", dynamic_ncols=True,
                   disable=not (self.progress and self.ctx.is_main))
        t0 = time.perf_counter()
        logs: dict[str, float] = {}
        try:
            while self.iteration < iterations:
                logs = self.train_step(self.sampler.next_batch())
                self.iteration += 1
                self._record(logs)
                bar.update(1)
                if self.iteration % self.log_every == 0 or self.iteration == iterations:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()
                                     if k.startswith("D") or k in ("RS", "G", "KL")}, refresh=False)
                if self.iteration % self.cfg.sample_every == 0 and self.ctx.is_main:
                    self.save_samples(data)
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == iterations:
                    self.save_checkpoint(len(data))
                if callback is not None:
                    callback(self.iteration, logs)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        done = self.iteration - start
        return {"iterations": self.iteration, "iterations_this_run": done, "resumed_from": start,
                "wall_time_s": round(wall, 3),
                "iterations_per_s": round(done / wall, 4) if done and wall > 0 else None,
                "final_losses": logs, "checkpoint": str(self.latest_path),
                "world_size": self.ctx.world_size}


# ------------------------------------------------------------------------------------- loading
def load_generator(path: str | Path, device: torch.device | str = "cpu", ema: bool = True) -> Generator:
    """A generator (eval mode) from ``checkpoints/latest.pt`` (the EMA weights unless ``ema`` is
    false) or from a ``generator_ema_<it>.pt`` snapshot. A damaged file (truncated, foreign, NaN
    weights) is a BadFileError naming it."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing")
    state = load_checkpoint(path)
    try:
        meta = state["meta"]
        known = {f.name for f in dataclasses.fields(GanConfig)}
        cfg = GanConfig(**{k: v for k, v in meta["gan"].items() if k in known})
        g = Generator.from_config(cfg, meta["embed_dim"])
        weights = (state["state_dict"] if "state_dict" in state
                   else state["generator_ema" if ema else "generator"])
        g.load_state_dict(weights)
    except Exception as e:   # a foreign file fails here (KeyError, TypeError, RuntimeError...)
        raise BadFileError(f"{path} is damaged or not a generator ({type(e).__name__} while "
                           f"loading it)") from None
    require_finite(g, path)
    return g.to(device).eval()


# ------------------------------------------------------------------------------ test helpers
def synthetic_training_set(n_images: int, stage_sizes: list[int], embed_dim: int, n_classes: int = 4,
                           n_captions: int = 3, seed: int = 0) -> GanTrainingSet:
    """Random uint8 images (at the augmentation load size), classes and unit-norm embeddings:
    for tests, benchmarks and the DDP self-check."""
    g = torch.Generator().manual_seed(seed)
    load = int(max(stage_sizes) * 76 / 64)
    images = torch.randint(0, 256, (n_images, 3, load, load), generator=g, dtype=torch.uint8)
    class_ids = torch.arange(n_images) % n_classes
    emb = F.normalize(torch.randn(n_images, n_captions, embed_dim, generator=g), dim=-1)
    return GanTrainingSet(images, class_ids, emb, stage_sizes)


def tiny_feature_extractor(out_dim: int = 32, seed: int = 0) -> nn.Module:
    """A small random conv net (frozen by the trainer), a stand-in for the SEN image encoder."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Conv2d(8, out_dim, 3, 2, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net
