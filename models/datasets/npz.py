"""Downsampled ImageNet (32x32, 64x64) in its published npz batch format.

Layout (Chrabaszcz et al. 2017, the labelled version of the van den Oord et al. images that
the paper uses for its 64x64 experiments, Section 7)::

    Imagenet64_train_npz/train_data_batch_1.npz ... train_data_batch_10.npz
    Imagenet64_val_npz/val_data.npz

Each file holds ``data``: uint8 (N, 3*S*S), one image per row in CHW order (all red values,
then green, then blue, each row-major), and ``labels``: N integers **1-based** as published
(1..1000). Items use 0-based class ids: ``class_id = label - 1``.

The published label numbers follow the ILSVRC devkit's ``map_clsloc.txt`` order, not the
sorted-WordNet-id order of the usual 1000-class index. Pass that file as ``class_map`` to
convert ids to the 1000-class index (and get names like ``megalith``); without it, ids stay
in the published numbering and classes are named ``label 1`` ... ``label 1000``.

Streaming: labels are read up front (small); pixel rows are read on access. Members stored
uncompressed (``np.savez``) are memory-mapped in place; compressed members
(``np.savez_compressed``) are inflated one file at a time, when first touched.
"""

from __future__ import annotations

import re
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.datasets.base import ImageDataset, Transform
from models.errors import DataError

NUM_IMAGENET_CLASSES = 1000


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def npz_files_for_split(path: Path, split: str) -> list[Path]:
    """The npz batch files of ``split`` in ``path`` (a file, or a folder of batches)."""
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.npz"), key=_natural_key)
    if not files:
        raise DataError(f"{path}: no .npz files in this folder")
    prefixed = [f for f in files if f.name.startswith(f"{split}_")]
    if prefixed:
        return prefixed
    known = sorted(
        {f.name.split("_", 1)[0] for f in files if "_" in f.name} & {"train", "val", "test"}
    )
    if known:
        raise DataError(
            f"{path}: no npz batches for split {split!r} (found {', '.join(known)}); "
            f"choose split '{known[0]}' or point at the folder that holds the {split} batches",
            argument="split",
        )
    return files


def _member_name(archive: zipfile.ZipFile, key: str, path: Path) -> str:
    names = {n.removesuffix(".npy"): n for n in archive.namelist()}
    if key not in names:
        raise DataError(
            f"{path}: npz file has no {key!r} array (found {', '.join(sorted(names)) or 'nothing'}); "
            "Downsampled ImageNet batches hold 'data' and 'labels'"
        )
    return names[key]


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the .npy stream ``f``, leaving it at the first value."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _read_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    with archive.open(member) as f:
        shape, fortran, dtype = _npy_header(f)
    return shape, dtype, fortran


