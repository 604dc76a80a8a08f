"""Table 1: IS (mean +- std over splits), FID and the joint NLL bound per model (paper Section 7.3).

Reads the metrics results store (``results/results.jsonl``, one JSON object per metric value; see
README) without importing the evaluation suite. :func:`table1` returns one row per model:

=================== ===============================================================
model               model label as stored
is_mean, is_std     Inception Score and its std over splits (metric ``isc``)
fid                 FID (metric ``fid``)
nll_bpd             NLL in bits/dim (metric ``nll_bpd``): the joint bound of a hierarchy, or
                    the exact NLL of a single-level model (the Appendix D PixelCNN baseline)
nll_kind            "bound" or "exact" (the row's ``extra.nll_kind``; rows without it are
                    bounds); "" when the model has no NLL
<m>_n               number of samples behind metric m (``is_n``, ``fid_n``, ``nll_n``)
<m>_setting         "feature extractor / n / reference / splits" behind metric m
=================== ===============================================================

Rows written by ``hvqeval sweep`` (``extra.sweep``) are left out, with a note: they are the
points of the temperature figure (``analysis.curves.sweep_points``), not Table 1 rows.

A column never silently mixes numbers made differently: when two models' IS or FID come from
different feature extractors, sample counts, references or split counts, :func:`table1` raises
:class:`~analysis.errors.ResultsError` unless ``allow_mixed`` is set, in which case the returned
``notes`` say which cells differ (the report marks them).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ResultsError

METRICS = {"is": "isc", "fid": "fid", "nll": "nll_bpd"}
SETTING_FIELDS = {
    "is": ("feature_extractor", "weights_sha256", "n", "splits", "resize"),
    "fid": ("feature_extractor", "weights_sha256", "n", "reference", "reference_id", "resize"),
    "nll": ("n", "reference"),
}
TABLE1_COLUMNS = [
    "model",
    "is_mean",
    "is_std",
    "fid",
    "nll_bpd",
    "nll_kind",
    "is_n",
    "fid_n",
    "nll_n",
    "is_setting",
    "fid_setting",
    "nll_setting",
]


def load_results(path: str | Path) -> pd.DataFrame:
    """All rows of a results store; a torn last line (crash while writing) is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(
            f"{path}: no such results store; compute metrics with `hvqeval metrics` first"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: line {number} is incomplete and was skipped", stacklevel=2)
                continue
            raise ResultsError(
                f"{path}: line {number} is not JSON; remove or repair that line"
            ) from None
        for key in ("metric", "value", "model"):
            if key not in row:
                raise ResultsError(
                    f"{path}: line {number} has no '{key}' field; it is not a results-store row"
                )
        rows.append(row)
    columns = [
        "metric",
        "value",
        "std",
        "model",
        "sample_set",
        "reference",
        "reference_id",
        "n",
        "splits",
        "feature_extractor",
        "weights_sha256",
        "resize",
        "created_at",
    ]
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])


def nll_kind(row: pd.Series) -> str:
    """``"exact"`` or ``"bound"`` of an ``nll_bpd`` row (rows written before the field: bounds)."""
    extra = row.get("extra")
    kind = extra.get("nll_kind") if isinstance(extra, dict) else None
    return kind if kind in ("exact", "bound") else "bound"


def _setting(row: pd.Series, fields: tuple[str, ...]) -> tuple:
    return tuple(None if pd.isna(row.get(f)) else row.get(f) for f in fields)


def _describe(key: str, row: pd.Series) -> str:
    parts = []
    if key in ("is", "fid") and pd.notna(row.get("feature_extractor")):
        parts.append(str(row["feature_extractor"]))
    if pd.notna(row.get("n")):
        parts.append(f"n={int(row['n'])}")
    if key == "fid" and pd.notna(row.get("reference")):
        parts.append(f"ref={row['reference']}")
    if key == "is" and pd.notna(row.get("splits")):
        parts.append(f"splits={int(row['splits'])}")
    if key == "nll" and pd.notna(row.get("reference")):
        parts.append(f"data={row['reference']}")
    return ", ".join(parts)


