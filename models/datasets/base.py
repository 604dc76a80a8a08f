"""The common shape of every dataset: map-style, streaming, items ``(uint8 (3, H, W), class_id)``.

Every reader lists its items up front (file names, array offsets, seeds) and decodes one
image per ``__getitem__``, so a DataLoader with workers and a ``DistributedSampler`` work
unchanged and nothing is decoded all at once. An optional transform (see
``models.datasets.transforms``) runs on each decoded image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

# A transform takes a PIL image or a uint8 tensor (3, H, W) and returns a uint8 tensor (3, S, S).
Transform = Callable[[Any], torch.Tensor]


def to_uint8_chw(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Any RGB-able image -> contiguous ``torch.uint8`` tensor (3, H, W).

    PIL images of every mode are converted to RGB first (grey, palette, RGBA drop to RGB);
    numpy arrays must be uint8 (H, W, 3), (H, W) or (3, H, W).
    """
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))  # (H, W, 3)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
        if image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] != 3:
            image = image.permute(2, 0, 1)
    if image.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:  # (H, W) grey -> replicate to 3 channels
        image = image.unsqueeze(0).expand(3, -1, -1)
    if image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    return image.contiguous()


class ImageDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index) -> (image, class_id)``.

    Attributes every dataset has:
      ``format``       short name of the on-disk format (``"shapes"``, ``"imagenet-folders"``, ...)
      ``split``        the split that was opened (``"train"``, ``"val"``, ``"test"``, or ``None``)
      ``class_names``  list of human-readable class names, index = class id
      ``image_size``   side of the (square) images returned, or ``None`` if they are mixed
      ``source``       path or name it was opened from
    """

    format: str = "images"

    def __init__(
        self,
        *,
        source: str,
        split: str | None,
        class_names: list[str],
        native_size: int | None,
        transform: Transform | None = None,
    ) -> None:
        self.source = source
        self.split = split
        self.class_names = list(class_names)
        self.native_size = native_size
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int | None:
        size = getattr(self.transform, "size", None)
        return size if self.transform is not None else self.native_size

    def load(self, index: int) -> tuple[Image.Image | torch.Tensor, int]:
        """Decode item ``index``: a PIL image or uint8 tensor (3, H, W), and its class id."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        image, class_id = self.load(index % len(self))
        if self.transform is not None:
            return self.transform(image), class_id
        return to_uint8_chw(image), class_id

    def __repr__(self) -> str:
        size = "mixed" if self.image_size is None else f"{self.image_size}x{self.image_size}"
        return (
            f"{type(self).__name__}({self.source!r}, split={self.split!r}, {len(self)} images, "
            f"{self.num_classes} classes, {size})"
        )
