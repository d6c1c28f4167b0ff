"""What the GAN adds to the paper, in one place: the extra terms of the GAN update, and where
every other non-paper option of ``GanConfig`` lives.

**The hook.** ``GanTrainer.train_step`` (docs/paper_notes.md §7.3) computes the paper's losses only;
an ``Extensions`` object, built from the config, adds what is not in the paper through three
members:

* ``wants_match``: whether the discriminators must also return their (B, B) match scores
  (``Discriminator(..., match=True)``), for the real images in each D update and for the generated
  images in the G update;
* ``discriminator_term(match_scores)``: added to each stage's discriminator loss;
* ``generator_term(match_scores)``: added to each stage's adversarial term of the generator loss.

Both terms are ``0`` when the extensions are off (``match_scores`` is then not given), so the update
is the paper's. A new term of the GAN update goes here, behind a config option that is off in the
paper profiles, and ``train_step`` stays as it is.

**The terms of the update here** (off unless ``gan.contrastive_coeff > 0``; needs ``gan.d_projection``):
a contrastive term on each discriminator's projection scores, every image of the batch with every
``mu`` (``contrastive_loss``). In the D update each *real* image must score its own caption above
the batch's other captions (and each caption its own image); in the G update each generated image
must do the same under the updated discriminators. The real / wrong term of the paper teaches
"matching?" with one mismatched pair per image, this one with the batch size minus one of them
(XMC-GAN, Zhang et al. 2021, contrasts image and text features the same way). Under DDP the batch is
each process's share.

**The other non-paper options** (``GanConfig`` in ``s2i_lib/step_configs.py``; each is off, or at
the original's value, in the paper profiles, and each is kept for a measured reason, given in
docs/experiments.md):

* ``gan.rescale_embedding`` (``conditioning.py``, ``ConditioningAugmentation``): multiplies the
  unit-norm embedding by sqrt(D) before the CA, so that the caption is heard over the CA's noise
  from the first iteration.
* ``gan.d_projection`` (``discriminator.py``, ``Discriminator``): adds a projection term
  ``<W mu, mean-pooled code>`` to the conditional logit (Miyato & Koyama 2018), an early lift in
  how well images match their captions; it also provides the match scores used above.
* ``gan.rs_cached_views`` (``trainer.py``: ``GanTrainingSet(rs_features=...)`` and the batch
  sampler, ``GanTrainer._rs_features`` in the step; the features from ``steps/gan.py``): the RS
  reads the real, similar and wrong images' features from the SEN step's cached views instead of
  running the extractor on fresh crops; only the generated image goes through it (a speed-up).
* ``gan.rs_mode: adversarial`` (``relation_supervisor.py``, ``relation_supervisor_loss``): the RS
  learns to call (real, generated) pairs the unused fourth class while G still aims at "related":
  an ablation, not the paper (which is ``cooperative``).
* ``gan.condition_on: text`` (``steps/gan.py``, ``caption_embeddings``; ``steps/ablations.py``):
  conditions the GAN on the text baseline's embeddings of the written captions instead of the
  speech embeddings: the speech-against-text comparison.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(scores: torch.Tensor) -> torch.Tensor:
    r"""InfoNCE both ways on a (B, B) image x condition score matrix ``S`` (``gan.contrastive_coeff``):
    each image should score its own condition above the batch's other conditions, and each
    condition its own image above the other images:

    $$\mathcal{L}_{\mathrm{con}} = \frac{1}{2}\Big[\mathrm{CE}(S, \mathrm{diag}) + \mathrm{CE}(S^\top, \mathrm{diag})\Big],
      \qquad \mathrm{CE}(S, \mathrm{diag}) = -\frac{1}{B}\sum_b \log \frac{e^{S_{bb}}}{\sum_j e^{S_{bj}}}$$

    Not in the paper (see this module's docstring)."""
    target = torch.arange(scores.shape[0], device=scores.device)
    scores = scores.float()
    return 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))


class Extensions:
    """The non-paper terms of one GAN update (see the module docstring): ``wants_match``,
    ``discriminator_term(match_scores)``, ``generator_term(match_scores)``.

    ``contrastive_coeff``: the weight of ``contrastive_loss`` in both updates (0: off)."""

    def __init__(self, contrastive_coeff: float = 0.0):
        self.contrastive_coeff = contrastive_coeff

    @classmethod
    def from_config(cls, cfg) -> "Extensions":
        """From a ``GanConfig``."""
        return cls(contrastive_coeff=cfg.contrastive_coeff)

    @property
    def wants_match(self) -> bool:
        """Whether the discriminators must return their match scores (``match=True``)."""
        return self.contrastive_coeff > 0

    def discriminator_term(self, match_scores: torch.Tensor | None = None) -> torch.Tensor | float:
        """Added to a discriminator's loss: ``contrastive_coeff * contrastive_loss`` of the real
        images' match scores; 0 when off."""
        if not self.wants_match:
            return 0.0
        return self.contrastive_coeff * contrastive_loss(match_scores)

    def generator_term(self, match_scores: torch.Tensor | None = None) -> torch.Tensor | float:
        """Added to the generator's adversarial term at a stage: ``contrastive_coeff *
        contrastive_loss`` of the generated images' match scores; 0 when off."""
        if not self.wants_match:
            return 0.0
        return self.contrastive_coeff * contrastive_loss(match_scores)
