"""On-disk cache of reference features and FID statistics, keyed by content (Section 6).

Extracting Inception features of a reference set (50,000 ImageNet images, say) is the
expensive half of every FID; it is done once. Unlike torch-fidelity's own cache (keyed by
the input's *name*), an entry here is keyed by a SHA-256 of everything that determines the
numbers:

* the reference's *bytes*: the SHA-256 of every file it reads (``content_sha256``; a
  sample set's files are also checked against the hashes its manifest records), plus what
  else fixes its pixels (a dataset's split, length and seed; the shapes renderer's code),
* the preprocessing applied before the network (e.g. ``eval_transform(128)``),
* the extractor (name, torch-fidelity class, layers) and the SHA-256 of its weights file,
* whether TF32 was allowed, and the cache format version.

A changed pixel -- even one written back with the same name, size and modification time --
a changed preprocessing or weights file gives a new key, so a stale entry is never read.
Hashing reads every reference file once per evaluation (50,000 ImageNet JPEGs: ~6 GB, seconds
to a minute), far less than extracting their features again. Layout::

    <cache>/reference/<key>/
        meta.json            what the key was made of, n, layers, created_at
        <layer>.npy          (N, D) float32 features, memory-mapped on read
        class_ids.npy        (N,) int64 (absent for unlabelled references)
        stats_<layer>.npz    FID statistics: mu (D,) and sigma (D, D) in float64

Entries are written into a temporary folder and renamed into place, so an interrupted
extraction never leaves a half entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import with_default_mode

FORMAT_VERSION = 2  # 2: keyed by file bytes (1 was keyed by names, sizes and mtimes)
CACHE_ENV = "HVQEVAL_CACHE"
# Parts of a source's fingerprint that describe files by stat rather than content; replaced
# by the files' SHA-256 in the cache key.
_STAT_PARTS = ("files", "stat")


def source_files(source) -> list[tuple[str, Path]]:
    """(name recorded in the key, path) of every file the source reads pixels from."""
    from hvqeval.inputs import ArraySource, DatasetSource, FolderSource, SampleSetSource

    if isinstance(source, SampleSetSource):
        return [(p.name, p) for p in source.files]
    if isinstance(source, FolderSource):
        return [(str(p.relative_to(source.root)), p) for p in source.files]
    if isinstance(source, ArraySource):
        return [(source.path.name, source.path)]
    if isinstance(source, DatasetSource):
        if (
            source.dataset.format == "shapes"
        ):  # procedural: the fingerprint's renderer hash and seed
            return []
        root = Path(str(getattr(source.dataset, "source", source.name)))
        if root.is_file():
            return [(root.name, root)]
        if root.is_dir():
            return [(str(p.relative_to(root)), p) for p in sorted(root.rglob("*")) if p.is_file()]
        return []
    raise TypeError(f"no file list for {type(source).__name__}")


def content_sha256(source) -> str:
    """SHA-256 of a reference's content: every file's bytes plus its non-file settings.

    A sample set's files must also match the SHA-256 its manifest records; a mismatch raises
    ``SampleSetError`` naming the file (the set was edited after sampling).
    """
    from hvqeval.errors import SampleSetError
    from hvqeval.inputs import SampleSetSource
    from hvqeval.sample_set import sha256_file

    recorded = {}
    if isinstance(source, SampleSetSource):
        recorded = {f.file: f.sha256 for f in source.sample_set.files if f.sha256}
    hashes = []
    for name, path in source_files(source):
        digest = sha256_file(path)
        if recorded.get(name, digest) != digest:
            raise SampleSetError(
                f"sample set {source.sample_set.path}: {name} does not match the sha256 in the "
                "manifest; the file changed after sampling (sample again or restore it)"
            )
        hashes.append([name, digest])
    settings = {k: v for k, v in source.fingerprint().items() if k not in _STAT_PARTS}
    payload = {"kind": source.kind, "settings": settings, "files": hashes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hvqeval"


def reference_key(
    *,
    content_key: str,
    preprocessing: str,
    extractor: str,
    fidelity_name: str,
    layers: list[str],
    weights_sha256: str,
    tf32: bool,
) -> tuple[str, dict[str, Any]]:
    parts = {
        "format_version": FORMAT_VERSION,
        "content_key": content_key,
        "preprocessing": preprocessing,
        "extractor": extractor,
        "fidelity_name": fidelity_name,
        "layers": sorted(layers),
        "weights_sha256": weights_sha256,
        "tf32": bool(tf32),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), parts


@dataclass(frozen=True)
class CachedReference:
    """A complete cache entry, features memory-mapped."""

    key: str
    path: Path
    features: dict[str, np.ndarray]  # layer -> (N, D) float32 memmap
    class_ids: np.ndarray | None
    meta: dict[str, Any]

    def statistics(self, layer: str):
        from hvqeval.metrics.fidelity import FidStatistics

        with np.load(self.path / f"stats_{layer}.npz") as data:
            return FidStatistics(mu=data["mu"], sigma=data["sigma"], n=int(data["n"]))


class ReferenceCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry_dir(self, key: str) -> Path:
        return self.root / "reference" / key

    def load(self, key: str, layers: list[str]) -> CachedReference | None:
        path = self.entry_dir(key)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if any(
            not (path / f"{layer}.npy").is_file() or not (path / f"stats_{layer}.npz").is_file()
            for layer in layers
        ):
            return None
        features = {layer: np.load(path / f"{layer}.npy", mmap_mode="r") for layer in layers}
        ids = np.load(path / "class_ids.npy") if (path / "class_ids.npy").is_file() else None
        return CachedReference(key, path, features, ids, meta)

    def new_entry(self) -> Path:
        """A temporary folder to write an entry into; ``commit`` renames it into place."""
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        return with_default_mode(Path(tempfile.mkdtemp(dir=tmp_root, prefix="reference-")))

    def commit(
        self,
        tmp: Path,
        key: str,
        *,
        class_ids: np.ndarray | None,
        statistics: dict[str, Any],
        meta: dict[str, Any],
    ) -> None:
        if class_ids is not None:
            np.save(tmp / "class_ids.npy", np.asarray(class_ids, dtype=np.int64))
        for layer, stats in statistics.items():
            np.savez(tmp / f"stats_{layer}.npz", mu=stats.mu, sigma=stats.sigma, n=stats.n)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a concurrent run finished first; its entry is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
            return
        try:
            os.replace(tmp, final)
        except OSError:  # another process (a torchrun rank) renamed its equal entry in between
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)

    def scratch(self) -> Path:
        """A temporary folder for sample-side features (deleted by the caller)."""
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=tmp_root, prefix="samples-"))
