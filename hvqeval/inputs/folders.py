"""A folder of image files as a source: flat, or one sub-folder per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hvqeval.inputs.base import (
    IMAGE_EXTENSIONS,
    ImageSource,
    InputError,
    file_stat,
    read_image_file,
)


class FolderSource(ImageSource):
    """A flat folder of images, or a class-folder dataset (one sub-folder per class)."""

    kind = "folder"

    def __init__(self, spec: str, *, image_size: int | None = None):
        super().__init__(spec, image_size=image_size)
        root = Path(spec)
        self.root = root
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        subdirs = [p for p in entries if p.is_dir()]
        files = [p for p in entries if p.is_file()]
        if subdirs and files:
            raise InputError(
                f"{root} mixes image files ({files[0].name}) and sub-folders ({subdirs[0].name}); "
                "use either a flat folder of images or one sub-folder per class"
            )
        if subdirs:
            self.class_names = [d.name for d in subdirs]
            listed = [
                (p, cid)
                for cid, d in enumerate(subdirs)
                for p in sorted(d.iterdir())
                if p.is_file() and not p.name.startswith(".")
            ]
        else:
            listed = [(p, 0) for p in files]
        non_images = [p for p, _ in listed if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if non_images:
            raise InputError(
                f"{non_images[0]} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)}); "
                "remove it or point at a folder that holds only images"
            )
        if not listed:
            raise InputError(
                f"{root} holds no images (expected {', '.join(IMAGE_EXTENSIONS)} files)"
            )
        self.files = [p for p, _ in listed]
        self.class_ids = np.array([c for _, c in listed], dtype=np.int64) if subdirs else None
        if image_size is None:
            self.native_size, self.size_problem = self._common_size()

    def _common_size(self) -> tuple[int | None, str]:
        """Read every header (cheap); corrupt headers fail here. Returns (size or None, why not)."""
        first: tuple[Path, tuple[int, int]] | None = None
        for path in self.files:
            try:
                with Image.open(path) as img:
                    size = img.size
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise InputError(
                    f"{path} is not a readable image ({err}); remove or replace the file"
                ) from None
            if first is None:
                first = (path, size)
            elif size != first[1]:
                return None, (
                    # named from the root: the same file name may be in several class folders
                    f"{self.root} has images of different sizes ({first[0].relative_to(self.root)} "
                    f"is {first[1][0]}x{first[1][1]}, {path.relative_to(self.root)} is "
                    f"{size[0]}x{size[1]}); pass --image-size N to rescale and centre-crop all"
                )
        assert first is not None
        width, height = first[1]
        if width != height:
            return None, (
                f"{self.root} has non-square {width}x{height} images; "
                "pass --image-size N to rescale and centre-crop"
            )
        return width, ""

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        image = read_image_file(self.files[index], self)
        if self.target_size is None and self.native_size is None:
            raise InputError(self.size_problem)
        if self.target_size is None and tuple(image.shape[1:]) != (
            self.native_size,
            self.native_size,
        ):
            raise InputError(
                f"{self.files[index]} changed size while reading; rerun on a stable folder"
            )
        return image

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def fingerprint(self) -> Any:
        return {"files": [[str(p.relative_to(self.root)), *file_stat(p)] for p in self.files]}
