"""Gated PixelCNN layer without blind spot (van den Oord et al. 2016; paper Section 4, App. A).

The input has ``C`` integer channels per pixel (RGB, or several code channels). Sub-pixels are
generated in raster order and, inside a pixel, channel by channel (R → G → B). Hidden units are
split into ``C`` *channel groups* (``channel_groups``); group ``g`` may see the sub-pixels
``< g`` of the current pixel and everything of earlier pixels.

Taps of one layer for kernel ``k = 5`` (``p = k // 2 = 2``), output position (r, c) = ●::

    vertical stack: rows r-p..r, cols c-p..c+p      horizontal stack: row r, cols c-p..c
        v v v v v    row r-2                             . . . . .    row r-2
        v v v v v    row r-1                             . . . . .    row r-1
        v v ● v v    row r                               h h ● . .    row r

    ● in the horizontal stack is the centre tap, masked by channel group: mask A in the first
    layer (group g sees input channels < g), mask B after it (group g sees groups <= g).
    The vertical stack may see its own row because its output is used one row lower.

The vertical stack's pre-activation at row ``r - 1`` reaches the horizontal stack at row ``r``
through a 1x1 conv, so the union covers every earlier pixel within reach: no blind spot.
Conditioning enters as one bias map per layer (``2 * hidden`` channels, shared by both stacks'
gate pre-activations) from the modulator (decoders) or the class embedding (priors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_groups(width: int, channels: int) -> torch.Tensor:
    """Group of each of ``width`` features when split as evenly as possible into ``channels``."""
    return torch.arange(width) * channels // width


class CenterMaskedConv2d(nn.Conv2d):
    """Conv whose centre tap (the last column of row 0) is masked by channel group.

    ``strict`` (mask A): output group g sees input groups < g; otherwise (mask B) groups ≤ g.
    Other taps are unmasked. Called on already padded input (``padding=0``).
    """

    def __init__(
        self,
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        kernel: tuple[int, int],
        strict: bool,
    ):
        super().__init__(len(in_groups), len(out_groups), kernel)
        allowed = (
            out_groups[:, None] > in_groups[None, :]
            if strict
            else out_groups[:, None] >= in_groups[None, :]
        )
        mask = torch.ones_like(self.weight)
        mask[:, :, 0, kernel[1] - 1] = allowed.float()
        self.register_buffer("mask", mask, persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias)


def gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) over the two halves of dim 1: ``(B, 2h, ...) -> (B, h, ...)``."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: vertical + horizontal stack, residual on the horizontal stack.

    Shapes: ``v, h (B, in, H, W)`` (``in`` = embedding width for the first layer, else
    ``hidden``), ``bias (B, 2*hidden, H or 1, W or 1)`` → ``v', h' (B, hidden, H, W)``.
    ``residual_hidden`` r: the horizontal residual is 1x1 (h→r) → ReLU → dropout → 1x1 (r→h)
    (Table 4's r); without it a single 1x1 (h→h).
    """

    def __init__(
        self,
        in_groups: torch.Tensor,
        hidden: int,
        channels: int,
        kernel_size: int,
        first: bool,
        residual_hidden: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.first, self.hidden, self.pad = first, hidden, kernel_size // 2
        p, k = self.pad, kernel_size
        groups_h = channel_groups(hidden, channels)
        groups_2h = torch.cat([groups_h, groups_h])  # tanh half and sigmoid half of each unit
        self.vconv = nn.Conv2d(len(in_groups), 2 * hidden, (p + 1, k))
        self.v2h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.hconv = CenterMaskedConv2d(in_groups, groups_2h, (1, p + 1), strict=first)
        if residual_hidden:
            groups_r = channel_groups(residual_hidden, channels)
            self.res = nn.ModuleList(
                [
                    CenterMaskedConv2d(groups_h, groups_r, (1, 1), strict=False),
                    CenterMaskedConv2d(groups_r, groups_h, (1, 1), strict=False),
                ]
            )
        else:
            self.res = nn.ModuleList([CenterMaskedConv2d(groups_h, groups_h, (1, 1), strict=False)])
        self.dropout = nn.Dropout(dropout)

    def residual(self, gated: torch.Tensor) -> torch.Tensor:
        if len(self.res) == 1:
            return self.res[0](gated)
        return self.res[1](self.dropout(torch.relu(self.res[0](gated))))

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pad
        v_pre = self.vconv(F.pad(v, (p, p, p, 0))) + bias  # (B, 2h, H, W): rows r-p..r
        v_out = gate(v_pre) if self.first else v + gate(v_pre)
        down = F.pad(self.v2h(v_pre), (0, 0, 1, 0))[:, :, :-1]  # row r gets row r-1
        h_pre = self.hconv(F.pad(h, (p, 0, 0, 0))) + down + bias  # (B, 2h, H, W)
        h_out = self.residual(gate(h_pre))
        return v_out, (h_out if self.first else h + h_out)

    # ---- incremental evaluation (models.sampling, Ramachandran et al. 2017) -----------------

    def vertical_row(
        self, rows: torch.Tensor, bias_row: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical stack for one finished row.

        ``rows (B, in, p+1, W+2p)``: the layer input's rows r-p..r, zero-padded by p columns;
        ``bias_row (B, 2h, 1, W or 1)``. Returns ``v_out (B, h, 1, W)`` and the horizontal
        stack's contribution for row r+1, ``v2h (B, 2h, 1, W)``.
        """
        v_pre = self.vconv(rows) + bias_row
        p = self.pad
        center = rows[:, :, -1:, p : rows.shape[-1] - p]
        v_out = gate(v_pre) if self.first else center + gate(v_pre)
        return v_out, self.v2h(v_pre)

    def step_weights(self) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Masked weights as ``(in, out)`` matrices for ``horizontal_step`` (prepared once per
        sampling run, so a step does no masking): the horizontal conv, then the residual convs."""

        def matrix(conv: CenterMaskedConv2d) -> torch.Tensor:
            return conv.masked_weight().flatten(1).t().contiguous()  # rows match window.flatten(1)

        return matrix(self.hconv), [(matrix(m), m.bias) for m in self.res]

    def horizontal_step(
        self, window: torch.Tensor, row_bias: torch.Tensor, weights
    ) -> torch.Tensor:
        """Horizontal stack at one position (eval mode: no dropout).

        ``window (B, in, p+1)``: cols c-p..c of row r; ``row_bias (B, 2h)``: the horizontal
        conv's bias + v2h from row r-1 + the conditioning bias; ``weights`` from
        ``step_weights``. Returns ``(B, h)``.
        """
        h_matrix, res = weights
        gated = gate(torch.addmm(row_bias, window.flatten(1), h_matrix))  # (B, h)
        if len(res) == 1:
            out = torch.addmm(res[0][1], gated, res[0][0])
        else:
            mid = torch.relu(torch.addmm(res[0][1], gated, res[0][0]))  # (B, r)
            out = torch.addmm(res[1][1], mid, res[1][0])
        return out if self.first else window[:, :, -1] + out
