"""Rater quality flags and explicit exclusion rules (beyond the paper).

The paper reports no screening of raters. Here each rater gets three flags, and answers are
removed only when an option asks for it; every report states what the rules removed.

straight_lining
    rating answers: the same rating every time (``>= min_answers`` ratings); pairwise answers:
    the same *side* (left or right) in at least ``side_share`` of ``>= min_answers`` answers.
fast
    median response time below ``fast_ms``.
failed_real
    only when real-image models are named (``real_models``). Pairwise items with exactly one
    real side: the rater picked the generated image in at least ``real_fail_share`` of
    ``>= real_min_items`` such items (chance is 50%). Ratings: the rater's mean rating of real
    images is not above their mean rating of generated ones (``>= real_min_items`` of each).

:func:`rater_quality` returns one row per rater: ``rater, n_answers, median_ms, rating_modal_share,
side_modal_share, real_items, real_failed_share, real_rating_gap, straight_lining, fast,
failed_real, flags``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

FLAGS = ("straight_lining", "fast", "failed_real")


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless one ("1 rater", "3 raters")."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class QualityRules:
    fast_ms: float = 500.0
    min_answers: int = 10
    side_share: float = 0.95
    real_models: tuple[str, ...] = ()
    real_fail_share: float = 0.5
    real_min_items: int = 4


@dataclass(frozen=True)
class ExclusionRules:
    """What to remove: raters with any of ``flags``, named raters, answers faster than ``min_response_ms``."""

    flags: tuple[str, ...] = ()
    raters: tuple[str, ...] = ()
    min_response_ms: float | None = None
    # (study, rater) of raters who failed that study's attention checks (analysis.checks)
    failed_checks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        unknown = [f for f in self.flags if f not in FLAGS]
        if unknown:
            raise AnalysisError(
                f"unknown rater flag {unknown[0]!r}; choose from {', '.join(FLAGS)} or 'all'"
            )


@dataclass(frozen=True)
class ExclusionSummary:
    """What the exclusion rules removed (stated in every report)."""

    raters_before: int
    answers_before: int
    raters_removed: dict[str, int] = field(default_factory=dict)  # reason -> raters
    answers_removed_with_raters: int = 0
    answers_removed_fast: int = 0
    min_response_ms: float | None = None
    check_statement: str = ""  # analysis.checks: who failed the attention checks
    # reason -> study -> rater ids removed for it (a rater is listed under the first reason)
    excluded_raters: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def raters_removed_total(self) -> int:
        return sum(self.raters_removed.values())

    @property
    def answers_removed_total(self) -> int:
        return self.answers_removed_with_raters + self.answers_removed_fast

    def describe(self) -> str:
        text = self._describe_removals()
        return f"{text} {self.check_statement}" if self.check_statement else text

    def _describe_removals(self) -> str:
        if not self.raters_removed and self.min_response_ms is None:
            return (
                f"Exclusions: none applied ({counted(self.raters_before, 'rater')}, "
                f"{counted(self.answers_before, 'answer')} kept; see `hvqeval report quality` "
                "for flagged raters)."
            )
        parts = []
        if self.raters_removed:
            reasons = ", ".join(
                f"{k.replace('_', '-')}: {v}" for k, v in self.raters_removed.items()
            )
            parts.append(
                f"{self.raters_removed_total} of {counted(self.raters_before, 'rater')} removed "
                f"({reasons}) "
                f"with their {self.answers_removed_with_raters} answers"
            )
        if self.min_response_ms is not None:
            parts.append(
                f"{self.answers_removed_fast} answers faster than {self.min_response_ms:g} ms removed"
            )
        return (
            f"Exclusions: {'; '.join(parts)}; {self.answers_removed_total} of {self.answers_before} "
            "answers removed in total."
        )

    def as_dict(self) -> dict:
        return {
            "raters_before": self.raters_before,
            "answers_before": self.answers_before,
            "raters_removed": dict(self.raters_removed),
            "raters_removed_total": self.raters_removed_total,
            "answers_removed_with_raters": self.answers_removed_with_raters,
            "answers_removed_fast": self.answers_removed_fast,
            "min_response_ms": self.min_response_ms,
            "answers_removed_total": self.answers_removed_total,
            "excluded_raters": {k: dict(v) for k, v in self.excluded_raters.items()},
            "attention_checks": self.check_statement,
            "statement": self.describe(),
        }


def _modal_share(values: pd.Series, keys: pd.Series) -> pd.Series:
    counts = values.groupby([keys, values]).size()
    return counts.groupby(level=0).max() / counts.groupby(level=0).sum()


def rater_quality(responses: pd.DataFrame, rules: QualityRules = QualityRules()) -> pd.DataFrame:
    """One row per rater with the quality measures and flags described in the module docstring."""
    if responses.empty:
        return pd.DataFrame(
            columns=[
                "rater",
                "n_answers",
                "median_ms",
                "rating_modal_share",
                "side_modal_share",
                "real_items",
                "real_failed_share",
                "real_rating_gap",
                *FLAGS,
                "flags",
            ]
        )
    out = responses.groupby("rater").agg(
        n_answers=("row", "size"), median_ms=("response_ms", "median")
    )
    ratings = responses[(responses["kind"] == "rating") & responses["usable"]]
    pairs = responses[(responses["kind"] == "pairwise") & responses["usable"]]
    out["n_ratings"] = ratings.groupby("rater").size()
    out["n_pairs"] = pairs.groupby("rater").size()
    out["rating_modal_share"] = _modal_share(ratings["rating"], ratings["rater"])
    side = np.where(pairs["choice"] == pairs["left"], "left", "right")
    out["side_modal_share"] = _modal_share(pd.Series(side, index=pairs.index), pairs["rater"])
    real = set(rules.real_models)
    real_a, real_b = pairs["model_a"].isin(real), pairs["model_b"].isin(real)
    check = pairs[real_a ^ real_b]
    failed = np.where(check["model_a"].isin(real), check["choice"] == "b", check["choice"] == "a")
    out["real_items"] = check.groupby("rater").size()
    out["real_failed_share"] = (
        pd.Series(failed, index=check.index, dtype=float).groupby(check["rater"]).mean()
    )
    is_real = ratings["model_a"].isin(real)
    by_rater = (
        ratings.groupby([ratings["rater"], is_real.rename("real")])["rating"]
        .agg(["mean", "size"])
        .unstack()
    )
    if (True in by_rater.columns.get_level_values(1)) and (
        False in by_rater.columns.get_level_values(1)
    ):
        enough = (by_rater[("size", True)] >= rules.real_min_items) & (
            by_rater[("size", False)] >= rules.real_min_items
        )
        out["real_rating_gap"] = (by_rater[("mean", True)] - by_rater[("mean", False)]).where(
            enough
        )
    else:
        out["real_rating_gap"] = np.nan
    out = out.reindex(columns=[*out.columns]).fillna(
        {"n_ratings": 0, "n_pairs": 0, "real_items": 0}
    )
    out["straight_lining"] = (
        (out["n_ratings"] >= rules.min_answers) & (out["rating_modal_share"] >= 1.0)
    ) | ((out["n_pairs"] >= rules.min_answers) & (out["side_modal_share"] >= rules.side_share))
    out["fast"] = out["median_ms"] < rules.fast_ms
    out["failed_real"] = (
        (out["real_items"] >= rules.real_min_items)
        & (out["real_failed_share"] >= rules.real_fail_share)
    ) | (out["real_rating_gap"] <= 0)
    out["flags"] = [",".join(f for f in FLAGS if row[f]) for _, row in out[list(FLAGS)].iterrows()]
    out = out.drop(columns=["n_ratings", "n_pairs"]).reset_index()
    out[["real_items"]] = out[["real_items"]].astype(int)
    return out


def apply_exclusions(
    responses: pd.DataFrame, rules: ExclusionRules, quality: QualityRules = QualityRules()
) -> tuple[pd.DataFrame, ExclusionSummary]:
    """Remove what ``rules`` ask for and say how much that was."""
    raters_before, answers_before = responses["rater"].nunique(), len(responses)
    removed: dict[str, int] = {}
    excluded: dict[str, dict[str, list[str]]] = {}  # reason -> study -> raters
    drop = pd.Series(False, index=responses.index)

    def remove(reason: str, mask: pd.Series) -> None:
        nonlocal drop
        new = responses[mask & ~drop]
        removed[reason] = (
            new["rater"].nunique()
            if reason != "failed_checks"
            else len(new.groupby(["study", "rater"]).size())
        )
        excluded[reason] = {
            study: sorted(set(rows["rater"])) for study, rows in new.groupby("study", sort=True)
        }
        drop = drop | mask

    if rules.raters:
        unknown = sorted(set(rules.raters) - set(responses["rater"]))
        if unknown:
            raise AnalysisError(
                f"--exclude-rater {unknown[0]!r} answered nothing in these responses"
            )
        remove("named", responses["rater"].isin(rules.raters))
    if rules.failed_checks:
        # per study: a rater who failed one study's checks keeps their answers in another
        pairs = pd.MultiIndex.from_tuples(rules.failed_checks, names=["study", "rater"])
        remove(
            "failed_checks",
            pd.Series(
                pd.MultiIndex.from_frame(responses[["study", "rater"]]).isin(pairs),
                index=responses.index,
            ),
        )
    if rules.flags:
        table = rater_quality(responses, quality)
        for flag in rules.flags:
            flagged = set(table.loc[table[flag].astype(bool), "rater"])
            remove(flag, responses["rater"].isin(flagged))
    kept = responses[~drop]
    n_fast = 0
    if rules.min_response_ms is not None:
        fast = kept["response_ms"] < rules.min_response_ms
        n_fast = int(fast.sum())
        kept = kept[~fast]
    summary = ExclusionSummary(
        raters_before,
        answers_before,
        removed,
        int(drop.sum()),
        n_fast,
        rules.min_response_ms,
        excluded_raters=excluded,
    )
    return kept.reset_index(drop=True), summary
