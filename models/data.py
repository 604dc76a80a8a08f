"""Datasets and preprocessing of the paper (Section 7), behind one function: ``open_dataset``.

Every dataset is map-style and streaming (images are decoded one at a time in
``__getitem__``); items are ``(image, class_id)`` with ``image`` a ``torch.uint8`` tensor
(3, H, W). Datasets expose ``.class_names``, ``.num_classes``, ``.image_size`` (``None`` when
sizes are mixed), ``.format``, ``.split`` and ``len()``. They work with a plain
``torch.utils.data.DataLoader`` (batches of uint8 images (B, 3, H, W) and int64 labels (B,)),
with ``DistributedSampler``, and with ``data_loader`` below, which picks one when
``torch.distributed`` is initialised.

Formats (``path_or_name``):
  ``"shapes"``              built-in procedural class-conditional set (``models.datasets.shapes``)
  ``"fashion_mnist"``       Debian's IDX files, or ``root=`` another folder (``models.datasets.idx``)
  ``x.npz`` / npz folder    Downsampled ImageNet batches (``models.datasets.npz``)
  IDX folder                ``*-idx3-ubyte.gz`` files (Fashion-MNIST / MNIST layout)
  image folder              ImageNet ``<root>/<split>/<wnid>/*.JPEG``, other class folders, or a
                            plain folder of PNG/JPEG (``models.datasets.folders``)

Preprocessing: ``train_transform(size)`` (rescale shortest side, random square crop, random
flip, brightness / saturation / contrast jitter) and ``eval_transform(size)`` (rescale
shortest side, centre crop), both PIL image or uint8 tensor -> uint8 tensor (3, size, size).

Labels: ``imagenet_class_name(649) -> "megalith"``, ``imagenet_wnid(649) -> "n03743016"``,
``class_label("megalith", 649) -> "megalith (649)"``.
"""

from __future__ import annotations

from pathlib import Path

from models.datasets.base import ImageDataset, Transform, to_uint8_chw
from models.datasets.folders import ImageFolder
from models.datasets.idx import DEFAULT_ROOT as FASHION_MNIST_ROOT
from models.datasets.idx import FASHION_CLASSES, IdxDataset, is_idx_folder
from models.datasets.imagenet_classes import (
    class_label,
    imagenet_class_id,
    imagenet_class_name,
    imagenet_class_names,
    imagenet_wnid,
)
from models.datasets.npz import NpzBatches
from models.datasets.shapes import CLASS_NAMES, ShapesDataset
from models.datasets.transforms import (
    EvalTransform,
    TrainTransform,
    eval_transform,
    train_transform,
)
from models.errors import DataError

__all__ = [
    "DataError",
    "EvalTransform",
    "builtin_class_names",
    "FASHION_MNIST_ROOT",
    "IdxDataset",
    "ImageDataset",
    "ImageFolder",
    "NpzBatches",
    "ShapesDataset",
    "TrainTransform",
    "class_label",
    "data_loader",
    "eval_transform",
    "imagenet_class_id",
    "imagenet_class_name",
    "imagenet_class_names",
    "imagenet_wnid",
    "open_dataset",
    "to_uint8_chw",
    "train_transform",
]

BUILTIN_NAMES = ("shapes", "fashion_mnist")


def builtin_class_names(name: str) -> list[str] | None:
    """Class names of a built-in dataset (``shapes``, ``fashion_mnist``); ``None`` for others."""
    table = {"shapes": CLASS_NAMES, "fashion_mnist": FASHION_CLASSES}.get(name)
    return None if table is None else list(table)


def open_dataset(
    path_or_name: str | Path,
    split: str = "train",
    *,
    image_size: int | None = None,
    transform: Transform | None = None,
    seed: int = 0,
    length: int | None = None,
    root: str | Path | None = None,
    pad_to: int | None = None,
    class_map: str | Path | None = None,
    label_base: int = 1,
) -> ImageDataset:
    """Open a dataset by built-in name or path; see the module docstring for the formats.

    ``image_size``: for ``shapes`` the size images are rendered at (default 32); for other
    formats, images whose size differs are passed through ``eval_transform(image_size)``.
    ``transform``: applied to every decoded image instead (e.g. ``train_transform(64)``); the
    dataset's ``image_size`` is then the transform's size.
    ``seed`` / ``length``: ``shapes`` only: the seed of the split's stream and the number of
    items (default 50,000 train / 10,000 val / 10,000 test).
    ``root`` / ``pad_to``: ``fashion_mnist`` only: the folder of IDX files and the padded
    size (32 centres the 28x28 images on a black 32x32 canvas).
    ``class_map`` / ``label_base``: npz only: the devkit's ``map_clsloc.txt`` to convert
    published labels to the 1000-class index, and the first label value (published: 1).
    """
    name = str(path_or_name)
    if name == "shapes":
        if seed < 0:
            raise DataError(f"shapes seed must be >= 0, got {seed}")
        return ShapesDataset(
            split, image_size=image_size or 32, length=length, seed=seed, transform=transform
        )
    if name in ("fashion_mnist", "fashion-mnist"):
        dataset = IdxDataset(
            root or FASHION_MNIST_ROOT,
            split,
            class_names=FASHION_CLASSES,
            pad_to=pad_to,
            transform=transform,
        )
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise DataError(
                f"{name}: no such file or folder, and not a built-in dataset "
                f"({', '.join(BUILTIN_NAMES)})"
            )
        if path.is_file():
            if path.suffix.lower() != ".npz":
                raise DataError(
                    f"{path}: not a dataset file; expected a Downsampled ImageNet .npz batch "
                    "or a folder (image folders, npz batches, IDX files)"
                )
            dataset = NpzBatches(
                path, split, transform=transform, class_map=class_map, label_base=label_base
            )
        elif any(path.glob("*.npz")):
            dataset = NpzBatches(
                path, split, transform=transform, class_map=class_map, label_base=label_base
            )
        elif is_idx_folder(path):
            dataset = IdxDataset(path, split, pad_to=pad_to, transform=transform)
        else:
            dataset = ImageFolder(path, split, transform=transform)
    if transform is None and image_size is not None and image_size != dataset.native_size:
        dataset.transform = eval_transform(image_size)
    return dataset


def data_loader(
    dataset: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
    distributed: bool | None = None,
):
    """A DataLoader of ``(uint8 (B, 3, H, W), int64 (B,))`` batches.

    With ``torch.distributed`` initialised (or ``distributed=True``) each process gets its
    own shard through ``DistributedSampler``; call ``loader.sampler.set_epoch(epoch)`` to
    reshuffle per epoch. Shuffling is seeded, so runs are reproducible.
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    sampler = (
        DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        if distributed
        else None
    )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
