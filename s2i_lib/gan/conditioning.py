"""Conditioning augmentation (CA; ``CA_NET`` in the original, docs/paper_notes.md §6.1).

The speech embedding is mapped to a Gaussian ``N(mu, diag(exp(logvar)))`` and the generator is
conditioned on a sample ``c`` of it, so that a few thousand embeddings cover a smooth region of
condition space; a KL term keeps the Gaussian near ``N(0, I)``. The discriminators see ``mu``.

Extension (``gan.rescale_embedding``: on in the CPU profiles, off in the paper profiles): the SEN's embeddings are unit vectors, so each
of their D elements is ~1/sqrt(D) (0.03 for 1024-d), while the CA's noise is ~1 per element. Early in
training ``mu`` is then a whisper under the noise and the KL term keeps it there: on the default
profile, after 1000 iterations |mu| was ~0.8 against a noise of ~11 (norms over 128 dimensions), and
changing the caption changed the image by ~2 % of what changing the noise did. Multiplying the
embedding by sqrt(D) (unit RMS per element) gives the caption a voice from the first iteration. The
original, which trains ~220 000 iterations, feeds the unit vector as is (``rescale_embedding: false``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import GLU


class ConditioningAugmentation(nn.Module):
    """``Linear(embed_dim -> 4 * cond_dim, bias)`` -> GLU -> ``mu``, ``logvar`` (``cond_dim`` each);
    ``c = mu + exp(logvar / 2) * eps``.

    ``forward(embedding, eps=None) -> (c, mu, logvar)``. ``eps`` may be given (the trainer draws it
    from its own generator so that runs are reproducible and DDP ranks get their own slice);
    otherwise it is drawn with ``torch.randn``. The original samples at test time too, and so does
    this module (no train/eval difference).
    """

    def __init__(self, embed_dim: int, cond_dim: int, rescale_embedding: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.cond_dim = cond_dim
        self.input_scale = float(embed_dim) ** 0.5 if rescale_embedding else 1.0
        self.fc = nn.Linear(embed_dim, cond_dim * 4, bias=True)
        self.glu = GLU()

    def encode(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.glu(self.fc(embedding * self.input_scale))
        return x[:, : self.cond_dim], x[:, self.cond_dim:]

    def forward(self, embedding: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if embedding.dim() != 2 or embedding.shape[1] != self.embed_dim:
            raise ValueError(f"expected embeddings (B, {self.embed_dim}), got {tuple(embedding.shape)}")
        mu, logvar = self.encode(embedding)
        if eps is None:
            eps = torch.randn_like(mu)
        c = mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)
        return c, mu, logvar


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""The CA's KL term (paper notes §6.1), keeping ``N(mu, diag(sigma^2))`` near ``N(0, I)``:

    $$\mathrm{KL} = -\frac{1}{2} \mathrm{mean}\left(1 + \log\sigma^2 - \mu^2 - \sigma^2\right)$$

    a mean over batch x cond_dim, as coded (the paper's KL would be a sum over dimensions; the
    coefficient ``gan.kl_coeff`` = 2.0 was tuned for the mean)."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