def _memmap_member(path: Path, archive: zipfile.ZipFile, member: str) -> np.ndarray | None:
    """Memory-map an uncompressed npz member in place; None if it is compressed."""
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        raw.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran, dtype = _npy_header(raw)
        offset = raw.tell()
    if fortran or dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _open_data(path: str | Path) -> np.ndarray:
    """The ``data`` array of one batch file: memory-mapped, or inflated (cached per process,
    keyed by modification time and size so a replaced file is read again)."""
    stat = Path(path).stat()
    return _open_data_cached(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _open_data_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    p = Path(path)
    with zipfile.ZipFile(p) as archive:
        member = _member_name(archive, "data", p)
        mapped = _memmap_member(p, archive, member)
        if mapped is not None:
            return mapped
        with archive.open(member) as f:
            return np.lib.format.read_array(f)


def read_class_map(path: str | Path) -> np.ndarray:
    """``map_clsloc.txt`` (lines ``n02119789 1 kit_fox``) -> array: published label - 1 -> class index."""
    from models.datasets.imagenet_classes import imagenet_class_id

    path = Path(path)
    try:
        lines = path.read_text().split("\n")
    except OSError as err:
        raise DataError(f"{path}: cannot read the class map ({err.strerror})") from None
    table = np.full(NUM_IMAGENET_CLASSES, -1, dtype=np.int64)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if (
            len(parts) < 2
            or not parts[1].isdigit()
            or not 1 <= int(parts[1]) <= NUM_IMAGENET_CLASSES
        ):
            raise DataError(
                f"{path}:{number}: expected 'WNID LABEL NAME' with LABEL in 1..1000, got {line.strip()!r}"
            )
        table[int(parts[1]) - 1] = imagenet_class_id(parts[0])
    missing = np.flatnonzero(table < 0)
    if missing.size:
        raise DataError(
            f"{path}: class map lacks labels {', '.join(str(m + 1) for m in missing[:5])}"
            f"{' ...' if missing.size > 5 else ''}; it must list all 1000"
        )
    return table


class NpzBatches(ImageDataset):
    """One or more npz batch files concatenated in natural file order."""

    format = "downsampled-imagenet-npz"

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        class_map: str | Path | None = None,
        label_base: int = 1,
    ) -> None:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        self.files = npz_files_for_split(path, split)
        labels, sizes = [], set()
        for f in self.files:
            try:
                with zipfile.ZipFile(f) as archive:
                    shape, dtype, _ = _read_header(archive, _member_name(archive, "data", f))
                    with archive.open(_member_name(archive, "labels", f)) as lf:
                        file_labels = np.asarray(np.lib.format.read_array(lf)).reshape(-1)
            except (zipfile.BadZipFile, ValueError, OSError) as err:
                raise DataError(f"{f}: not a readable npz file ({err})") from None
            if len(shape) != 2 or dtype != np.uint8:
                raise DataError(f"{f}: 'data' must be uint8 rows (N, 3*S*S), found {dtype} {shape}")
            side = int(round((shape[1] / 3) ** 0.5))
            if 3 * side * side != shape[1]:
                raise DataError(f"{f}: rows of {shape[1]} values are not square RGB images (3*S*S)")
            if shape[0] != file_labels.shape[0]:
                raise DataError(f"{f}: {shape[0]} images but {file_labels.shape[0]} labels")
            labels.append(file_labels.astype(np.int64) - label_base)
            sizes.add(side)
        if len(sizes) > 1:
            raise DataError(f"{path}: batches of different image sizes {sorted(sizes)}")
        ids = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= NUM_IMAGENET_CLASSES):
            bad = int(np.flatnonzero((ids < 0) | (ids >= NUM_IMAGENET_CLASSES))[0])
            where = self._locate(bad, labels)
            raise DataError(
                f"{where}: label {ids[bad] + label_base} out of range "
                f"{label_base}..{NUM_IMAGENET_CLASSES - 1 + label_base} "
                f"(published labels are 1-based; use label_base=0 for 0-based files)"
            )
        if class_map is not None:
            from models.datasets.imagenet_classes import imagenet_class_names

            ids = read_class_map(class_map)[ids]
            names = imagenet_class_names()
        else:
            names = [f"label {i + label_base}" for i in range(NUM_IMAGENET_CLASSES)]
        self.class_ids = ids
        self.offsets = np.cumsum([0] + [len(x) for x in labels])
        super().__init__(
            source=str(path),
            split=split if path.is_dir() else None,
            class_names=names,
            native_size=sizes.pop() if sizes else None,
            transform=transform,
        )

    def _locate(self, index: int, labels: list[np.ndarray]) -> str:
        start = 0
        for f, file_labels in zip(self.files, labels):
            if index < start + len(file_labels):
                return f"{f} row {index - start}"
            start += len(file_labels)
        return str(self.files[-1])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        file_index = int(np.searchsorted(self.offsets, index, side="right") - 1)
        row = _open_data(str(self.files[file_index]))[index - self.offsets[file_index]]
        s = self.native_size
        image = torch.from_numpy(np.array(row, dtype=np.uint8).reshape(3, s, s))  # CHW rows
        return image, int(self.class_ids[index])
