"""Building blocks of the generator and the discriminators (docs/paper_notes.md §6 and §7.1).

The names follow StackGAN-v2 / the original S2IGAN code (``models/model.py``) so that the two can
be read side by side: ``up_block`` is ``upBlock``, ``joint_conv`` is ``Block3x3_relu`` (the paper's
"jointConv"), ``down_block`` is ``downBlock``, ``conv3x3_leaky`` is ``Block3x3_leakRelu``.
All 3x3 and 4x4 convolutions are bias-free: a BatchNorm follows each of them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# On the CPU, oneDNN runs convolutions with a tiny output map and a huge reduction (the deep layers
# of the paper's 128/256 px discriminators: 8x8 -> 4x4 with 1024 -> 2048 channels, 4x4 conv3x3
# 2048 -> 1024) well below the machine's matrix-multiply speed; as im2col + one GEMM they run
# 1.5-2x faster, forward and backward (autograd goes through unfold and matmul). For small layers
# oneDNN is faster, hence both thresholds (measured on a 2-core AVX-512 CPU). Same function, same
# parameters, same state dict.
GEMM_CONV_MAX_POSITIONS = 16      # output height * width
GEMM_CONV_MIN_REDUCTION = 8192    # in_channels * kernel height * kernel width


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) whose CPU forward is im2col + one matrix
    product when the output map is tiny and the reduction large (see the thresholds above)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if (x.device.type != "cpu" or self.groups != 1 or self.padding_mode != "zeros" or x.dim() != 4
                or self.in_channels * kh * kw < GEMM_CONV_MIN_REDUCTION):
            return super().forward(x)
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        oh = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if oh * ow > GEMM_CONV_MAX_POSITIONS:
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # B, C*k*k, L
        b, k, positions = cols.shape
        # one (O, K) x (K, B*L) product: `weight @ cols` would broadcast the weight over the batch,
        # and its backward then copies a (B, K, O) tensor (0.5 GB in bf16 at 256 px; docs/precision.md)
        weight = self.weight.reshape(self.out_channels, k)   # reshape: the weight may be channels_last
        out = (weight @ cols.transpose(0, 1).reshape(k, b * positions)).view(self.out_channels, b, positions)
        out = out.transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1)
        # in the input's layout, as nn.Conv2d gives it (the transpose left it in neither; <= 16 positions)
        layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                  else torch.contiguous_format)
        return out.reshape(b, self.out_channels, oh, ow).contiguous(memory_format=layout)


def _as_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters and state dict) whose gradient reaches its backward in
    its input's memory format. With channels_last inputs (bf16 training) the gradient coming back
    through a GLU or an upsampling arrives in the standard layout, and the CPU's batch-norm backward
    then takes a path ~10x slower than with both in channels_last (docs/precision.md); a copy of
    the gradient costs ~1/10 of that difference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if (y.requires_grad and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            y.register_hook(_as_channels_last)
        return y


class GLU(nn.Module):
    """Gated linear unit along channels: ``x[:, :C/2] * sigmoid(x[:, C/2:])``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c % 2:
            raise ValueError(f"GLU needs an even number of channels, got {c}")
        return x[:, : c // 2] * torch.sigmoid(x[:, c // 2:])


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)


def up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Nearest x2 upsampling, conv3x3 (in -> 2 out), BN, GLU: doubles the resolution."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(in_ch, out_ch * 2),
                         BatchNorm2d(out_ch * 2), GLU())


def joint_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """"jointConv" (``Block3x3_relu``, although the gate is a GLU): conv3x3 (in -> 2 out), BN, GLU."""
    return nn.Sequential(conv3x3(in_ch, out_ch * 2), BatchNorm2d(out_ch * 2), GLU())


class ResBlock(nn.Module):
    """conv3x3 (C -> 2C), BN, GLU, conv3x3 (C -> C), BN, plus the input; no activation after the add."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(conv3x3(channels, channels * 2), BatchNorm2d(channels * 2), GLU(),
                                   conv3x3(channels, channels), BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + x


def down_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """conv 4x4 stride 2 (no bias), BN, LeakyReLU(0.2): halves the resolution."""
    return nn.Sequential(Conv2d(in_ch, out_ch, 4, 2, 1, bias=False), BatchNorm2d(out_ch),
                         nn.LeakyReLU(0.2, inplace=True))


def conv3x3_leaky(in_ch: int, out_ch: int) -> nn.Sequential:
    """conv3x3 (no bias), BN, LeakyReLU(0.2): keeps the resolution."""
    return nn.Sequential(conv3x3(in_ch, out_ch), BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True))


def init_weights(module: nn.Module) -> None:
    """The original's ``weights_init`` (applied to G, every D and the RS with ``.apply``).

    Orthogonal (gain 1) on every conv and linear weight; linear biases 0 (conv biases, only in the
    D output heads, keep PyTorch's default, as in the original); BatchNorm weight ~ N(1, 0.02),
    bias 0.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.orthogonal_(module.weight, 1.0)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight, 1.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
