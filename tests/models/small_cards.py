"""Shrunken versions of the shipped cards for CPU tests: same schema and components, tiny widths."""

from __future__ import annotations

from models.config import ModelCard, load_card


def shrink_overrides(card: ModelCard, image_size: int = 16, batch: int = 4) -> list[str]:
    """``--set`` overrides that keep a card's structure but make every network tiny.

    Code resolutions are divided so that each level keeps a downsampling factor of 2 or 4.
    """
    out = [f"model.image_size={image_size}"]
    res = image_size
    for i, level in enumerate(card.level):
        factor = min(card.level_input(i)[2] // level.codes.resolution, 4)
        res //= factor
        out += [
            f"level.{i}.codes.resolution={res}",
            f"level.{i}.codes.bits=4",
            f"level.{i}.local_model.layers=2",
            f"level.{i}.local_model.hidden=6",
            f"level.{i}.local_model.kernel_size=3",
            f"level.{i}.training.batch_size={batch}",
        ]
        for net in ("encoder", "aux_decoder", "modulator"):
            out += [
                f"level.{i}.{net}.hidden=8",
                f"level.{i}.{net}.bottleneck=4",
                f"level.{i}.{net}.layers=1",
            ]
        if level.aux_decoder.kind == "msp":
            out += [
                f"level.{i}.aux_decoder.teacher.hidden=8",
                f"level.{i}.aux_decoder.teacher.bottleneck=4",
                f"level.{i}.aux_decoder.teacher.layers=1",
                f"level.{i}.aux_decoder.masks_per_image=3",
            ]
    out += [
        "prior.layers=2",
        "prior.hidden=8",
        "prior.residual_hidden=8",
        "prior.attention_layers=1",
        "prior.attention_heads=2",
        "prior.kernel_size=3",
        f"prior.training.batch_size={batch}",
        "model.dataset=shapes",
        "model.num_classes=10",
    ]
    return out


def small_card(name: str, image_size: int = 16, batch: int = 4) -> ModelCard:
    return load_card(name, shrink_overrides(load_card(name), image_size, batch))
