"""An npz / npy array of uint8 images ``(N, H, W, 3)`` as a source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvqeval.inputs.base import (
    NPZ_IMAGE_KEYS,
    NPZ_LABEL_KEYS,
    ImageSource,
    InputError,
    file_stat,
)


class ArraySource(ImageSource):
    """uint8 images from an ``.npy`` (memory-mapped) or ``.npz`` file."""

    kind = "array"

    def __init__(self, spec: str, *, image_size: int | None = None):
        super().__init__(spec, image_size=image_size)
        path = Path(spec)
        self.path = path
        try:
            if path.suffix == ".npy":
                images, labels = np.load(path, mmap_mode="r"), None
            else:
                with np.load(path) as archive:
                    key = next((k for k in NPZ_IMAGE_KEYS if k in archive.files), None)
                    if key is None:
                        raise InputError(
                            f"{path} has arrays {archive.files}; expected uint8 images under one of "
                            f"{', '.join(NPZ_IMAGE_KEYS)}"
                        )
                    images = archive[key]
                    label_key = next((k for k in NPZ_LABEL_KEYS if k in archive.files), None)
                    labels = archive[label_key] if label_key else None
        except InputError:
            raise
        except (OSError, ValueError) as err:
            raise InputError(f"{path} is not a readable numpy file ({err})") from None
        if images.dtype != np.uint8:
            raise InputError(f"{path}: images must be uint8 (0..255), found {images.dtype}")
        if images.ndim == 3:  # (N, H, W) grayscale -> replicated to RGB on access
            self.converted_to_rgb = len(images)
        elif not (images.ndim == 4 and images.shape[-1] == 3):
            raise InputError(
                f"{path}: expected images of shape (N, H, W, 3) or (N, H, W), found {images.shape}"
            )
        if len(images) == 0:
            raise InputError(f"{path} holds no images")
        self.images = images
        self.native_size = int(images.shape[1]) if images.shape[1] == images.shape[2] else None
        if self.native_size is None:
            self.size_problem = f"{path}: non-square {images.shape[2]}x{images.shape[1]} images; pass --image-size N"
        if labels is not None:
            labels = np.asarray(labels).astype(np.int64).reshape(-1)
            if len(labels) != len(images):
                raise InputError(f"{path}: {len(labels)} labels for {len(images)} images")
            self.class_ids = labels

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> torch.Tensor:
        image = np.asarray(self.images[index])
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)

    def fingerprint(self) -> Any:
        return {
            "file": self.path.name,
            "stat": file_stat(self.path),
            "shape": list(self.images.shape),
        }
