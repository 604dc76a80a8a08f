"""Codes of one level on disk: the data of the next stage (Algorithm 1, x_{l+1} := E_l(x_l)).

After level l is trained, its (Polyak-averaged) encoder maps every image of the train and
validation splits to codes, stored in ``runs/<name>/codes/level<l>/``::

    train.codes.npy   (N, C, h, w) uint8 (bits <= 8) or uint16   numpy, memory-mapped on read
    train.labels.npy  (N,) int64 class ids
    val.codes.npy, val.labels.npy
    meta.json         {"source_stage", "source_step", "limit", "bits", "splits": {split: N}, "class_names"}

Images are encoded after the evaluation transform (rescale + centre crop, Section 7), so
each image has exactly one code map; training crops of the next stage are taken from these
maps. ``meta.json`` is written last: a folder without it is an unfinished extraction.
``limit`` is the ``--limit`` the codes were extracted with (only the first ``limit`` items of
every split; ``null``: all of them) and ``splits`` the number of items each split holds.
``stale_reason`` decides whether a folder can serve a stage: codes of the first ``limit``
items serve any stage that asks for at most that many (it reads the first ones), and
codes of every item serve any stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from models.atomic_write import atomic_write_text
from models.errors import DataError

META_FILE = "meta.json"


def codes_dir(run_dir: str | Path, level_number: int) -> Path:
    """Folder of the codes produced by level ``level_number`` (1-based)."""
    return Path(run_dir) / "codes" / f"level{level_number}"


def read_meta(directory: Path) -> dict | None:
    path = directory / META_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _items(limit: int | None) -> str:
    return (
        "every item of each split"
        if limit is None
        else f"the first {limit} items of each split (limit {limit})"
    )


def stale_reason(meta: dict | None, *, source_step: int, limit: int | None) -> str | None:
    """Why the codes described by ``meta`` cannot serve a stage; ``None`` when they can.

    ``source_step``: the step of the level's current checkpoint; ``limit``: the stage's
    ``--limit`` (``None``: all items). Codes extracted before the limit was recorded are stale.
    """
    if meta is None:
        return "no codes extracted yet"
    if meta["source_step"] != source_step:
        return (
            f"codes are of step {meta['source_step']} of {meta['source_stage']}, "
            f"its checkpoint is at step {source_step}"
        )
    if "limit" not in meta:
        return "codes do not record the --limit they were extracted with"
    have = meta["limit"]
    if have is not None and (limit is None or limit > have):
        return f"codes hold {_items(have)}, this stage uses {_items(limit)}"
    return None


class CodesDataset(Dataset):
    """Items ``(codes long (C, h, w), class_id)`` of one split of an extracted code folder."""

    def __init__(self, directory: str | Path, split: str = "train"):
        directory = Path(directory)
        meta = read_meta(directory)
        if meta is None:
            raise DataError(
                f"{directory} holds no extracted codes (no {META_FILE}); train the level below first"
            )
        if split not in meta["splits"]:
            raise DataError(
                f"{directory} has no '{split}' codes (splits: {', '.join(meta['splits'])})"
            )
        self.directory, self.split, self.meta = directory, split, meta
        self.codes = np.load(directory / f"{split}.codes.npy", mmap_mode="r")  # (N, C, h, w)
        self.labels = np.load(directory / f"{split}.labels.npy", mmap_mode="r")  # (N,)
        self.class_names = list(meta["class_names"])
        self.image_size = int(self.codes.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.asarray(self.codes[index], dtype=np.int64)), int(
            self.labels[index]
        )


def _paths(directory: Path, split: str) -> dict[str, tuple[Path, Path]]:
    return {
        kind: (directory / f".{split}.{kind}.npy.tmp", directory / f"{split}.{kind}.npy")
        for kind in ("codes", "labels")
    }


def create_split(
    directory: Path, split: str, n: int, code_shape: tuple[int, int, int], bits: int
) -> None:
    """Allocate the (temporary) files of a split: ``n`` code maps of ``code_shape``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = _paths(directory, split)
    dtype = np.uint8 if bits <= 8 else np.uint16
    np.lib.format.open_memmap(
        paths["codes"][0], mode="w+", dtype=dtype, shape=(n, *code_shape)
    ).flush()
    np.lib.format.open_memmap(paths["labels"][0], mode="w+", dtype=np.int64, shape=(n,)).flush()


@torch.no_grad()
def fill_split(
    encode,
    dataset: Dataset,
    directory: Path,
    split: str,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> None:
    """Encode this process's contiguous share of ``dataset`` into the split's temporary files.

    ``encode``: batch -> long codes (B, C, h, w). With ``world_size`` processes each fills
    rows ``[rank * n / world, (rank + 1) * n / world)``, so they write disjoint parts.
    """
    paths = _paths(directory, split)
    codes = np.load(paths["codes"][0], mmap_mode="r+")
    labels = np.load(paths["labels"][0], mmap_mode="r+")
    n = len(dataset)
    begin, end = rank * n // world_size, (rank + 1) * n // world_size
    shard = Subset(dataset, range(begin, end))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    row = begin
    with tqdm(
        total=end - begin,
        desc=f"codes {directory.name} {split}",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for x, y in loader:
            z = encode(x.to(device))  # (B, C, h, w)
            codes[row : row + len(x)] = z.cpu().numpy().astype(codes.dtype)
            labels[row : row + len(x)] = y.numpy()
            row += len(x)
            bar.update(len(x))
    codes.flush()
    labels.flush()


def finish_split(directory: Path, split: str) -> None:
    """Move the filled temporary files of a split into place."""
    for tmp, final in _paths(directory, split).values():
        os.replace(tmp, final)


def write_meta(
    directory: Path,
    *,
    source_stage: str,
    source_step: int,
    limit: int | None,
    bits: int,
    splits: dict[str, int],
    class_names: list[str],
) -> None:
    """Record a finished extraction; ``limit``: the ``--limit`` it used (``None``: every item)."""
    meta = {
        "source_stage": source_stage,
        "source_step": int(source_step),
        "limit": None if limit is None else int(limit),
        "bits": bits,
        "splits": {split: int(n) for split, n in splits.items()},
        "class_names": list(class_names),
    }
    atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")
