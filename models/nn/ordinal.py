"""Ordinal initialisation of the embeddings of pixel intensities (inputs of level 1, Section 4).

Pixel values 0..255 are categories to the gated PixelCNN and to the MSP teacher and encoder
(one-hot inputs, Appendix A), but unlike code indices they are *ordered*: 117 and 118 look
alike. A randomly initialised embedding knows nothing of that, so every one of the 256 rows
has to be learnt from the few pixels that carry that value - early training then spends its
steps near the uniform 8 bits/dim. Starting each row as a smooth function of the value
(sinusoids of ``v / (V - 1)`` at frequencies from half a cycle to ``V / 8`` cycles over the
range, random phase per feature) gives nearby values similar features from step 0; the rows
stay free parameters, so nothing is constrained later. Code embeddings (higher levels,
priors) keep the random initialisation: code indices have no order.
"""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def ordinal_init_(
    weight: torch.Tensor, channels: int, values: int, scale: float = 1.0
) -> torch.Tensor:
    """Fill ``weight (channels * values, width)`` in place; row ``c * values + v`` encodes value ``v``.

    Each column is ``scale * sqrt(2) * sin(2 pi f t + phase)`` with ``t = v / (values - 1)``;
    the ``sqrt(2)`` gives the columns unit mean square like a standard-normal initialisation.
    Columns cycle through the frequencies; phases are drawn from torch's global RNG, so the
    result is seeded like any other initialisation.
    """
    rows, width = weight.shape
    if rows != channels * values:
        raise ValueError(
            f"weight has {rows} rows, expected channels * values = {channels * values}"
        )
    t = torch.arange(values, dtype=torch.float64) / max(values - 1, 1)  # (V,)
    n_freq = max(1, min(width, 16))
    top = max(values / 8, 1.0)
    freqs = 0.5 * (2 * top) ** (
        torch.arange(n_freq, dtype=torch.float64) / max(n_freq - 1, 1)
    )  # 0.5 .. V/8
    column_freq = freqs[torch.arange(width) % n_freq]  # (width,)
    for c in range(channels):
        phase = torch.rand(width, dtype=torch.float64) * 2 * math.pi
        block = torch.sin(2 * math.pi * t[:, None] * column_freq[None] + phase[None])  # (V, width)
        weight[c * values : (c + 1) * values] = (scale * math.sqrt(2) * block).to(weight.dtype)
    return weight
