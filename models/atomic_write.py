"""Atomic file writes: a temporary file in the same folder, flushed, then ``os.replace``.

Every file the project writes that a later run reads (checkpoints, run configs, code
metadata, sample-set PNGs and manifests, reconstructions) goes through here, so an
interrupted run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def with_default_mode(path: Path) -> Path:
    """Give a file or folder made by ``tempfile`` (owner-only: 0600 / 0700) the mode a plain
    ``open`` / ``mkdir`` would have given it under the umask, so that what the project writes
    (sample sets, checkpoints) is readable by whoever may read the folder it is in."""
    full = 0o777 if path.is_dir() else 0o666
    os.chmod(path, full & ~current_umask())
    return path


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with_default_mode(Path(tmp))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))
