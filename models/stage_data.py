"""What each stage trains on (Algorithm 1): images for level 1, the codes of the level below after.

Level 1 reads ``models.data`` datasets at the card's image size with Section 7's training or
evaluation transform; a dataset of fixed size that differs from the card is an error, not a
silent rescale. Every later stage reads ``models.codes`` folders, which ``ensure_codes``
(re)extracts with the level's Polyak-averaged encoder whenever its checkpoint has changed or
they hold fewer items than the stage reads (``--limit``); under ``torchrun`` every process
encodes its share of each split.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from models.checkpoint import checkpoint_path, load_checkpoint
from models.codes import (
    META_FILE,
    CodesDataset,
    codes_dir,
    create_split,
    fill_split,
    finish_split,
    read_meta,
    stale_reason,
    write_meta,
)
from models.config import ModelCard, TrainingConfig
from models.errors import DataError, MissingStageError
from models.launch import Launch, autocast_for
from models.stage import Stage
from models.train_options import TrainOptions

BUILTIN_DATASETS = ("shapes", "fashion_mnist")


def stage_training(card: ModelCard, stage: str) -> TrainingConfig:
    stage = Stage(stage)
    return card.prior.training if stage.is_prior else card.level[stage.index].training


def stage_input_level(card: ModelCard, stage: str) -> int:
    """0-based index of the level whose input this stage models (prior: len(levels))."""
    stage = Stage(stage)
    return len(card.level) if stage.is_prior else stage.index


def default_data(card: ModelCard, data: str | None) -> str:
    if data:
        return data
    if card.model.dataset in BUILTIN_DATASETS:
        return card.model.dataset
    raise DataError(
        f"card '{card.name}' trains on '{card.model.dataset}' images: name where they are "
        "(an ImageNet class-folder root, an npz file, or an image folder)",
        argument="data",
    )


def open_images(card: ModelCard, data: str, split: str, train: bool) -> Dataset:
    """Level-1 images of ``data`` at the card's size, with Section 7's train or eval transform."""
    from models.data import eval_transform, open_dataset, train_transform

    size = card.model.image_size
    dataset = open_dataset(data, split, **({"image_size": size} if data == "shapes" else {}))
    if dataset.image_size is not None and dataset.image_size != size:
        raise DataError(
            f"{data} has {dataset.image_size}x{dataset.image_size} images but card '{card.name}' expects "
            f"{size}x{size}; use data of that size or a card for it (e.g. model.image_size = "
            f"{dataset.image_size} with matching code resolutions)",
            argument="data",
        )
    dataset.transform = train_transform(size) if train else eval_transform(size)
    return dataset


class FirstItems(Dataset):
    """The first ``count`` items of a dataset, keeping its ``class_names``."""

    def __init__(self, dataset: Dataset, count: int):
        self.dataset, self.count = dataset, min(count, len(dataset))
        self.class_names = list(dataset.class_names)
        self.image_size = getattr(dataset, "image_size", None)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.dataset[index]


def open_level_input(
    card: ModelCard,
    index: int,
    run_dir: Path,
    data: str | None,
    split: str,
    train: bool,
    limit: int | None = None,
) -> Dataset:
    """The input of level ``index`` (0-based; ``len(levels)`` = the prior's input)."""
    if index == 0:
        dataset = open_images(card, default_data(card, data), split, train)
    else:
        dataset = CodesDataset(codes_dir(run_dir, index), split)
    return dataset if limit is None else FirstItems(dataset, limit)


def random_crops(
    x: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """An independent random ``size`` x ``size`` crop of every item: (B, C, H, W) -> (B, C, s, s)."""
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    tops = torch.randint(0, h - size + 1, (x.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (x.shape[0],), generator=generator).tolist()
    return torch.stack(
        [x[i, :, t : t + size, l : l + size] for i, (t, l) in enumerate(zip(tops, lefts))]
    )


# --------------------------------------------------------------------------------------
# Codes of the level below (Algorithm 1: x_{l+1} := E_l(x_l))


def ensure_codes(
    card: ModelCard,
    run_dir: Path,
    level_number: int,
    data: str | None,
    launch: Launch,
    options: TrainOptions,
) -> Path:
    """Extract level ``level_number``'s codes unless they exist for its current checkpoint.

    Codes are also re-extracted when they hold fewer items than the stage reads: extracted
    with ``--limit N`` while this stage runs without one or with a larger one.
    """
    for below in range(1, level_number + 1):  # report the lowest missing level
        if not checkpoint_path(run_dir, Stage.of_level(below)).is_file():
            raise MissingStageError(
                f"{run_dir} has no trained level {below} (level{below}.pt missing); train that stage first",
                run_dir=str(run_dir),
                card_name=card.name,
                stage=Stage.of_level(below),
            )
    if level_number > 1:  # this level's input must be current too
        ensure_codes(card, run_dir, level_number - 1, data, launch, options)
    stage = Stage.of_level(level_number)
    path = checkpoint_path(run_dir, stage)
    directory = codes_dir(run_dir, level_number)
    ckpt = load_checkpoint(path, card, stage)
    reason = stale_reason(read_meta(directory), source_step=ckpt["step"], limit=options.limit)
    if reason is not None:
        if options.progress and launch.is_main:
            print(
                f"{directory}: extracting level {level_number} codes ({reason})",
                file=sys.stderr,
                flush=True,
            )
        extract_level_codes(card, run_dir, level_number, ckpt, data, launch, options)
    return directory


def extract_level_codes(
    card: ModelCard,
    run_dir: Path,
    level_number: int,
    ckpt: dict[str, Any],
    data: str | None,
    launch: Launch,
    options: TrainOptions,
) -> None:
    """Encode the train and val splits with level ``level_number``'s Polyak weights (all processes)."""
    from models.autoencoder import LevelModel

    index = level_number - 1
    model = LevelModel(card, index)
    model.load_state_dict(ckpt["ema_state_dict"], strict=True)  # Polyak weights (Appendix A)
    model.to(launch.device).eval()
    codes = card.level[index].codes
    directory = codes_dir(run_dir, level_number)

    def encode(x: torch.Tensor) -> torch.Tensor:
        with autocast_for(launch.device, options.precision):
            return model.encode(x)

    if launch.is_main:  # the folder is an unfinished extraction until the new meta.json is written
        (directory / META_FILE).unlink(missing_ok=True)
    splits: dict[str, int] = {}
    class_names: list[str] = []
    for split in ("train", "val"):
        try:
            dataset = open_level_input(
                card, index, run_dir, data, split, train=False, limit=options.limit
            )
        except DataError:
            if split == "train":
                raise
            continue  # no validation split in this data: held-out numbers will need one
        class_names = class_names or list(dataset.class_names)
        if launch.is_main:
            create_split(
                directory,
                split,
                len(dataset),
                (codes.channels, codes.resolution, codes.resolution),
                codes.bits,
            )
        launch.barrier()
        fill_split(
            encode,
            dataset,
            directory,
            split,
            launch.device,
            launch.rank,
            launch.world_size,
            batch_size=options.eval_batch_size,
            num_workers=options.num_workers,
            progress=options.progress and launch.is_main,
        )
        launch.barrier()
        if launch.is_main:
            finish_split(directory, split)
        splits[split] = len(dataset)
    if launch.is_main:
        write_meta(
            directory,
            source_stage=Stage.of_level(level_number),
            source_step=ckpt["step"],
            limit=options.limit,
            bits=codes.bits,
            splits=splits,
            class_names=class_names,
        )
    launch.barrier()
