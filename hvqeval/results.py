"""The results store: ``results/results.jsonl``, one JSON object per metric value.

Every number the evaluation suite produces (IS, FID, KID, precision/recall, per-class FID,
NLL bounds) is appended here together with every setting that changes it, so that Table 1
(paper Section 6) can be rebuilt from the file alone and never mixes incompatible rows::

    {"metric": "fid", "value": 44.95, "std": null, "model": "tiny_ff",
     "sample_set": "samples/tiny_ff", "sample_set_sha256": "...",
     "reference": "shapes:val", "reference_id": "...", "n": 5000, "n_reference": 10000,
     "splits": null, "seed": 0, "feature_extractor": "inception-v3-compat",
     "weights_sha256": "...", "resize": "...", "tf32": false,
     "versions": {"hvqeval": ..., "torch": ..., "torch_fidelity": ...},
     "created_at": "...", "extra": {...}}

Appends are single ``write`` calls of one line under an exclusive file lock (``portalocker``:
``flock`` on Linux and macOS, ``LockFileEx`` on Windows) followed by ``fsync``, so concurrent writers and a crash never leave a half line that breaks readers;
a torn last line (power loss) is skipped with a warning on read.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import portalocker

from hvqeval.errors import HvqevalError

DEFAULT_RESULTS = Path("results/results.jsonl")

# Column order of a row (the contract read by the analysis part, Table 1).
ROW_FIELDS = (
    "metric",
    "value",
    "std",
    "model",
    "sample_set",
    "sample_set_sha256",
    "reference",
    "reference_id",
    "n",
    "n_reference",
    "splits",
    "seed",
    "feature_extractor",
    "weights_sha256",
    "resize",
    "tf32",
    "versions",
    "created_at",
    "extra",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics a metric value depends on."""
    import numpy
    import scipy
    import torch
    import torch_fidelity

    from hvqeval import __version__

    return {
        "hvqeval": __version__,
        "torch": torch.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


@dataclass(frozen=True)
class ResultRow:
    """One metric value and everything needed to reproduce or compare it."""

    metric: str
    value: float
    std: float | None
    model: str | None
    sample_set: str
    sample_set_sha256: str | None
    reference: str | None
    reference_id: str | None
    n: int
    n_reference: int | None
    splits: int | None
    seed: int
    feature_extractor: str | None
    weights_sha256: str | None
    resize: str
    tf32: bool
    versions: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: data[k] for k in ROW_FIELDS}


class ResultsStore:
    """Append-only JSONL file of :class:`ResultRow` objects (created on first append)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_RESULTS):
        self.path = Path(path)

    def append(self, rows: Iterable[ResultRow | dict[str, Any]]) -> int:
        lines = []
        for row in rows:
            data = row.to_dict() if isinstance(row, ResultRow) else dict(row)
            missing = [k for k in ("metric", "value") if k not in data]
            if missing:
                raise ValueError(f"result row lacks {missing}")
            lines.append(json.dumps(data, sort_keys=False, allow_nan=True) + "\n")
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = "".join(lines).encode("utf-8")
        with open(self.path, "ab") as fh:
            portalocker.lock(fh, portalocker.LOCK_EX)  # blocks until other writers are done
            try:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                portalocker.unlock(fh)
        return len(lines)

    def read(self) -> list[dict[str, Any]]:
        """All rows in file order; a missing file is an empty store."""
        if not self.path.is_file():
            return []
        rows = []
        with open(self.path, encoding="utf-8") as fh:
            text = fh.read()
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                    warnings.warn(
                        f"{self.path}: ignoring an incomplete last line {number}", stacklevel=2
                    )
                    continue
                raise HvqevalError(
                    f"{self.path}: line {number} is not valid JSON; fix or remove that line"
                ) from None
        return rows

    def job_keys(self) -> set[str]:
        """Job keys (``extra.job``) of the rows already stored, for resumable batches."""
        return {
            r["extra"]["job"]
            for r in self.read()
            if isinstance(r.get("extra"), dict) and "job" in r["extra"]
        }


def format_value(row: dict[str, Any]) -> str:
    """``18.10 ± 0.96`` (Table 1 style) or ``44.95``."""
    value, std = row.get("value"), row.get("std")
    if value is None:
        return "-"
    text = f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.2f}"
    if std is not None:
        text += f" ± {std:.2f}" if abs(std) >= 1e-2 else f" ± {std:.2g}"
    return text


def print_rows(rows: list[dict[str, Any]], stream=None) -> None:
    """A plain-text table of rows: metric, value, n, extractor, sample set and reference."""
    stream = stream or sys.stdout
    header = ("metric", "value", "n", "extractor", "samples", "reference")
    table = [header] + [
        (
            r["metric"]
            + (f"[{r['extra']['class_id']}]" if "class_id" in (r.get("extra") or {}) else ""),
            format_value(r),
            str(r.get("n")),
            str(r.get("feature_extractor")),
            str(r.get("sample_set")),
            str(r.get("reference") or "-"),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip(), file=stream)
