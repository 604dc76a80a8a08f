"""Datasets and preprocessing of the paper (Section 7), behind one function: ``open_dataset``.

Every dataset is map-style and streaming (images are decoded one at a time in
``__getitem__``); items are ``(image, class_id)`` with ``image`` a ``torch.uint8`` tensor
(3, H, W). Datasets expose ``.class_names``, ``.num_classes``, ``.image_size`` (``None`` when
sizes are mixed), ``.format``, ``.split`` and ``len()``. They work with a plain
``torch.utils.data.DataLoader`` (batches of uint8 images (B, 3, H, W) and int64 labels (B,))
and with ``DistributedSampler``.

Formats (``path_or_name``):
  ``"shapes"``            built-in procedural class-conditional set (``models.datasets.shapes``)

Preprocessing: ``train_transform(size)`` (rescale shortest side, random square crop, random
flip, brightness / saturation / contrast jitter) and ``eval_transform(size)`` (rescale
shortest side, centre crop), both PIL image or uint8 tensor -> uint8 tensor (3, size, size).
"""

from __future__ import annotations

from models.datasets.base import ImageDataset, Transform, to_uint8_chw
from models.datasets.shapes import ShapesDataset
from models.datasets.transforms import EvalTransform, TrainTransform, eval_transform, train_transform
from models.errors import DataError

__all__ = [
    "DataError", "EvalTransform", "ImageDataset", "ShapesDataset", "TrainTransform",
    "eval_transform", "open_dataset", "to_uint8_chw", "train_transform",
]

BUILTIN_NAMES = ("shapes",)


def open_dataset(path_or_name: str, split: str = "train", *, image_size: int | None = None,
                 transform: Transform | None = None, seed: int = 0,
                 length: int | None = None) -> ImageDataset:
    """Open a dataset by built-in name or path; see the module docstring for the formats.

    ``image_size``: for ``shapes`` the size images are rendered at (default 32).
    ``transform``: applied to every decoded image (e.g. ``train_transform(64)``); the
    dataset's ``image_size`` is then the transform's size.
    ``seed`` / ``length``: for ``shapes``, the seed of the split's stream and the number of
    items (default 50,000 train / 10,000 val / 10,000 test).
    """
    name = str(path_or_name)
    if name == "shapes":
        if seed < 0:
            raise DataError(f"shapes seed must be >= 0, got {seed}")
        return ShapesDataset(split, image_size=image_size or 32, length=length, seed=seed,
                             transform=transform)
    raise DataError(f"{name!r} is not a dataset: expected one of {', '.join(BUILTIN_NAMES)}")
