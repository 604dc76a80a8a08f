"""Residual nets of the autoencoders, modulators and MSP teachers (paper Appendix A).

Every residual net uses the ResNet v2 "full pre-activation" form (He et al. 2016) without
batch normalisation. One block::

    x ──┬── ReLU ── 3x3 conv (hidden→bottleneck) ── ReLU ── 1x1 conv (bottleneck→hidden) ──(+)── y
        └──────────────────────────── identity ───────────────────────────────────────────┘

Resolution changes (Appendix A.1.1): encoders end with strided convolutions (``Downsample``,
one stride-2 conv per factor of two); auxiliary decoders and modulators start with a sub-pixel
convolution (``Upsample``, Shi et al. 2016: a conv to ``out * factor**2`` channels followed by
``PixelShuffle(factor)``).
"""

from __future__ import annotations

import torch
from torch import nn


def _log2_factor(factor: int) -> int:
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"resampling factor must be a power of two >= 1, got {factor}")
    return factor.bit_length() - 1


class ResidualBlock(nn.Module):
    """ReLU → 3x3 conv → ReLU → 1x1 conv, plus identity. ``(B, hidden, H, W) -> same``."""

    def __init__(self, hidden: int, bottleneck: int):
        super().__init__()
        self.conv3 = nn.Conv2d(hidden, bottleneck, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(bottleneck, hidden, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv1(torch.relu(self.conv3(torch.relu(x))))
        return x + residual


class ResNet(nn.Module):
    """``layers`` residual blocks between an input 3x3 conv and an output ReLU + 1x1 conv.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``. The final ReLU completes the
    pre-activation form: the last block's sum is never passed on un-activated.
    """

    def __init__(
        self, in_channels: int, hidden: int, bottleneck: int, layers: int, out_channels: int
    ):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, bottleneck) for _ in range(layers)))
        self.head = nn.Conv2d(hidden, out_channels, kernel_size=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the output 1x1 conv: ``(B, in, H, W) -> (B, hidden, H, W)`` (after ReLU)."""
        return torch.relu(self.blocks(self.stem(x)))

    def head_at(self, rows: torch.Tensor) -> torch.Tensor:
        """The output 1x1 conv at selected positions: ``features`` rows ``(M, hidden) -> (M, out)``."""
        return torch.nn.functional.linear(rows, self.head.weight.flatten(1), self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, out_channels, H, W)


class Downsample(nn.Module):
    """Strided convs (4x4, stride 2), one per factor of two: ``(B, C, H, W) -> (B, C, H/f, W/f)``.

    Pre-activation like the blocks: ReLU before every strided conv. ``factor = 1`` is the
    identity.
    """

    def __init__(self, channels: int, factor: int):
        super().__init__()
        steps = _log2_factor(factor)
        layers: list[nn.Module] = []
        for _ in range(steps):
            layers += [nn.ReLU(), nn.Conv2d(channels, channels, kernel_size=4, stride=2, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Upsample(nn.Module):
    """Sub-pixel convolution: 3x3 conv to ``out * f**2`` channels, then ``PixelShuffle(f)``.

    ``(B, in_channels, H, W) -> (B, out_channels, H*f, W*f)``; ``factor = 1`` is a plain 3x3 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        _log2_factor(factor)
        self.conv = nn.Conv2d(in_channels, out_channels * factor * factor, kernel_size=3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
