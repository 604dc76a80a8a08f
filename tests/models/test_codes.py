"""Extracted codes of the next stage: their metadata and when they are re-extracted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from models.codes import CodesDataset, codes_dir, read_meta, stale_reason
from models.train import TrainOptions, train_stage

sys.path.insert(0, str(Path(__file__).parent))
from small_cards import small_card  # noqa: E402


def _options(steps: int, limit: int | None) -> TrainOptions:
    return TrainOptions(steps=steps, num_workers=0, log_every=1, progress=False, limit=limit)


def _identity(directory: Path) -> tuple:
    """Changes whenever the code files are written again (new files are moved into place)."""
    stats = [
        (directory / name).stat() for name in ("train.codes.npy", "val.codes.npy", "meta.json")
    ]
    return tuple((s.st_ino, s.st_mtime_ns) for s in stats)


def test_codes_record_their_item_limit_and_are_re_extracted_for_more_items(tmp_path):
    card = small_card("tiny_ff")
    train_stage(card, tmp_path, "level1", options=_options(2, limit=8))
    directory = codes_dir(tmp_path, 1)

    train_stage(card, tmp_path, "prior", options=_options(1, limit=8))
    meta = read_meta(directory)
    assert (
        meta["limit"] == 8 and meta["splits"] == {"train": 8, "val": 8} and meta["source_step"] == 2
    )
    first = _identity(directory)

    # The same limit reuses the codes (the prior is already at step 1: only the codes are checked).
    train_stage(card, tmp_path, "prior", options=_options(1, limit=8))
    assert _identity(directory) == first

    # A larger limit needs items the codes do not hold: they are extracted again.
    train_stage(card, tmp_path, "prior", options=_options(1, limit=12))
    meta = read_meta(directory)
    assert meta["limit"] == 12 and meta["splits"] == {"train": 12, "val": 12}
    assert len(CodesDataset(directory, "train")) == 12
    second = _identity(directory)
    assert second != first

    # Again with 12: reused; with fewer (the stage reads the first 8 of the 12): reused.
    train_stage(card, tmp_path, "prior", options=_options(2, limit=12))
    train_stage(card, tmp_path, "prior", options=_options(2, limit=8))
    assert _identity(directory) == second and read_meta(directory)["limit"] == 12

    # Codes written before the limit was recorded cannot be trusted: extracted again.
    old = {k: v for k, v in read_meta(directory).items() if k != "limit"}
    (directory / "meta.json").write_text(json.dumps(old))
    train_stage(card, tmp_path, "prior", options=_options(2, limit=12))
    assert read_meta(directory)["limit"] == 12 and _identity(directory) != second


def test_stale_reason_rules():
    meta = {
        "source_stage": "level1",
        "source_step": 5,
        "limit": 8,
        "bits": 4,
        "splits": {"train": 8, "val": 8},
        "class_names": ["a"],
    }
    assert stale_reason(meta, source_step=5, limit=8) is None
    assert stale_reason(meta, source_step=5, limit=3) is None
    assert "first 8 items" in stale_reason(meta, source_step=5, limit=9)
    assert "every item" in stale_reason(meta, source_step=5, limit=None)
    assert "step 6" in stale_reason(meta, source_step=6, limit=8)
    full = {**meta, "limit": None}
    assert stale_reason(full, source_step=5, limit=None) is None
    assert stale_reason(full, source_step=5, limit=100) is None
    assert stale_reason(None, source_step=5, limit=None) == "no codes extracted yet"
