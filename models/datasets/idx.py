"""Fashion-MNIST (and MNIST-layout) IDX files, the real offline dataset for CPU experiments.

Debian's ``dataset-fashion-mnist`` package installs the four published files::

    /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz   60,000 x 28 x 28 uint8
    /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz   60,000 labels 0..9
    /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz    10,000 (split "test")
    /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

IDX: big-endian magic ``0x0000 TT NN`` (TT = 0x08 for uint8, NN = number of dimensions), then
NN big-endian uint32 sizes, then the values. Grey images are replicated to RGB (3, 28, 28);
``pad_to=32`` centres them on a black 32x32 canvas (2 pixels each side).

Streaming: headers are read up front. Uncompressed files are memory-mapped; a gzip stream
cannot be read at random, so the image array (47 MB for train) is inflated once per
process, on first access.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.datasets.base import ImageDataset, Transform
from models.errors import DataError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
UINT8_TYPE = 0x08


def idx_path(root: Path, split: str, kind: str) -> Path:
    """The images/labels file of ``split`` in ``root``, gzipped or not."""
    if split not in SPLIT_PREFIX:
        raise DataError(f"{root}: IDX datasets have splits train and test; got split {split!r}")
    stem = f"{SPLIT_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{root}: missing {stem}.gz (the {split} {kind} of an IDX dataset); "
        "on Debian: apt-get install dataset-fashion-mnist"
    )


def is_idx_folder(root: Path) -> bool:
    return root.is_dir() and any(root.glob("*-idx[13]-ubyte*"))


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx_header(path: Path) -> tuple[tuple[int, ...], int]:
    """Shape of the array in an IDX file and the byte offset of its first value."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            if head[2] != UINT8_TYPE:
                raise DataError(
                    f"{path}: IDX value type 0x{head[2]:02x}; only unsigned bytes (0x08) are images/labels"
                )
            dims = head[3]
            raw = f.read(4 * dims)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: unreadable IDX file ({err})") from None
    if len(raw) < 4 * dims:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(dims))
    return shape, 4 + 4 * dims


def read_idx(path: str | Path) -> np.ndarray:
    """The whole array of an IDX file: memory-mapped if uncompressed, else inflated once.

    Cached per process and keyed by the file's modification time and size, so a file that
    is replaced is read again.
    """
    p = Path(path)
    stat = p.stat()
    return _read_idx(str(p), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read_idx(path: str, mtime_ns: int, size: int) -> np.ndarray:
    p = Path(path)
    shape, offset = read_idx_header(p)
    count = int(np.prod(shape))
    if p.suffix != ".gz":
        if p.stat().st_size < offset + count:
            raise DataError(f"{p}: truncated: header says {shape} but the file is shorter")
        return np.memmap(p, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    try:
        with gzip.open(p, "rb") as f:
            f.read(offset)
            data = f.read(count)
    except (OSError, EOFError) as err:
        raise DataError(f"{p}: corrupt gzip stream ({err})") from None
    if len(data) < count:
        raise DataError(f"{p}: truncated: header says {shape} but only {len(data)} values follow")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


class IdxDataset(ImageDataset):
    """Grey IDX images (N, H, W) + labels (N,), returned as RGB uint8 (3, H, W)."""

    format = "idx"

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        split: str = "train",
        *,
        class_names: list[str] | None = None,
        pad_to: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"{root}: no such folder (IDX datasets are folders of *-idx*-ubyte.gz files; "
                "on Debian: apt-get install dataset-fashion-mnist)"
            )
        self.images_path = idx_path(root, split, "images")
        self.labels_path = idx_path(root, split, "labels")
        shape, _ = read_idx_header(self.images_path)
        label_shape, _ = read_idx_header(self.labels_path)
        if len(shape) != 3:
            raise DataError(f"{self.images_path}: expected images (N, H, W), found shape {shape}")
        if label_shape != shape[:1]:
            raise DataError(
                f"{self.labels_path}: {label_shape[0] if label_shape else 0} labels for {shape[0]} images"
            )
        if shape[1] != shape[2]:
            raise DataError(
                f"{self.images_path}: images are {shape[1]}x{shape[2]}, expected square"
            )
        if pad_to is not None and (pad_to < shape[1] or (pad_to - shape[1]) % 2):
            raise DataError(
                f"pad_to={pad_to} must be >= {shape[1]} and differ from it by an even number"
            )
        self.count = shape[0]
        self.pad = 0 if pad_to is None else (pad_to - shape[1]) // 2
        if class_names is None:
            class_names = FASHION_CLASSES if "fashion" in str(root).lower() else DIGIT_CLASSES
        super().__init__(
            source=str(root),
            split=split,
            class_names=class_names,
            native_size=shape[1] + 2 * self.pad,
            transform=transform,
        )

    def __len__(self) -> int:
        return self.count

    def labels(self) -> np.ndarray:
        return np.asarray(read_idx(str(self.labels_path)))

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        grey = torch.from_numpy(np.array(read_idx(str(self.images_path))[index]))  # (H, W)
        if self.pad:
            grey = torch.nn.functional.pad(
                grey, (self.pad,) * 4
            )  # black border, like the digits' background
        label = int(read_idx(str(self.labels_path))[index])
        if label >= self.num_classes:
            raise DataError(
                f"{self.labels_path} item {index}: label {label} out of range 0..{self.num_classes - 1}"
            )
        return grey.unsqueeze(0).expand(3, -1, -1).contiguous(), label  # (3, H, W)
