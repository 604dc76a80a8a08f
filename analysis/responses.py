"""Reading and validating human-study answers (paper Section 7.3, Appendix G).

One row per answer, exactly the study app's export columns (see README, "Study export")::

    study, kind, rater, item, class_id, class_name, model_a, sample_a, model_b, sample_b,
    left, rating, choice, unknown_reason, response_ms, created_at

followed, in exports of the current study app, by ``platform, platform_study, platform_session,
completion_code`` (crowd platforms) and ``role, exposure_ms, check_passed, check_pass_rate``
(attention checks; ``EXPORT_COLUMNS`` is the whole header). ``role`` is ``task`` for a counted
answer and ``catch`` / ``practice`` for an attention check; :func:`load_responses` keeps only
``task`` rows, so catch and practice answers never reach a table (:func:`load_all_responses`
keeps them for ``analysis.checks``). An export without the check columns is all ``task``.

``kind`` is ``rating`` (a 1-5 realism score of the image ``model_a``/``sample_a``) or
``pairwise`` (``choice`` is ``a``, ``b`` or ``unknown``; ``left`` says which side A was shown
on). A rating row marked ``choice=unknown`` is a "can't answer" escape without a rating.

:func:`validate_responses` returns a typed DataFrame with these columns:

=============== ==================================================================
study, kind     str
rater, item     str (opaque ids)
class_id        pandas ``Int64`` (``<NA>`` when the export left it empty)
class_name      str; ``class_name`` or, when empty, the class id as text
model_a/b       str (``model_b`` empty for ratings)
sample_a/b      str
image_a/b       str, ``"<model>/<sample>"``: one image of one model
left            ``"a"``, ``"b"`` or ``""`` (ratings may leave it empty)
rating          float 1.0-5.0, NaN for unusable answers and pairwise rows
choice          ``"a"``, ``"b"``, ``"unknown"`` or ``""`` (usable rating rows)
unknown_reason  str
response_ms     float, NaN when not recorded
created_at      str (ISO 8601 as exported)
usable          bool: a rating or an a/b choice was given
role            ``"task"``, ``"catch"`` or ``"practice"`` (``"task"`` without check columns)
check_passed    float 1.0 / 0.0 on catch and practice rows, NaN otherwise (and on a catch
                answer "an image did not load": no result, left out of pass rates)
has_checks      bool: the source carried the check columns
row             int: 1-based row number in the source (the CSV header is line 1)
=============== ==================================================================

Every violation raises :class:`~analysis.errors.ResponsesError` naming the row and column.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ResponsesError

COLUMNS = (
    "study",
    "kind",
    "rater",
    "item",
    "class_id",
    "class_name",
    "model_a",
    "sample_a",
    "model_b",
    "sample_b",
    "left",
    "rating",
    "choice",
    "unknown_reason",
    "response_ms",
    "created_at",
)
PLATFORM_COLUMNS = ("platform", "platform_study", "platform_session", "completion_code")
CHECK_COLUMNS = ("role", "exposure_ms", "check_passed", "check_pass_rate")
EXPORT_COLUMNS = COLUMNS + PLATFORM_COLUMNS + CHECK_COLUMNS  # the study app's export header
ROLES = ("task", "catch", "practice")
KINDS = ("rating", "pairwise")
CHOICES = ("a", "b", "unknown")
RATING_MIN, RATING_MAX = 1, 5


def read_responses_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate one export CSV (``.csv`` or ``.csv.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise ResponsesError(
            f"{path}: no such responses file; export one with `hvqeval study export`"
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise ResponsesError(
            f"{path}: the file is empty (not even a header row); re-export the study"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error) as err:
        # OSError/EOFError/zlib.error: a .gz that is no gzip, or is cut short
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ResponsesError(f"{path}: not a readable CSV ({reason})") from None
    return validate_responses(raw, source=str(path), header_lines=1)


def responses_from_records(records: Iterable[Mapping], source: str) -> pd.DataFrame:
    """Validate export rows given as dicts (a study database's rows, read by the CLI)."""
    records = list(records)
    # dtype=object keeps each cell as given: an int column with empty cells (check_passed,
    # exposure_ms) would otherwise turn float and read back as "1.0"
    raw = pd.DataFrame(records, columns=list(EXPORT_COLUMNS) if not records else None, dtype=object)

    def as_text(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)

    raw = raw.apply(lambda column: column.map(as_text)) if len(raw) else raw.astype(str)
    return validate_responses(raw, source=source, header_lines=0)


def _where(source: str, row: int, header_lines: int) -> str:
    line = f" (line {row + header_lines})" if header_lines else ""
    return f"{source}: row {row}{line}"


def validate_responses(
    raw: pd.DataFrame, source: str = "responses", header_lines: int = 0
) -> pd.DataFrame:
    """Check the column contract and return the typed frame described in the module docstring.

    ``raw`` holds strings (empty string = missing). ``header_lines`` is 1 for CSV input so errors
    also give the line number.
    """
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ResponsesError(
            f"{source}: header row, missing column(s) {', '.join(missing)}; "
            f"an export has at least: {', '.join(COLUMNS)}"
        )
    partial = [c for c in CHECK_COLUMNS if c not in raw.columns]
    has_checks = not partial
    if partial and len(partial) < len(CHECK_COLUMNS):
        raise ResponsesError(
            f"{source}: header row, missing check column(s) {', '.join(partial)}; an export has "
            f"all of {', '.join(CHECK_COLUMNS)} or none"
        )
    taken = list(COLUMNS) + (list(CHECK_COLUMNS) if has_checks else [])
    df = raw.loc[:, taken].astype(str).reset_index(drop=True)
    if not has_checks:
        for column, value in zip(CHECK_COLUMNS, ("task", "", "", "")):
            df[column] = value
    rows = np.arange(1, len(df) + 1)

    def fail(mask: np.ndarray, column: str, problem: str, fix: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            value = df.at[i, column]
            raise ResponsesError(
                f"{_where(source, int(rows[i]), header_lines)}, column '{column}': "
                f"{problem.format(value=value)}; {fix}"
                + (f" ({bad.size} rows affected)" if bad.size > 1 else "")
            )

    for column in ("study", "rater", "item", "model_a", "sample_a"):
        fail(
            (df[column] == "").to_numpy(),
            column,
            "is empty",
            "every answer needs it; re-export the study",
        )
    fail(
        ~df["kind"].isin(KINDS).to_numpy(),
        "kind",
        "unknown study kind '{value}'",
        "expected 'rating' or 'pairwise'",
    )
    fail(
        ((df["class_id"] == "") & (df["class_name"] == "")).to_numpy(),
        "class_name",
        "neither class_name nor class_id is given",
        "every answer needs its class",
    )
    class_id = pd.to_numeric(df["class_id"].replace("", np.nan), errors="coerce")
    fail(
        ((df["class_id"] != "") & (class_id.isna() | (class_id % 1 != 0))).to_numpy(),
        "class_id",
        "'{value}' is not an integer class id",
        "fix or empty the cell",
    )

    is_rating = (df["kind"] == "rating").to_numpy()
    is_pair = ~is_rating
    rating = pd.to_numeric(df["rating"].replace("", np.nan), errors="coerce")
    has_rating = (df["rating"] != "").to_numpy()
    fail(
        has_rating & is_pair,
        "rating",
        "a pairwise answer carries a rating '{value}'",
        "pairwise answers use the choice column",
    )
    fail(
        has_rating & (rating.isna() | (rating % 1 != 0)).to_numpy(),
        "rating",
        "'{value}' is not an integer rating",
        f"ratings are integers {RATING_MIN} to {RATING_MAX}",
    )
    fail(
        has_rating & ((rating < RATING_MIN) | (rating > RATING_MAX)).to_numpy(),
        "rating",
        f"{{value}} is outside {RATING_MIN}-{RATING_MAX}",
        f"ratings are integers {RATING_MIN} to {RATING_MAX}",
    )
    choice = df["choice"]
    fail(
        is_pair & (choice == "").to_numpy(),
        "choice",
        "a pairwise answer has no choice",
        "expected 'a', 'b' or 'unknown'",
    )
    fail(
        ((choice != "") & ~choice.isin(CHOICES)).to_numpy(),
        "choice",
        "unknown choice '{value}'",
        "expected 'a', 'b' or 'unknown'",
    )
    fail(
        is_rating & choice.isin(("a", "b")).to_numpy(),
        "choice",
        "a rating answer has choice '{value}'",
        "rating answers leave choice empty or 'unknown'",
    )
    fail(
        is_rating & (choice == "").to_numpy() & ~has_rating,
        "rating",
        "a rating answer has no rating",
        "give a rating 1-5 or mark the answer choice=unknown",
    )
    fail(
        is_rating & (choice == "unknown").to_numpy() & has_rating,
        "rating",
        "an answer marked unknown also has rating {value}",
        "keep one of the two",
    )
    fail(
        is_pair & (df["model_b"] == "").to_numpy(),
        "model_b",
        "a pairwise answer has no model_b",
        "pairwise answers compare model_a with model_b",
    )
    fail(
        is_pair & (df["sample_b"] == "").to_numpy(),
        "sample_b",
        "a pairwise answer has no sample_b",
        "pairwise answers compare sample_a with sample_b",
    )
    fail(
        is_pair & ~df["left"].isin(("a", "b")).to_numpy(),
        "left",
        "'{value}' is not a side",
        "expected 'a' or 'b' (which image was shown on the left)",
    )
    ms = pd.to_numeric(df["response_ms"].replace("", np.nan), errors="coerce")
    fail(
        ((df["response_ms"] != "") & (ms.isna() | (ms < 0))).to_numpy(),
        "response_ms",
        "'{value}' is not a non-negative number of milliseconds",
        "fix or empty the cell",
    )

    fail(
        ~df["role"].isin(ROLES).to_numpy(),
        "role",
        "unknown role '{value}'",
        f"expected one of {', '.join(ROLES)}",
    )
    fail(
        ~df["check_passed"].isin(("", "0", "1")).to_numpy(),
        "check_passed",
        "'{value}' is not 0, 1 or empty",
        "re-export the study",
    )
    fail(
        (
            (df["role"] != "task")
            & (df["check_passed"] == "")
            & (df["unknown_reason"] != "image-failed")  # no result: the image did not load
        ).to_numpy(),
        "check_passed",
        "a catch or practice answer has no result (only 'an image did not load' may have none)",
        "re-export the study",
    )

    out = df.copy()
    out["check_passed"] = pd.to_numeric(df["check_passed"].replace("", np.nan)).astype(float)
    out["has_checks"] = has_checks
    out["class_id"] = class_id.astype("Int64")
    out["class_name"] = out["class_name"].where(
        out["class_name"] != "", out["class_id"].astype(str)
    )
    out["rating"] = rating.astype(float)
    out["response_ms"] = ms.astype(float)
    out["image_a"] = out["model_a"] + "/" + out["sample_a"]
    out["image_b"] = np.where(is_pair, out["model_b"] + "/" + out["sample_b"], "")
    out["usable"] = np.where(is_rating, has_rating, choice.isin(("a", "b")).to_numpy())
    out["row"] = rows
    duplicated = out.duplicated(["study", "rater", "item"], keep="first").to_numpy()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        raise ResponsesError(
            f"{_where(source, int(rows[i]), header_lines)}, column 'item': rater {out.at[i, 'rater']!r} "
            f"answered item {out.at[i, 'item']!r} of study {out.at[i, 'study']!r} twice; "
            "each rater answers an item once: remove the duplicate"
        )
    return out


def task_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The counted answers only (no catch or practice rows)."""
    return df[df["role"] == "task"].reset_index(drop=True)


def load_responses(
    csv_paths: Iterable[str | Path] = (),
    frames: Iterable[pd.DataFrame] = (),
    studies: Iterable[str] = (),
) -> pd.DataFrame:
    """The counted answers (:func:`load_all_responses` without catch and practice rows)."""
    return task_rows(load_all_responses(csv_paths, frames, studies))


def load_all_responses(
    csv_paths: Iterable[str | Path] = (),
    frames: Iterable[pd.DataFrame] = (),
    studies: Iterable[str] = (),
) -> pd.DataFrame:
    """Answers from export CSVs and already validated frames (``responses_from_records`` of a
    study database's rows, which the CLI reads), optionally restricted to named studies; catch
    and practice rows included."""
    studies = list(studies)
    frames = [read_responses_csv(p) for p in csv_paths] + list(frames)
    if not frames:
        raise ResponsesError(
            "no responses given: pass --responses CSV or --database URL --study NAME"
        )
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if studies:
        present = set(df["study"])
        unknown = [s for s in studies if s not in present]
        if unknown and len(df):
            raise ResponsesError(
                f"study {unknown[0]!r} is not in the responses; present: "
                f"{', '.join(sorted(present))}"
            )
        df = df[df["study"].isin(studies)].reset_index(drop=True)
    return df
