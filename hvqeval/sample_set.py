"""Sample sets: a folder of lossless PNGs plus ``manifest.json`` (the on-disk contract).

A sample set is what ``hvqeval sample`` writes (Algorithm 4 draws) and what the metrics,
nearest-neighbour search and the study app read. The manifest records everything that
changes the images, so a number computed from a set can always be traced back::

    samples/tiny_ff/
      manifest.json   {"format_version": 1, "model": ..., "checkpoints": [{stage, path, sha256}],
                       "temperature": ..., "seed": ..., "sampler": ..., "image_size": ...,
                       "files": [{"file": "00000.png", "class_id": 3, "class_name": ..., "sha256": ...}]}
      00000.png ...

Writing is resumable and atomic: PNGs are written under temporary names and renamed, the
manifest is rewritten atomically after every batch (``flush``), so an interrupted run leaves
a valid, shorter set that the next run extends.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hvqeval.errors import SampleSetError
from models import atomic_write_bytes

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = ("format_version", "model", "image_size", "files")
# How the last call ran (not what decides the images): a resumed set may differ in these.
RUN_KEYS = ("batch_size", "processes")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SampleFile:
    """One image of a sample set: its PNG file name (relative), class id and label."""

    file: str
    class_id: int
    class_name: str
    sha256: str = ""


class SampleSet:
    """A sample set read from disk; validated on load (manifest shape, files present)."""

    def __init__(self, path: Path, manifest: dict[str, Any], manifest_sha256: str):
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.files = [
            SampleFile(
                f["file"],
                int(f["class_id"]),
                str(f.get("class_name", "")),
                str(f.get("sha256", "")),
            )
            for f in manifest["files"]
        ]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> SampleSet:
        root = Path(path)
        manifest_path = root / MANIFEST_NAME
        if not root.is_dir():
            raise SampleSetError(
                f"sample set {root} does not exist (expected a folder with {MANIFEST_NAME})"
            )
        if not manifest_path.is_file():
            raise SampleSetError(f"{root} is not a sample set: {MANIFEST_NAME} is missing")
        raw = manifest_path.read_bytes()
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SampleSetError(f"{manifest_path}: not valid JSON ({err})") from None
        if not isinstance(manifest, dict):
            raise SampleSetError(f"{manifest_path}: expected a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise SampleSetError(f"{manifest_path}: missing key(s) {', '.join(missing)}")
        if manifest["format_version"] != FORMAT_VERSION:
            raise SampleSetError(
                f"{manifest_path}: format_version {manifest['format_version']!r} is not supported "
                f"(this hvqeval reads version {FORMAT_VERSION})"
            )
        files = manifest["files"]
        if not isinstance(files, list):
            raise SampleSetError(f"{manifest_path}: 'files' must be a list")
        seen = set()
        for i, entry in enumerate(files):
            if not isinstance(entry, dict) or "file" not in entry or "class_id" not in entry:
                raise SampleSetError(f"{manifest_path}: files[{i}] needs 'file' and 'class_id'")
            name = entry["file"]
            if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
                raise SampleSetError(
                    f"{manifest_path}: files[{i}] has an invalid file name {name!r}"
                )
            if name in seen:
                raise SampleSetError(f"{manifest_path}: file {name} is listed twice")
            seen.add(name)
            if not isinstance(entry["class_id"], int) or isinstance(entry["class_id"], bool):
                raise SampleSetError(f"{manifest_path}: files[{i}].class_id must be an integer")
            if not (root / name).is_file():
                raise SampleSetError(
                    f"sample set {root}: manifest lists {name} but the file is missing "
                    "(rerun the sampling command to finish the set)"
                )
        return cls(root, manifest, hashlib.sha256(raw).hexdigest())

    # ------------------------------------------------------------------ access
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    def __len__(self) -> int:
        return len(self.files)

    def class_ids(self) -> list[int]:
        return sorted({f.class_id for f in self.files})

    def image(self, index: int) -> Image.Image:
        entry = self.files[index]
        path = self.path / entry.file
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB") if img.mode != "RGB" else img.copy()
        except OSError as err:
            raise SampleSetError(f"sample set {self.path}: cannot read {path} ({err})") from None

    def uint8(self, index: int) -> np.ndarray:
        """Image ``index`` as a (H, W, 3) uint8 array."""
        arr = np.asarray(self.image(index), dtype=np.uint8)
        if arr.shape != (self.image_size, self.image_size, 3):
            raise SampleSetError(
                f"sample set {self.path}: {self.files[index].file} is {arr.shape[1]}x{arr.shape[0]}, "
                f"manifest says image_size {self.image_size}"
            )
        return arr

    def iter_uint8(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (images (B, 3, H, W) uint8, class_ids (B,)) batches, streaming from disk."""
        for start in range(0, len(self.files), batch_size):
            idx = range(start, min(start + batch_size, len(self.files)))
            images = np.stack([self.uint8(i).transpose(2, 0, 1) for i in idx])
            labels = np.array([self.files[i].class_id for i in idx], dtype=np.int64)
            yield images, labels

    def verify(self) -> None:
        """Check every file's sha256 against the manifest (files without a hash are skipped)."""
        for entry in self.files:
            if entry.sha256 and sha256_file(self.path / entry.file) != entry.sha256:
                raise SampleSetError(
                    f"sample set {self.path}: {entry.file} does not match the sha256 in the manifest "
                    "(the file changed after sampling)"
                )


