"""Helpers for the analysis tests: build export-shaped answers by hand (imported as `analysis_helpers`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.responses import COLUMNS

GOLDEN = Path(__file__).with_name("golden")


def rating_row(
    rater, item, model, sample, rating, class_name="c (1)", study="ratings", ms=2000, choice=""
):
    return {
        "study": study,
        "kind": "rating",
        "rater": rater,
        "item": item,
        "class_id": "1",
        "class_name": class_name,
        "model_a": model,
        "sample_a": sample,
        "model_b": "",
        "sample_b": "",
        "left": "",
        "rating": "" if rating is None else str(rating),
        "choice": choice,
        "unknown_reason": "",
        "response_ms": str(ms),
        "created_at": "2026-11-28T15:00:00Z",
    }


def pair_row(
    rater,
    item,
    choice,
    left="a",
    class_name="c (1)",
    a=("A", "a1"),
    b=("B", "b1"),
    study="pairs",
    ms=2000,
):
    return {
        "study": study,
        "kind": "pairwise",
        "rater": rater,
        "item": item,
        "class_id": "1",
        "class_name": class_name,
        "model_a": a[0],
        "sample_a": a[1],
        "model_b": b[0],
        "sample_b": b[1],
        "left": left,
        "rating": "",
        "choice": choice,
        "unknown_reason": "",
        "response_ms": str(ms),
        "created_at": "2026-11-28T15:00:00Z",
    }


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(str)
