"""What every image source shares: ``ImageSource``, strict decoding, ``InputError``, keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hvqeval.errors import HvqevalError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CONVERTIBLE_MODES = ("RGB", "L", "P")
NPZ_IMAGE_KEYS = ("arr_0", "images", "x")
NPZ_LABEL_KEYS = ("labels", "y", "arr_1")


class InputError(HvqevalError):
    """A SET / REF argument cannot be read as images (named file and what to do)."""


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def file_stat(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def eval_preprocessing(image_size: int | None) -> str:
    """The name recorded in results for the preprocessing applied before feature extraction."""
    return "none" if image_size is None else f"eval_transform({image_size})"


class ImageSource(Dataset):
    """Base class: ``len``, ``__getitem__ -> uint8 (3, H, W)``, labels and a content key."""

    kind = "images"

    def __init__(self, spec: str, *, image_size: int | None):
        self.spec = spec
        self.target_size = image_size
        self._transform = None
        if image_size is not None:
            from models import eval_transform

            self._transform = eval_transform(int(image_size))
        self.converted_to_rgb = 0

    # -- to implement ------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        """Decode image ``index`` as uint8 (3, H, W) before the evaluation preprocessing."""
        raise NotImplementedError

    def fingerprint(self) -> Any:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    class_ids: np.ndarray | None = None  # (N,) int64 or None when unlabelled
    class_names: list[str] | None = None
    native_size: int | None = None

    size_problem: str = ""

    def require_uniform(self) -> int:
        """The common square image size; raises (saying what to do) when there is none."""
        if self.image_size is None:
            raise InputError(
                self.size_problem
                or f"{self.spec} has images of different sizes; pass --image-size N"
            )
        return self.image_size

    @property
    def id(self) -> str:
        return self.spec

    @property
    def image_size(self) -> int | None:
        return self.target_size if self.target_size is not None else self.native_size

    @property
    def preprocessing(self) -> str:
        return eval_preprocessing(self.target_size)

    @property
    def content_key(self) -> str:
        return sha256_json({"kind": self.kind, "content": self.fingerprint()})

    def describe(self, index: int) -> str:
        """What to print for item ``index`` (a path or ``name[index]``) in CSVs and errors."""
        return f"{self.spec}[{index}]"

    def class_name(self, class_id: int) -> str:
        if self.class_names and 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return str(class_id)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.load(index)  # (3, H, W) uint8
        if self._transform is not None:
            image = self._transform(image)
        return image


def read_image_file(path: Path, source: ImageSource) -> torch.Tensor:
    """Decode one file strictly: corrupt or unsupported images raise an error naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in CONVERTIBLE_MODES:
                raise InputError(
                    f"{path} has image mode {mode} (alpha channel, CMYK or 16-bit); "
                    "only RGB, grayscale and palette images are accepted: convert it to RGB first"
                )
            if mode != "RGB":
                source.converted_to_rgb += 1
                img = img.convert("RGB")
            array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(
            f"{path} is not a readable image ({err}); remove or replace the file"
        ) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
