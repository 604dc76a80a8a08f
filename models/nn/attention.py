"""Causal multi-head self-attention for the priors (paper Section 7.3, A.3, Table 4; PixelSNAIL).

Inserted after every few gated layers of a prior. Positions are the ``T = H*W`` pixels in
raster order. Position t attends to every *earlier* position s < t; the keys and values of s
are built from the stack's features at s **and the raw input embedding at s** (so the
attention path, like the convolutions, has no blind spot), plus a 2-D timing signal that is
``add``ed or ``concat``enated as the card says. The query of t may only use what t's own
features know without its own sub-pixels: the features of channel group 0.

Mask for T = 4 (rows: queries t, columns: ∅ then keys s; ■ attended)::

          ∅  s=0 s=1 s=2 s=3
    t=0   ■   .   .   .   .      the null slot ∅ has a zero key and a zero value: a query
    t=1   ■   ■   .   .   .      with nothing to attend to (t = 0) gets exactly 0, never NaN,
    t=2   ■   ■   ■   .   .      and no row ever sees its own or a later position
    t=3   ■   ■   ■   ■   .

Heads get their own width ``ceil(hidden / heads)`` (Table 4 pairs h = 640 with ah = 15).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CONCAT_TIMING_WIDTH = 32  # channels of the concatenated timing signal (not given in the paper)


def timing_signal(
    width: int, height: int, cols: int, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Sinusoidal 2-D position signal ``(width, height, cols)``: half the channels encode the row,
    half the column, as sin/cos pairs at geometric frequencies (Vaswani et al. 2017)."""
    half = width // 2
    pairs = max(half // 2, 1)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(pairs, device=device) / pairs)

    def encode(n: int) -> torch.Tensor:  # (2 * pairs, n)
        angles = freqs[:, None] * torch.arange(n, device=device)[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)])

    rows = encode(height)[:half, :, None].expand(-1, height, cols)
    columns = encode(cols)[: width - half, None, :].expand(-1, height, cols)
    signal = torch.cat([rows, columns])
    if signal.shape[0] < width:  # widths too small for a full pair: pad with zeros
        signal = F.pad(signal, (0, 0, 0, 0, 0, width - signal.shape[0]))
    return signal.to(dtype)


class CausalSelfAttention(nn.Module):
    """``forward(h (B, hidden, H, W), emb (B, E, H, W)) -> (B, hidden, H, W)``, causal as drawn above.

    ``query_width``: the leading feature channels a query may read (channel group 0).
    """

    def __init__(
        self,
        hidden: int,
        embed_width: int,
        query_width: int,
        heads: int,
        timing: str,
        dropout: float = 0.0,
    ):
        super().__init__()
        if timing not in ("add", "concat"):
            raise ValueError(f"timing must be 'add' or 'concat', got {timing!r}")
        self.hidden, self.query_width, self.heads, self.timing = hidden, query_width, heads, timing
        self.head_dim = math.ceil(hidden / heads)
        inner = heads * self.head_dim
        extra = CONCAT_TIMING_WIDTH if timing == "concat" else 0
        self.kv_width = hidden + embed_width
        self.query = nn.Linear(query_width + extra, inner)
        self.key = nn.Linear(self.kv_width + extra, inner)
        self.value = nn.Linear(self.kv_width + extra, inner)
        self.out = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)

    def with_timing(self, x: torch.Tensor, signal_width: int, position_signal) -> torch.Tensor:
        """Add or concatenate the timing signal to channel-last input ``x (..., width)``."""
        if self.timing == "add":
            return x + position_signal(signal_width)
        signal = position_signal(CONCAT_TIMING_WIDTH)
        return torch.cat([x, signal.expand(*x.shape[:-1], signal.shape[-1])], dim=-1)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, inner) -> (B, heads, T, d)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def keys_values(
        self, h: torch.Tensor, emb: torch.Tensor, signal
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel-last ``h (B, T, hidden)``, ``emb (B, T, E)`` → keys, values ``(B, heads, T, d)``."""
        kv_in = self.with_timing(torch.cat([h, emb], dim=-1), self.kv_width, signal)
        return self.split_heads(self.key(kv_in)), self.split_heads(self.value(kv_in))

    def queries(self, h: torch.Tensor, signal) -> torch.Tensor:
        q_in = self.with_timing(h[..., : self.query_width], self.query_width, signal)
        return self.split_heads(self.query(q_in))  # (B, heads, T, d)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """``q (B, nh, Tq, d)``, ``k, v (B, nh, 1+Tk, d)`` with the null slot first,
        ``allowed (Tq, 1+Tk)`` bool → ``(B, Tq, hidden)``."""
        if q.shape[2] == 1:
            # One query (a sampling step): plain math is a few small kernels, where the fused
            # attention kernels are tuned for long query blocks.
            scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5  # (B, nh, 1, 1+Tk)
            scores = scores.masked_fill(~allowed, float("-inf"))  # the null slot is always allowed
            y = (
                torch.softmax(
                    scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)
                ).to(v.dtype)
                @ v
            )
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        b, _, t, _ = y.shape
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, -1)))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, _, height, cols = h.shape
        n = height * cols

        def signal(width: int) -> torch.Tensor:  # (1, T, width)
            return timing_signal(width, height, cols, h.device, h.dtype).flatten(1).t()[None]

        h_flat, emb_flat = h.flatten(2).transpose(1, 2), emb.flatten(2).transpose(1, 2)  # (B, T, .)
        k, v = self.keys_values(h_flat, emb_flat, signal)
        null = k.new_zeros(b, self.heads, 1, self.head_dim)
        k, v = torch.cat([null, k], dim=2), torch.cat([null, v], dim=2)  # (B, nh, 1+T, d)
        allowed = causal_allowed(torch.arange(n, device=h.device), n)
        y = self.attend(self.queries(h_flat, signal), k, v, allowed)  # (B, T, hidden)
        return y.transpose(1, 2).reshape(b, self.hidden, height, cols)


def step_allowed(position: torch.Tensor, n: int) -> torch.Tensor:
    """``causal_allowed`` for one query at the 0-dim device tensor ``position``: ``(1, 1+n)``."""
    return causal_allowed(position.view(1), n)


def causal_allowed(query_positions: torch.Tensor, n: int) -> torch.Tensor:
    """``(Tq, 1+n)`` bool: the null slot always, key s iff s < the query's position."""
    keys = torch.arange(n, device=query_positions.device)
    strict = keys[None, :] < query_positions[:, None]
    return torch.cat([torch.ones_like(strict[:, :1]), strict], dim=1)
