"""Gated PixelCNN stacks and the conditional autoregressive decoder (paper Section 4, App. A).

``GatedPixelCNN`` is the shared network: a per-channel input embedding, ``layers`` gated layers
(``models.nn.gated``: vertical + horizontal stacks, no blind spot, R → G → B inside a pixel),
optional causal self-attention after chosen layers (priors, ``models.nn.attention``) and an
output head ReLU → 1x1 → ReLU → 1x1 with channel masks, giving logits for every sub-pixel::

    x (B, C, H, W) ints ─ embed ─> (B, C*E, H, W) ─ gated layers (+ attention) ─> (B, h, H, W)
      ─ head ─> logits (B, C, V, H, W);   logits[:, c, :, i, j] depends on x[:, :c, i, j] and
                                           on pixels before (i, j) in raster order only.

``ConditionalDecoder`` = modulator (codes → per-layer bias maps) + ``GatedPixelCNN`` local model:
the autoregressive decoder p(x_l | z_l) of one level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import LevelConfig
from models.errors import ModelsError
from models.nn.gated import CenterMaskedConv2d, GatedLayer, channel_groups
from models.nn.modulator import Modulator
from models.nn.ordinal import ordinal_init_


def check_values(x: torch.Tensor, channels: int, values: int, what: str) -> None:
    """Raise ``ModelsError`` unless ``x`` is ``(B, channels, H, W)`` integers in [0, values)."""
    if x.dim() != 4 or x.shape[1] != channels or x.is_floating_point():
        raise ModelsError(
            f"{what} must be integers of shape (B, {channels}, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= values):
        raise ModelsError(
            f"{what} must lie in [0, {values - 1}], found values in "
            f"[{int(x.min())}, {int(x.max())}]; check the data matches the model card"
        )


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over ``channels`` integer channels with ``values`` values each.

    ``bias`` (the conditioning) is ``(B, layers * 2 * hidden, H or 1, W or 1)``.
    ``attention`` maps a layer index to a module applied after that layer:
    ``h = h + attn(h, embedding)`` (it must itself be causal).
    """

    def __init__(
        self,
        channels: int,
        values: int,
        hidden: int,
        layers: int,
        kernel_size: int,
        residual_hidden: int | None = None,
        dropout: float = 0.0,
        attention: dict[int, nn.Module] | None = None,
        ordinal_input: bool = False,
    ):
        super().__init__()
        if hidden < channels:
            raise ModelsError(
                f"hidden width {hidden} must be >= the number of input channels {channels}"
            )
        self.channels, self.values, self.hidden, self.kernel_size = (
            channels,
            values,
            hidden,
            kernel_size,
        )
        self.embed_width = hidden
        self.embedding = nn.Embedding(channels * values, self.embed_width)  # row c*V + x: channel c
        if ordinal_input:  # pixel intensities: nearby values start with similar features
            ordinal_init_(self.embedding.weight, channels, values)
        self.register_buffer("offsets", torch.arange(channels) * values, persistent=False)
        in_groups = channel_groups(channels * self.embed_width, channels)
        self.layers = nn.ModuleList()
        for i in range(layers):
            groups = in_groups if i == 0 else channel_groups(hidden, channels)
            self.layers.append(
                GatedLayer(
                    groups,
                    hidden,
                    channels,
                    kernel_size,
                    first=i == 0,
                    residual_hidden=residual_hidden,
                    dropout=dropout,
                )
            )
        self.attention = nn.ModuleDict({str(k): m for k, m in (attention or {}).items()})
        groups_h = channel_groups(hidden, channels)
        self.head = nn.ModuleList(
            [
                CenterMaskedConv2d(groups_h, groups_h, (1, 1), strict=False),
                CenterMaskedConv2d(
                    groups_h, channel_groups(channels * values, channels), (1, 1), strict=False
                ),
            ]
        )
        if (
            ordinal_input
        ):  # logits smooth in the value too: a feature bump moves mass to nearby values
            out_weight = self.head[1].weight.data.view(channels * values, hidden)
            ordinal_init_(out_weight, channels, values, scale=1 / (3 * hidden) ** 0.5)

    @property
    def bias_channels(self) -> int:
        return len(self.layers) * 2 * self.hidden

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` ints → ``(B, C*E, H, W)``; features c*E..(c+1)*E-1 belong to channel c."""
        e = self.embedding(x.long() + self.offsets[:, None, None])  # (B, C, H, W, E)
        b, c, h, w, width = e.shape
        return e.permute(0, 1, 4, 2, 3).reshape(b, c * width, h, w)

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, hidden, H, W)`` → ``(B, C, V, H, W)``.

        The two 1x1 convs run as matrix products over positions, channels last: the logits
        are stored ``(B, H, W, C, V)`` and returned as a permuted view, so the loss reads the
        ``C * V`` logits of a position contiguously instead of copying the largest tensor
        of the step twice (forward and backward).
        """
        b, _, hh, ww = h.shape
        (w0, b0), (w1, b1) = [(m.masked_weight().flatten(1), m.bias) for m in self.head]
        mid = torch.relu(F.linear(torch.relu(h).permute(0, 2, 3, 1), w0, b0))  # (B, H, W, hidden)
        out = F.linear(mid, w1, b1)  # (B, H, W, C*V)
        return out.view(b, hh, ww, self.channels, self.values).permute(0, 3, 4, 1, 2)

    def head_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The head's masked 1x1 convs as ``(in, out)`` matrices and biases, for ``head_step``."""
        return [(m.masked_weight().flatten(1).t().contiguous(), m.bias) for m in self.head]

    def head_step(self, h: torch.Tensor, weights) -> torch.Tensor:
        """Head at one position: ``(B, hidden)`` → ``(B, C, V)``; ``weights`` from ``head_weights``."""
        (w0, b0), (w1, b1) = weights
        mid = torch.addmm(b0, torch.relu(h), w0)
        return torch.addmm(b1, torch.relu(mid), w1).view(-1, self.channels, self.values)

    def layer_bias(self, bias: torch.Tensor, index: int) -> torch.Tensor:
        width = 2 * self.hidden
        return bias[:, index * width : (index + 1) * width]

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.forward_embedded(self.embed(x).to(bias.dtype), bias)

    def forward_embedded(self, emb: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The network after the embedding: ``emb (B, C*E, H, W)`` → logits ``(B, C, V, H, W)``.

        Separate so tests can take gradients with respect to the (continuous) embedding.
        """
        v = h = emb
        for i, layer in enumerate(self.layers):
            v, h = layer(v, h, self.layer_bias(bias, i))  # (B, hidden, H, W) each
            if str(i) in self.attention:
                h = h + self.attention[str(i)](h, emb)
        return self.head_logits(h)


def sum_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Categorical NLL in nats summed per image: logits ``(B, C, V, H, W)``, x ``(B, C, H, W)`` → ``(B,)``."""
    b, c, v, h, w = logits.shape
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the sum over many sub-pixels needs full precision
    # Position-major (B, H, W, C, V): a view of ``head_logits``' storage, no copy.
    flat = logits.permute(0, 3, 4, 1, 2).reshape(-1, v)
    nll = F.cross_entropy(flat, x.long().permute(0, 2, 3, 1).reshape(-1), reduction="none")
    return nll.view(b, -1).sum(dim=1)


class ConditionalDecoder(nn.Module):
    """Autoregressive decoder p(x | z) of one level: modulator + gated PixelCNN local model.

    ``factor`` is the input resolution divided by the code resolution (a power of two);
    the modulator's sub-pixel conv upsamples the codes by it.
    """

    def __init__(
        self,
        level: LevelConfig,
        input_channels: int,
        input_values: int,
        code_channels: int,
        code_values: int,
        *,
        factor: int,
        ordinal_input: bool = False,
    ):
        super().__init__()
        local = level.local_model
        self.input_channels, self.input_values = input_channels, input_values
        self.code_channels, self.code_values, self.factor = code_channels, code_values, factor
        self.local = GatedPixelCNN(
            input_channels,
            input_values,
            local.hidden,
            local.layers,
            local.kernel_size,
            ordinal_input=ordinal_input,
        )
        mod = level.modulator
        self.modulator = Modulator(
            code_channels,
            code_values,
            mod.hidden,
            mod.bottleneck,
            mod.layers,
            factor,
            self.local.bias_channels,
        )

    def condition(self, codes: torch.Tensor) -> torch.Tensor:
        """Bias maps for every local-model layer: ``(B, layers*2*hidden, H, W)``."""
        return self.modulator(codes)

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` ints, ``codes (B, Cc, H/f, W/f)`` ints → logits ``(B, C, V, H, W)``."""
        bias = self.condition(codes)
        if bias.shape[-2:] != x.shape[-2:]:
            raise ModelsError(
                f"codes of size {tuple(codes.shape[-2:])} upsample by {self.factor} to "
                f"{tuple(bias.shape[-2:])}, but the input is {tuple(x.shape[-2:])}; "
                "pass codes produced by this level's encoder for this input"
            )
        return self.local(x, bias)

    def nll(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in nats summed over all sub-pixels: ``(B,)``."""
        check_values(x, self.input_channels, self.input_values, "decoder input")
        check_values(codes, self.code_channels, self.code_values, "codes")
        return sum_nll(self(x, codes), x)
