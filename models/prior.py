"""Class-conditional prior over the top-level codes (paper Section 7.3, Appendix A.3, Table 4).

A gated PixelCNN (``models.pixelcnn.GatedPixelCNN``) with ``layers`` l layers of ``hidden`` h
units, a residual 1x1 bottleneck of width ``residual_hidden`` r in every layer, ``dropout`` do,
and ``attention_layers`` a causal self-attention blocks with ``attention_heads`` ah heads spread
evenly through the stack (after layers ``(k+1) * l // a - 1``, PixelSNAIL style). The class
enters as a learnt per-layer bias (the conditional PixelCNN's global conditioning)::

    z (B, C, h, w) codes, class_ids (B,)
      class embedding ─> bias (B, l * 2h, 1, 1) ─┐
      z ─> embed ─> [gated layer ─> (attention)] x l ─> head ─> logits (B, C, V, h, w)
"""

from __future__ import annotations

import torch
from torch import nn

from models.config import PriorConfig
from models.errors import ModelsError
from models.nn.attention import CausalSelfAttention
from models.pixelcnn import GatedPixelCNN, check_values, sum_nll


def attention_positions(layers: int, attention_layers: int) -> list[int]:
    """Indices of the gated layers followed by attention, evenly spread, the last one last."""
    return [(k + 1) * layers // attention_layers - 1 for k in range(attention_layers)]


class Prior(nn.Module):
    """p(z | class): ``forward(z, class_ids) -> logits (B, C, V, h, w)``; ``nll -> (B,)`` nats."""

    def __init__(self, prior: PriorConfig, code_channels: int, code_values: int, num_classes: int):
        super().__init__()
        self.config = prior
        self.code_channels, self.code_values, self.num_classes = (
            code_channels,
            code_values,
            num_classes,
        )
        h, channels = prior.hidden, code_channels
        query_width = -(-h // channels)  # size of channel group 0: units o with o * C // h == 0
        attention = {
            i: CausalSelfAttention(
                h, channels * h, query_width, prior.attention_heads, prior.timing, prior.dropout
            )
            for i in attention_positions(prior.layers, prior.attention_layers)
        }
        self.net = GatedPixelCNN(
            channels,
            code_values,
            h,
            prior.layers,
            prior.kernel_size,
            residual_hidden=prior.residual_hidden,
            dropout=prior.dropout,
            attention=attention,
        )
        self.class_bias = nn.Embedding(num_classes, self.net.bias_channels)
        nn.init.normal_(self.class_bias.weight, std=0.1)

    def condition(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Per-layer class biases ``(B, layers * 2h, 1, 1)``."""
        return self.class_bias(class_ids.long())[:, :, None, None]

    def forward(self, z: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return self.net(z, self.condition(class_ids))

    def nll(self, z: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in nats summed over all code sub-dimensions: ``(B,)``."""
        check_values(z, self.code_channels, self.code_values, "prior codes")
        check_class_ids(class_ids, len(z), self.num_classes)
        return sum_nll(self(z, class_ids), z)


def check_class_ids(class_ids: torch.Tensor, batch: int, num_classes: int) -> None:
    if class_ids.shape != (batch,) or class_ids.is_floating_point():
        raise ModelsError(
            f"class ids must be {batch} integers, got {class_ids.dtype} {tuple(class_ids.shape)}"
        )
    if batch and (int(class_ids.min()) < 0 or int(class_ids.max()) >= num_classes):
        raise ModelsError(
            f"class ids must lie in [0, {num_classes - 1}] for this model, found "
            f"[{int(class_ids.min())}, {int(class_ids.max())}]"
        )
