"""The adversarial losses of S2IGAN, as plain functions (docs/paper_notes.md §7.2).

The other terms of the paper live beside the parts they score: the CA's ``kl_loss`` in
``conditioning.py`` (§6.1), the relation supervisor's ``relation_supervisor_loss`` and
``relation_generator_loss`` in ``relation_supervisor.py`` (§8). ``GanTrainer.train_step`` puts them
together (§7.3); the terms that are not in the paper are in ``extensions.py``.

Each discriminator returns logits, not probabilities: ``bce`` is the original's sigmoid + ``BCELoss``
computed as one numerically safe function (``binary_cross_entropy_with_logits``), valid under
autocast. Logits come in pairs ``(conditional, unconditional)``: the conditional head ``D^c`` asks
"real *and* matching the caption?", the unconditional ``D^u`` asks "real?" (§7.1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Logits = tuple[torch.Tensor, torch.Tensor]   # (conditional, unconditional), each (B,)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    r"""Binary cross-entropy of logits against a constant label, averaged over the batch
    (paper notes §7.2):

    $$\mathrm{BCE}(\ell, t) = -\frac{1}{B} \sum_b \big[ t \log \sigma(\ell_b) + (1 - t) \log(1 - \sigma(\ell_b)) \big]$$

    computed in fp32 whatever the logits' precision."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(real: Logits, wrong: Logits, fake: Logits) -> torch.Tensor:
    r"""The loss of one stage's discriminator ``D_i`` (paper notes §7.2), from its
    ``(conditional, unconditional)`` logits of the real image ``x``, a "wrong" real image ``x_w``
    (of another class) and the generated image ``\hat{x}`` (detached), all with ``mu`` detached:

    $$\mathcal{L}_{D_i} = \mathrm{BCE}(D^c_i(x,\mu),1) + \mathrm{BCE}(D^u_i(x),1)
      + \mathrm{BCE}(D^c_i(x_w,\mu),0) + \mathrm{BCE}(D^u_i(x_w),1)
      + \mathrm{BCE}(D^c_i(\hat{x},\mu),0) + \mathrm{BCE}(D^u_i(\hat{x}),0)$$

    A wrong image is real (unconditional target 1) but does not fit the caption (conditional
    target 0)."""
    (real_c, real_u), (wrong_c, wrong_u), (fake_c, fake_u) = real, wrong, fake
    return (bce(real_c, 1.0) + bce(real_u, 1.0) + bce(wrong_c, 0.0) + bce(wrong_u, 1.0)
            + bce(fake_c, 0.0) + bce(fake_u, 0.0))


def generator_adversarial_loss(fake: Logits) -> torch.Tensor:
    r"""The generator's adversarial term at one stage (paper notes §7.2), from the
    ``(conditional, unconditional)`` logits of its image ``\hat{x}_i`` with ``mu`` *not* detached
    (so that the CA learns through the discriminators too):

    $$\mathcal{L}^{adv}_{G,i} = \mathrm{BCE}(D^c_i(\hat{x}_i,\mu),1) + \mathrm{BCE}(D^u_i(\hat{x}_i),1)$$

    The generator's whole loss is
    $\mathcal{L}_G = \sum_i \mathcal{L}^{adv}_{G,i} + \lambda_{\mathrm{KL}} \mathrm{KL} + \lambda_{\mathrm{RS}} \mathcal{L}^{G}_{\mathrm{RS}}$
    (``GanTrainer.train_step``)."""
    cond, uncond = fake
    return bce(cond, 1.0) + bce(uncond, 1.0)
