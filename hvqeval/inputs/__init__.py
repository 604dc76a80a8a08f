"""SET / REF arguments of the evaluation commands -> streams of uint8 images (paper Section 6).

``open_images(spec)`` accepts

* a **sample set** (a folder with ``manifest.json``, see ``hvqeval.sample_set``),
* a **folder of images** (PNG / JPEG / BMP / WebP), flat or one class sub-folder per class
  (class ids are the sorted sub-folder names' positions),
* an **npz / npy array** of uint8 images ``(N, H, W, 3)`` (keys ``arr_0``, ``images`` or ``x``;
  labels from ``labels`` / ``y`` / ``arr_1`` when present). A Downsampled-ImageNet npz
  (keys ``data`` / ``labels``) goes to ``models.data.open_dataset``,
* a **dataset** understood by ``models.data.open_dataset``: a built-in name (``shapes``,
  ``fashion_mnist``) or an ImageNet-style root, with an optional split after a colon
  (``shapes:val``, ``/data/imagenet:val``).

Every source is a ``torch.utils.data.Dataset`` whose items are ``torch.uint8`` tensors
``(3, H, W)`` -- exactly what torch-fidelity's feature extractors take -- decoded one at a
time, so 50,000+ images stream through a DataLoader without being held in memory.

Image policy (documented in the README): RGB images are used as they are; grayscale
(``L``) and palette (``P``) images are converted to RGB by replicating / looking up the
channel, and the number converted is reported; images with an alpha channel or other modes
(CMYK, 16-bit) are refused. Mixed image sizes are refused unless ``image_size`` is given, in
which case every image is rescaled (shortest side) and centre-cropped with the evaluation
preprocessing of the paper (``models.data.eval_transform``).

Each source has a ``content_key``: a SHA-256 of what determines its pixels (file names,
sizes and mtimes; the manifest hash; a dataset's name, split, length and files), used to key
cached reference statistics.

One module per source kind: ``sample_sets``, ``folders``, ``arrays``, ``datasets``; what they
share is in ``base``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvqeval.inputs.arrays import ArraySource
from hvqeval.inputs.base import ImageSource, InputError, eval_preprocessing
from hvqeval.inputs.datasets import DatasetSource
from hvqeval.inputs.folders import FolderSource
from hvqeval.inputs.sample_sets import SampleSetSource
from hvqeval.sample_set import MANIFEST_NAME


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``name:split`` -> (name, split); a plain path (even with a colon in it) -> (spec, None)."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    head, _, tail = spec.rpartition(":")
    return head, tail


def _parse_dataset_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``shapes:val:2000`` -> ("shapes", "val", 2000): a length limit for built-in datasets."""
    name, split = _split_spec(spec)
    if split is not None and split.isdigit() and ":" in name and not os.path.exists(name):
        head, tail = _split_spec(name)
        return head, tail, int(split)
    return name, split, None


def open_images(
    spec: str,
    *,
    image_size: int | None = None,
    default_split: str = "train",
    seed: int = 0,
    length: int | None = None,
) -> ImageSource:
    """Open a SET / REF argument (see module docstring); errors name the offending file."""
    spec = str(spec)
    name, split, limit = _parse_dataset_spec(spec)
    length = limit if limit is not None else length
    path = Path(name)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            if split:
                raise InputError(f"{spec}: a sample set has no splits; drop ':{split}'")
            return SampleSetSource(name, image_size=image_size)
        if (path / "train").is_dir() or (path / "val").is_dir():
            return DatasetSource(spec, name, split or default_split, image_size=image_size)
        try:
            return FolderSource(name, image_size=image_size)
        except PermissionError as err:
            raise InputError(f"cannot read {path} ({err})") from None
    if path.is_file():
        if path.suffix == ".npz":
            with np.load(path) as archive:
                is_batches = "data" in archive.files
            if is_batches:
                return DatasetSource(spec, name, split or default_split, image_size=image_size)
            return ArraySource(name, image_size=image_size)
        if path.suffix == ".npy":
            return ArraySource(name, image_size=image_size)
        raise InputError(
            f"{path} is a file but not an .npz/.npy array; pass a folder, sample set or array"
        )
    if "/" in name or name.startswith("."):
        raise InputError(
            f"{spec} does not exist (expected a sample set, image folder, array or dataset)"
        )
    return DatasetSource(
        spec, name, split or default_split, image_size=image_size, seed=seed, length=length
    )


@dataclass(frozen=True)
class SourceSummary:
    """What a results row says about a source."""

    id: str
    content_key: str
    n: int
    preprocessing: str


def summarise(source: ImageSource) -> SourceSummary:
    return SourceSummary(source.id, source.content_key, len(source), source.preprocessing)


__all__ = [
    "ArraySource",
    "DatasetSource",
    "FolderSource",
    "ImageSource",
    "InputError",
    "SampleSetSource",
    "SourceSummary",
    "eval_preprocessing",
    "open_images",
    "summarise",
]