def image_name(index: int) -> str:
    """File name of image ``index`` of a set (its place in the set, so any process can write it)."""
    return f"{index:06d}.png"


def write_image(
    root: str | os.PathLike,
    index: int,
    image_hwc: np.ndarray,
    class_id: int,
    class_name: str,
    image_size: int,
) -> dict[str, Any]:
    """Write image ``index`` of the set at ``root`` (atomically) -> its manifest entry."""
    image_hwc = np.asarray(image_hwc)
    if image_hwc.dtype != np.uint8 or image_hwc.shape != (image_size, image_size, 3):
        raise ValueError(
            f"expected a ({image_size}, {image_size}, 3) uint8 image, got "
            f"{image_hwc.shape} {image_hwc.dtype}"
        )
    target = Path(root) / image_name(index)
    atomic_write_bytes(
        target, lambda f: Image.fromarray(image_hwc, mode="RGB").save(f, format="PNG")
    )
    return {
        "file": target.name,
        "class_id": int(class_id),
        "class_name": class_name,
        "sha256": sha256_file(target),
    }


class SampleSetWriter:
    """Writes (or resumes) a sample set; ``add`` images, ``flush`` after each batch, ``close``.

    ``meta`` holds the manifest's descriptive keys (model, card, run, checkpoints,
    temperature, seed, sampler, ...). Resuming requires the same ``meta`` (apart from
    ``created_at`` and the ``RUN_KEYS``) so a set never mixes images drawn with different
    settings.
    """

    def __init__(self, path: str | os.PathLike, *, model: str, image_size: int, **meta: Any):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.meta = {"model": model, "image_size": int(image_size), **meta}
        self.files: list[dict[str, Any]] = []
        manifest_path = self.path / MANIFEST_NAME
        if manifest_path.is_file():
            existing = SampleSet.load(self.path).manifest
            old = {
                k: v
                for k, v in existing.items()
                if k not in ("files", "format_version", "created_at", *RUN_KEYS)
            }
            new = {k: v for k, v in json.loads(json.dumps(self.meta)).items() if k not in RUN_KEYS}
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise SampleSetError(
                    f"{self.path} already holds a sample set made with different settings "
                    f"({', '.join(changed)}); choose another --out folder or delete it"
                )
            self.files = list(existing["files"])
            self.meta["created_at"] = existing.get("created_at")
        else:
            self.meta["created_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def __len__(self) -> int:
        return len(self.files)

    def add(self, image_hwc: np.ndarray, class_id: int, class_name: str) -> SampleFile:
        """Write one (H, W, 3) uint8 image as the next PNG; the manifest updates on ``flush``."""
        entry = write_image(
            self.path, len(self.files), image_hwc, class_id, class_name, self.meta["image_size"]
        )
        self.files.append(entry)
        return SampleFile(**entry)

    def extend(self, entries: list[dict[str, Any]]) -> None:
        """Append entries of PNGs already written by ``write_image`` (maybe by other processes);
        they must continue the set: entry ``k`` names file ``image_name(len(self) + k)``."""
        for entry in entries:
            if entry["file"] != image_name(len(self.files)):
                raise SampleSetError(
                    f"{self.path}: {entry['file']} does not continue the set after "
                    f"{len(self.files)} files"
                )
            self.files.append(dict(entry))

    def manifest(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **self.meta, "files": self.files}

    def flush(self) -> None:
        data = json.dumps(self.manifest(), indent=1).encode("utf-8")
        atomic_write_bytes(self.path / MANIFEST_NAME, lambda f: f.write(data))

    def close(self) -> SampleSet:
        self.flush()
        return SampleSet.load(self.path)

    def __enter__(self) -> SampleSetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
