"""The speech encoder: log-mel frames -> one unit-norm embedding per utterance.

Paper name: SED (speech encoder), ``CNN_RNN_ENCODER`` in the original code (docs/paper_notes.md §2.1):
Conv1d(40, 64, k6, s2) + BN, Conv1d(64, 128, k6, s2) + BN (no nonlinearity between them, as the
original), a bidirectional GRU, feature-wise additive attention pooling, L2 normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONV_KERNEL = 6
CONV_STRIDE = 2


def conv_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames left after the two convolutions: ``L <- (L - 4) // 2`` twice, as the original
    (equal to ``(L - 6) // 2 + 1``, the valid-convolution length)."""
    for _ in range(2):
        lengths = torch.div(lengths - (CONV_KERNEL - CONV_STRIDE), CONV_STRIDE, rounding_mode="floor")
    return lengths


#: Shortest utterance the encoder accepts: 16 frames (0.16 s at a 10 ms hop) leave one frame
#: after the two stride-2 convolutions of width 6.
MIN_FRAMES = 16


def reverse_within_length_index(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """(B, total) time indices that reverse each sequence's first ``length`` frames and keep its
    padding in place; applying it twice is the identity."""
    t = torch.arange(total, device=lengths.device).unsqueeze(0)
    return torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)


