"""Polyak averaging of model weights (paper Appendix A: decay 0.9999 for all models).

``Polyak`` keeps a frozen copy of a model whose *parameters* follow an exponential moving
average of the trained ones::

    avg <- d_t * avg + (1 - d_t) * param,   d_t = min(decay, (1 + t) / (10 + t))

The warm-up ``(1 + t) / (10 + t)`` (not in the paper) keeps the average from being dominated
by the random initial weights in short runs: with d = 0.9999 and no warm-up, 86% of the
average would still be the initialisation after 1,500 steps.

*Buffers* are copied, not averaged: the VQ codebook (``models.nn.quantizer``) is stored in
buffers and is already an exponential moving average (EMA k-means); averaging it a second time
would give codes that no longer match the encoder's assignments. The averaged copy is the one
used for evaluation, code extraction and sampling.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def polyak_decay_at(decay: float, step: int) -> float:
    """Decay used for the update after optimiser step ``step`` (0-based), with warm-up."""
    return min(decay, (1.0 + step) / (10.0 + step))


class Polyak:
    """Exponential moving average of a module's parameters; buffers follow the module."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.averaged = copy.deepcopy(model).eval()
        for p in self.averaged.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = polyak_decay_at(self.decay, step)
        for avg, param in zip(self.averaged.parameters(), model.parameters(), strict=True):
            avg.lerp_(param.detach(), 1.0 - d)
        for avg_buf, buf in zip(self.averaged.buffers(), model.buffers(), strict=True):
            avg_buf.copy_(buf)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state, strict=True)
