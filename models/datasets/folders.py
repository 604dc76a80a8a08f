"""Image folders: ImageNet's class-folder layout, generic class folders, plain folders.

ImageNet (ILSVRC-2012) standard layout, one folder per WordNet id::

    <root>/train/n01440764/n01440764_10026.JPEG
    <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG

Synset folders map to the 1000-class index (``models.datasets.imagenet_classes``), so a
subset of the classes keeps the right ids (``n03743016`` is always 649, ``megalith``).
Other class folders (``<root>/<split>/<class>/*.png`` or ``<root>/<class>/*.png``) number
their classes in sorted folder-name order. A folder of images with no sub-folders is one
class named after the folder (e.g. real images shown in a study).

Only the file list is built up front; each image is decoded when it is accessed. Images
keep their own sizes unless a transform (``eval_transform(size)``) is given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from models.datasets.base import ImageDataset, Transform
from models.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
SPLIT_NAMES = ("train", "val", "test")
WNID_PATTERN = re.compile(r"n\d{8}")


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_file() and is_image_file(e.name))


def list_subfolders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))


def resolve_split_folder(root: Path, split: str) -> tuple[Path, str | None]:
    """``<root>/<split>`` if it exists; ``root`` itself if it has no split folders at all."""
    if (root / split).is_dir():
        return root / split, split
    present = [s for s in SPLIT_NAMES if (root / s).is_dir()]
    if present:
        raise DataError(
            f"{root}: missing split folder '{split}/' (found {', '.join(p + '/' for p in present)}); "
            f"choose split '{present[0]}' or add {root / split}",
            argument="split",
        )
    return root, None


def decode_image(path: Path) -> Image.Image:
    """Open and fully decode one image as RGB; DataError naming the file if it is unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err.__class__.__name__}: {err})") from None


class ImageFolder(ImageDataset):
    """Any of the three folder layouts, detected from what is on disk."""

    def __init__(
        self, root: str | Path, split: str = "train", *, transform: Transform | None = None
    ) -> None:
        from models.datasets.imagenet_classes import (
            imagenet_class_id,
            imagenet_class_names,
            is_imagenet_wnid,
        )

        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        folder, used_split = resolve_split_folder(root, split)
        subfolders = list_subfolders(folder)
        loose = list_images(folder)
        self.files: list[Path] = []
        self.class_ids: list[int] = []
        if subfolders:
            if loose:
                raise DataError(
                    f"{folder}: holds both loose images (e.g. {loose[0].name}) and class folders "
                    f"(e.g. {subfolders[0].name}/); move the images into a class folder"
                )
            wnid_like = [f for f in subfolders if WNID_PATTERN.fullmatch(f.name)]
            if wnid_like:
                strangers = [f for f in subfolders if not is_imagenet_wnid(f.name)]
                if strangers:
                    raise DataError(
                        f"{strangers[0]}: folder name is not one of the 1000 ImageNet WordNet ids, "
                        f"but its siblings (e.g. {wnid_like[0].name}) are; remove or rename it"
                    )
                self.format = "imagenet-folders"
                class_names = imagenet_class_names()
                ids = [imagenet_class_id(f.name) for f in subfolders]
            else:
                self.format = "class-folders"
                class_names = [f.name for f in subfolders]
                ids = list(range(len(subfolders)))
            for sub, class_id in zip(subfolders, ids):
                images = list_images(sub)
                if not images:
                    raise DataError(f"{sub}: empty class folder (no PNG/JPEG images)")
                self.files += images
                self.class_ids += [class_id] * len(images)
        else:
            if not loose:
                raise DataError(f"{folder}: empty folder (no PNG/JPEG images and no class folders)")
            self.format = "image-folder"
            class_names = [folder.name]
            self.files, self.class_ids = loose, [0] * len(loose)
        self.folder = folder
        super().__init__(
            source=str(root),
            split=used_split,
            class_names=class_names,
            native_size=None,
            transform=transform,
        )

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[Image.Image, int]:
        return decode_image(self.files[index]), self.class_ids[index]