class BidirectionalGRU(nn.Module):
    """Multi-layer bidirectional GRU over a padded batch, giving exactly what ``nn.GRU(...,
    bidirectional=True)`` gives on ``pack_padded_sequence(..., enforce_sorted=False)`` (tested):
    the forward direction runs over the padded batch (a real frame never sees later padding), the
    backward direction over each sequence reversed *within its length*, then un-reversed.

    Why not the packed ``nn.GRU`` itself: its CPU backward slices the input at every time step and
    each slice's gradient is a zero-filled copy of the whole input, so the cost grows with T^2 * B.
    Measured here for the paper's GRU (128 -> 2 x 512, 72 steps), forward + backward: 1.27 s vs
    0.83 s at batch 32, 34 s vs 3.9 s at batch 128 (the paper's batch).
    Padded output frames are zero, as ``pad_packed_sequence`` gives them.
    """

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.forward_layers = nn.ModuleList(nn.GRU(n, hidden, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(nn.GRU(n, hidden, batch_first=True) for n in sizes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: (B, T, input_size), lengths (B,) -> (B, T, 2 * hidden)."""
        lengths = lengths.to(x.device)
        idx = reverse_within_length_index(lengths, x.shape[1]).unsqueeze(-1)
        for fwd, bwd in zip(self.forward_layers, self.backward_layers):
            out_f, _ = fwd(x)
            out_b, _ = bwd(x.gather(1, idx.expand_as(x)))
            out_b = out_b.gather(1, idx.expand_as(out_b))
            x = torch.cat([out_f, out_b], dim=-1)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        return x * mask.unsqueeze(-1)


class AttentionPooling(nn.Module):
    """Feature-wise additive attention pooling (the paper's "self-attention layer").

    ``alpha_t = softmax_t(W2 tanh(W1 h_t + b1) + b2)``, computed separately for every feature
    dimension (the softmax runs over time), ``e = sum_t alpha_t * h_t``.

    Deviations from the original, both deliberate:
    - padded frames are masked out of the softmax. Unmasked (the original), an utterance's
      embedding depends on how long the other utterances of its batch are;
    - W1 *and* W2 get orthogonal init (the original initialised W1 twice and left W2 at the default).
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)
        nn.init.orthogonal_(self.w1.weight)
        nn.init.orthogonal_(self.w2.weight)

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha: (B, T, dim), summing to 1 over the real frames of every feature dimension."""
        scores = self.w2(torch.tanh(self.w1(h)))
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h: (B, T, dim); mask: (B, T) bool, True at real frames -> (B, dim)."""
        return (self.weights(h, mask) * h).sum(dim=1)


class SpeechEncoder(nn.Module):
    """SED: log-mel features (B, T, n_mels) + lengths (B,) -> unit-norm embeddings (B, 2 * gru_hidden).

    The GRU gives what the original's GRU on packed sequences gives (``BidirectionalGRU``: the
    same result without the packed path's slow CPU backward; the batch need not be sorted), and the
    attention pooling masks the padded frames: in eval mode an utterance gets the same embedding
    alone or padded in a batch of longer ones. In train mode BatchNorm's batch statistics still
    include padded frames, as in the original.

    Utterances shorter than ``MIN_FRAMES`` (16) frames are an error (``ValueError`` naming the
    minimum), not padded silently: spoken captions are seconds long, so a shorter one is a bug
    upstream. Lengths may be a tensor or a list; they are moved to the CPU as int64 for packing.
    """

    def __init__(self, n_mels: int = 40, conv_channels: tuple[int, int] | list[int] = (64, 128),
                 gru_hidden: int = 512, gru_layers: int = 2, attention_hidden: int = 128):
        super().__init__()
        c0, c1 = conv_channels
        self.n_mels = n_mels
        self.conv1 = nn.Conv1d(n_mels, c0, CONV_KERNEL, CONV_STRIDE)
        self.bn1 = nn.BatchNorm1d(c0)
        self.conv2 = nn.Conv1d(c0, c1, CONV_KERNEL, CONV_STRIDE)
        self.bn2 = nn.BatchNorm1d(c1)
        self.gru = BidirectionalGRU(c1, gru_hidden, gru_layers)
        self.attention = AttentionPooling(2 * gru_hidden, attention_hidden)
        self.embed_dim = 2 * gru_hidden

    @classmethod
    def from_config(cls, cfg, n_mels: int = 40) -> "SpeechEncoder":
        """From a ``SenConfig`` (widths) and the speech features' ``n_mels``."""
        return cls(n_mels=n_mels, conv_channels=tuple(cfg.conv_channels), gru_hidden=cfg.gru_hidden,
                   gru_layers=cfg.gru_layers, attention_hidden=cfg.attention_hidden)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | list[int]) -> torch.Tensor:
        h, mask = self._frames(feats, lengths)
        return F.normalize(self.attention(h, mask), p=2, dim=1)

    def attention_weights(self, feats: torch.Tensor, lengths: torch.Tensor | list[int]) -> torch.Tensor:
        """(B, T2, dim): the attention pooling's weights, each feature dimension's summing to 1
        over the real output frames (padded frames get 0). Output frame ``j`` sees input frames
        ``4j .. 4j + 15`` (``frame_centres_s`` gives its centre)."""
        h, mask = self._frames(feats, lengths)
        return self.attention.weights(h, mask)

    def _frames(self, feats: torch.Tensor, lengths: torch.Tensor | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU's output frames (B, T2, dim) and their mask (B, T2), True at real frames."""
        if feats.dim() != 3 or feats.shape[-1] != self.n_mels:
            raise ValueError(f"expected features (B, T, {self.n_mels}), got {tuple(feats.shape)}")
        lengths = torch.as_tensor(lengths).detach().to("cpu", torch.int64)
        if lengths.shape != (feats.shape[0],):
            raise ValueError(f"lengths must have shape ({feats.shape[0]},), got {tuple(lengths.shape)}")
        short = (lengths < MIN_FRAMES).nonzero().flatten().tolist()
        if short:
            raise ValueError(f"utterance(s) at batch position(s) {short} have "
                             f"{lengths[short].tolist()} frames; the speech encoder needs at least "
                             f"{MIN_FRAMES} frames (two stride-{CONV_STRIDE} convolutions of width {CONV_KERNEL})")
        if int(lengths.max()) > feats.shape[1]:
            raise ValueError(f"a length ({int(lengths.max())}) exceeds the padded length {feats.shape[1]}")

        x = self.bn1(self.conv1(feats.transpose(1, 2)))
        x = self.bn2(self.conv2(x)).transpose(1, 2)          # (B, T2, c1)
        out_lengths = conv_output_lengths(lengths).to(x.device)
        h = self.gru(x, out_lengths)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < out_lengths.unsqueeze(1)
        return h, mask


def frame_centres_s(n_frames: int, hop_s: float = 0.01) -> np.ndarray:
    """Centre time (s) of each of the encoder's output frames: frame ``j`` covers input frames
    ``4j .. 4j + 15`` (two convolutions of width 6, stride 2), and input frame ``i`` is centred on
    ``i * hop`` (the features are computed with ``center=True``)."""
    span = (CONV_KERNEL - 1) * (1 + CONV_STRIDE)            # 15 input frames from first to last
    return (np.arange(n_frames) * CONV_STRIDE ** 2 + span / 2) * hop_s


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
