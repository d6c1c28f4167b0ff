"""The densely-stacked generator (paper: DG; ``G_NET`` in the original, docs/paper_notes.md §6.2).

Three stages produce images at ``stage_sizes`` (64/128/256 in the paper). The first stage maps
``[c, z]`` to a 4x4 seed and up-samples it ``log2(size/4)`` times; every later stage joins the
condition to the previous hidden map, refines it with residual blocks and doubles the resolution:

* dense (S2IGAN):          ``h_i = up(concat[Res(Joint([c, h_{i-1}])), h_{i-1}])``
* ``dense=False`` (StackGAN-v2, the paper's "w/o Dense" ablation): ``h_i = up(Res(Joint([c, h_{i-1}])))``

"Densely stacked" in the original code is only this skip of ``h_{i-1}`` past the stage's own
joint-conv and residual blocks; nothing comes from earlier stages. Each stage has a tanh image head.
Widths: the hidden map of the first stage has ``gf_dim`` channels (the 4x4 seed
``gf_dim * 2**n_up``, 1024 in the paper), and every later stage halves it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .blocks import GLU, ResBlock, conv3x3, init_weights, joint_conv, up_block
from .conditioning import ConditioningAugmentation


class InitialStage(nn.Module):
    """``INIT_STAGE_G``: ``Linear([c, z] -> 2 * C0 * 4 * 4, no bias)``, BN1d, GLU, then up-blocks
    halving the width each time: 4x4 x ``gf_dim * 2**n_up`` -> ``size`` x ``size`` x ``gf_dim``."""

    def __init__(self, in_dim: int, gf_dim: int, size: int):
        super().__init__()
        n_up = int(math.log2(size // 4))
        if 4 * 2 ** n_up != size:
            raise ValueError(f"the first stage size must be 4 * 2**k, got {size}")
        self.seed_channels = gf_dim * 2 ** n_up
        self.fc = nn.Sequential(nn.Linear(in_dim, self.seed_channels * 4 * 4 * 2, bias=False),
                                nn.BatchNorm1d(self.seed_channels * 4 * 4 * 2), GLU())
        self.up = nn.Sequential(*[up_block(self.seed_channels // 2 ** i, self.seed_channels // 2 ** (i + 1))
                                  for i in range(n_up)])

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([c, z], dim=1))  # [c, z] as in the original (order permutes weights only)
        return self.up(x.view(x.shape[0], self.seed_channels, 4, 4))


class NextStage(nn.Module):
    """``NEXT_STAGE_G`` with the S2IGAN skip: ``ngf`` channels in, ``ngf // 2`` out at twice the size."""

    def __init__(self, ngf: int, cond_dim: int, res_blocks: int, dense: bool = True):
        super().__init__()
        self.dense = dense
        self.joint = joint_conv(ngf + cond_dim, ngf)
        self.residual = nn.Sequential(*[ResBlock(ngf) for _ in range(res_blocks)])
        self.up = up_block(ngf * 2 if dense else ngf, ngf // 2)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c_map = c[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        out = self.residual(self.joint(torch.cat([c_map, h], dim=1)))
        if self.dense:
            out = torch.cat([out, h], dim=1)
        return self.up(out)


class ImageHead(nn.Module):
    """``GET_IMAGE_G``: conv3x3 (no bias) to RGB, tanh."""

    def __init__(self, ngf: int):
        super().__init__()
        self.conv = conv3x3(ngf, 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(h))


class Generator(nn.Module):
    """Densely-stacked generator with conditioning augmentation.

    ``forward(z, embedding, eps=None) -> (images, mu, logvar)``: ``images`` is a list with one
    (B, 3, s, s) tensor in [-1, 1] per stage size; ``mu``/``logvar`` are the CA's Gaussian.
    """

    def __init__(self, embed_dim: int, stage_sizes: list[int] | tuple[int, ...] = (64, 128, 256),
                 gf_dim: int = 64, z_dim: int = 100, cond_dim: int = 128, res_blocks: int = 2,
                 dense: bool = True, rescale_embedding: bool = True):
        super().__init__()
        sizes = list(stage_sizes)
        if any(b != 2 * a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"each stage size must be twice the previous, got {sizes}")
        if gf_dim % 2 ** (len(sizes) - 1):
            raise ValueError(f"gf_dim {gf_dim} must be divisible by {2 ** (len(sizes) - 1)}")
        self.stage_sizes, self.z_dim, self.embed_dim = sizes, z_dim, embed_dim
        self.ca = ConditioningAugmentation(embed_dim, cond_dim, rescale_embedding)
        self.initial = InitialStage(cond_dim + z_dim, gf_dim, sizes[0])
        self.stages = nn.ModuleList([NextStage(gf_dim // 2 ** i, cond_dim, res_blocks, dense)
                                     for i in range(len(sizes) - 1)])
        self.heads = nn.ModuleList([ImageHead(gf_dim // 2 ** i) for i in range(len(sizes))])
        self.apply(init_weights)

    @classmethod
    def from_config(cls, cfg, embed_dim: int) -> "Generator":
        """From a ``GanConfig``; ``embed_dim`` is the speech (or text) embedding size."""
        return cls(embed_dim, cfg.stage_sizes, cfg.gf_dim, cfg.z_dim, cfg.condition_dim,
                   cfg.res_blocks, cfg.dense, cfg.rescale_embedding)

    def forward(self, z: torch.Tensor, embedding: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        c, mu, logvar = self.ca(embedding, eps)
        h = self.initial(z, c)
        images = [self.heads[0](h)]
        for stage, head in zip(self.stages, self.heads[1:]):
            h = stage(h, c)
            images.append(head(h))
        return images, mu, logvar
