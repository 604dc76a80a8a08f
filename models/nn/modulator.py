"""Modulator of the autoregressive decoder (paper Section 4 and Appendix A).

Maps the codes of the level above to one bias map per local-model layer::

    codes (B, Cc, h, w) ints ── one-hot ──> (B, Cc*Vc, h, w)
      ── sub-pixel conv, x factor ──> (B, hidden, H, W)          (Appendix A.1.1: upsample first)
      ── ResNet (pre-activation blocks) + 1x1 ──> (B, layers * 2 * local_hidden, H, W)

The local model adds map ``l`` to the gate pre-activations of its layer ``l``; the codes never
depend on the pixels being modelled, so these location-dependent biases keep the local model
causal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.nn.resnet import ResNet, Upsample


def one_hot_channels(codes: torch.Tensor, values: int) -> torch.Tensor:
    """``(B, C, h, w)`` integers in [0, values) → ``(B, C * values, h, w)`` float one-hot."""
    b, c, h, w = codes.shape
    hot = F.one_hot(codes.long(), values)  # (B, C, h, w, V)
    return hot.permute(0, 1, 4, 2, 3).reshape(b, c * values, h, w).float()


class Modulator(nn.Module):
    """Residual net from one-hot codes to per-layer bias maps (see module docstring)."""

    def __init__(
        self,
        code_channels: int,
        code_values: int,
        hidden: int,
        bottleneck: int,
        layers: int,
        factor: int,
        out_channels: int,
    ):
        super().__init__()
        self.code_values = code_values
        self.upsample = Upsample(code_channels * code_values, hidden, factor)
        self.net = ResNet(hidden, hidden, bottleneck, layers, out_channels)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hot = one_hot_channels(codes, self.code_values).to(self.upsample.conv.weight.dtype)
        return self.net(self.upsample(hot))  # (B, out_channels, H, W)
