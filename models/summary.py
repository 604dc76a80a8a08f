"""Parameter counts of every network of a model card (paper Appendix A, Table 4).

The networks are built on PyTorch's ``meta`` device: shapes without storage, so even the
paper's ImageNet cards (hundreds of millions of weights) are counted in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.config import ModelCard
from models.stage import Stage


@dataclass(frozen=True)
class NetworkCount:
    stage: str  # "level1", ..., "prior"
    network: (
        str  # "encoder", "quantizer", "aux_decoder", "teacher", "modulator", "local_model", "prior"
    )
    parameters: int  # trainable weights
    buffers: int  # persistent buffer elements (e.g. the EMA codebook)


def _numel(module: nn.Module | None) -> tuple[int, int]:
    if module is None:
        return 0, 0
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(
        b.numel()
        for name, b in module.named_buffers()
        if name.rsplit(".", 1)[-1] not in _non_persistent(module, name)
    )
    return params, buffers


def _non_persistent(root: nn.Module, name: str) -> set[str]:
    owner = root.get_submodule(name.rsplit(".", 1)[0]) if "." in name else root
    return set(owner._non_persistent_buffers_set)


def count_parameters(card: ModelCard) -> list[NetworkCount]:
    """One row per network of every stage, built on the meta device (no memory, no time)."""
    from models.hierarchy import build_stage_model

    rows: list[NetworkCount] = []
    with torch.device("meta"):
        for stage in Stage.all_of(card):
            model = build_stage_model(card, stage)
            if stage == "prior":
                parts = {"prior": model.prior}
            else:
                encoder = nn.ModuleList(
                    [m for m in (model.encoder_input, model.encoder) if m is not None]
                )
                teacher = nn.ModuleList(
                    [m for m in (model.teacher_input, model.teacher) if m is not None]
                )
                parts = {
                    "encoder": encoder,
                    "quantizer": model.quantizer,
                    "aux_decoder": model.aux_decoder,
                    "teacher": teacher if model.is_msp else None,
                    "modulator": model.decoder.modulator,
                    "local_model": model.decoder.local,
                }
            for network, module in parts.items():
                if module is None:
                    continue
                params, buffers = _numel(module)
                rows.append(NetworkCount(stage, network, params, buffers))
    return rows


def format_count(n: int) -> str:
    """``123456789 -> '123.5M'``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