def table1(
    results: pd.DataFrame,
    models: list[str] | None = None,
    feature_extractor: str | None = None,
    reference: str | None = None,
    n: int | None = None,
    allow_mixed: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """Table 1 and notes (superseded duplicates, mixed settings). See module docstring."""
    notes: list[str] = []
    frame = results
    if "extra" in frame:
        # Temperature-sweep rows (``hvqeval sweep``) belong to the temperature figure, not here.
        swept = frame["extra"].map(
            lambda e: isinstance(e, dict) and isinstance(e.get("sweep"), dict)
        )
        if swept.any():
            notes.append(
                f"{int(swept.sum())} temperature-sweep row(s) left out (see the temperature "
                "figure, `hvqeval plot temperature`)"
            )
            frame = frame[~swept]
    if models:
        missing = [m for m in models if m not in set(frame["model"])]
        if missing:
            raise ResultsError(
                f"model {missing[0]!r} has no results; present: "
                f"{', '.join(sorted(map(str, frame['model'].dropna().unique())))}"
            )
        frame = frame[frame["model"].isin(models)]
    order = list(models) if models else list(dict.fromkeys(frame["model"].dropna()))
    # a filter that matches nothing is a typo, not an empty column
    for column, wanted, option in (
        ("feature_extractor", feature_extractor, "--feature-extractor"),
        ("reference", reference, "--reference"),
        ("n", n, "--n"),
    ):
        if wanted is not None and column in frame and not (frame[column] == wanted).any():
            present = sorted(map(str, frame[column].dropna().unique()))
            raise ResultsError(
                f"{option} {wanted}: no result has it; present: {', '.join(present) or 'none'}"
            )
    cells: dict[str, dict[str, pd.Series]] = {m: {} for m in order}
    for key, metric in METRICS.items():
        rows = frame[frame["metric"] == metric]
        if key in ("is", "fid") and feature_extractor:
            rows = rows[rows["feature_extractor"] == feature_extractor]
        if key == "fid" and reference:
            rows = rows[rows["reference"] == reference]
        if key in ("is", "fid") and n is not None:
            rows = rows[rows["n"] == n]
        for model, group in rows.groupby("model", sort=False):
            group = (
                group.sort_values("created_at", kind="stable") if "created_at" in group else group
            )
            settings = {_setting(r, SETTING_FIELDS[key]): r for _, r in group.iterrows()}
            if len(settings) > 1:
                described = " vs ".join(sorted({_describe(key, r) for r in settings.values()}))
                raise ResultsError(
                    f"model {model!r} has {metric} results made differently ({described}); choose one with "
                    "--feature-extractor, --reference or --n"
                )
            if len(group) > 1:
                notes.append(
                    f"{model} {metric}: {len(group) - 1} older result(s) with the same settings "
                    "superseded by the latest"
                )
            cells[model][key] = group.iloc[-1]
    rows_out = []
    for model in order:
        c = cells[model]

        def get(key, field, c=c):
            return c[key][field] if key in c and pd.notna(c[key][field]) else np.nan

        rows_out.append(
            {
                "model": model,
                "is_mean": get("is", "value"),
                "is_std": get("is", "std"),
                "fid": get("fid", "value"),
                "nll_bpd": get("nll", "value"),
                "nll_kind": nll_kind(c["nll"]) if "nll" in c else "",
                "is_n": get("is", "n"),
                "fid_n": get("fid", "n"),
                "nll_n": get("nll", "n"),
                **{f"{k}_setting": _describe(k, c[k]) if k in c else "" for k in METRICS},
            }
        )
    table = pd.DataFrame(rows_out, columns=TABLE1_COLUMNS)
    for key in METRICS:
        used = {
            cells[m][key].name: _setting(cells[m][key], SETTING_FIELDS[key])
            for m in order
            if key in cells[m]
        }
        if len(set(used.values())) > 1:
            listing = "; ".join(
                f"{m}: {table.loc[table['model'] == m, f'{key}_setting'].iloc[0]}"
                for m in order
                if key in cells[m]
            )
            if not allow_mixed:
                raise ResultsError(
                    f"the {METRICS[key]} column would mix numbers made differently ({listing}); filter with "
                    "--feature-extractor, --reference or --n, or pass --allow-mixed to show them marked"
                )
            notes.append(f"MIXED {METRICS[key]} column, not comparable across rows: {listing}")
    return table, notes
