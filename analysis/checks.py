"""Attention checks in study answers: each rater's catch items passed, who failed, and the
statement every report makes about them.

Catch items (the study app's ``--catch-fraction``) are rows with ``role == "catch"`` and
``check_passed`` 1/0 (empty: "an image did not load", no result, left out of the rate). Pass
rates are per study and rater: one participant id in two studies is two raters here (their
catch items, instructions and attention differ by study). A rater *fails* a study's checks when
they have at least one catch result there and passed a share below ``min_pass`` (default
``DEFAULT_MIN_PASS``); ``--exclude-failed-checks`` removes their answers in that study only.
Practice rows are never counted. Raters are removed only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.errors import AnalysisError

DEFAULT_MIN_PASS = 0.75  # e.g. with 4 catch items a rater may miss one


@dataclass(frozen=True)
class CheckResults:
    table: pd.DataFrame  # study, rater, catch_answered, catch_passed, pass_rate, failed
    min_pass: float
    without_columns: tuple[str, ...]  # studies whose answers carry no check columns

    @property
    def failed(self) -> tuple[tuple[str, str], ...]:
        """(study, rater) of every rater who failed that study's checks."""
        failed = self.table[self.table["failed"]]
        return tuple(zip(failed["study"], failed["rater"]))

    def require_checks(self) -> None:
        """AnalysisError (one line) unless every study has check columns and catch answers."""
        if self.without_columns:
            raise AnalysisError(
                f"--exclude-failed-checks: the answers of study {self.without_columns[0]!r} have no "
                "check columns (role, check_passed); re-export the study with `hvqeval study export` "
                "or leave out --exclude-failed-checks"
            )
        if self.table.empty:
            raise AnalysisError(
                "--exclude-failed-checks: these responses hold no catch answers (the study was "
                "created without --catch-fraction); leave out --exclude-failed-checks"
            )

    def describe(self, excluded: bool) -> str:
        """The report's statement; empty when no answers carry check columns."""
        if self.table.empty:
            return (
                ""
                if self.without_columns and not excluded
                else "Attention checks: no catch answers."
            )
        share = f"{self.min_pass:.0%}"
        n = len(self.table)
        failed = self.table[self.table["failed"]]
        if failed.empty:
            return (
                f"Attention checks (per study): all {n} raters with catch results passed at least "
                f"{share} of them."
            )
        names = "; ".join(
            f"study {study}: "
            + ", ".join(
                f"{r.rater} ({int(r.catch_passed)}/{int(r.catch_answered)})"
                for r in rows.itertuples()
            )
            for study, rows in failed.groupby("study", sort=True)
        )
        what = (
            "removed with their answers (--exclude-failed-checks)"
            if excluded
            else "kept; pass --exclude-failed-checks to remove them"
        )
        return (
            f"Attention checks (per study): {len(failed)} of {n} raters passed fewer than {share} "
            f"of their catch items: {names}; {what}."
        )


def check_results(all_rows: pd.DataFrame, min_pass: float = DEFAULT_MIN_PASS) -> CheckResults:
    """Per rater with catch answers: answered, passed, pass rate and whether they failed."""
    if not 0.0 <= min_pass <= 1.0:
        raise AnalysisError(f"--min-check-pass {min_pass}: give a share from 0 to 1, e.g. 0.75")
    without = tuple(sorted(set(all_rows.loc[~all_rows["has_checks"].astype(bool), "study"])))
    # "an image did not load" has no result (NaN): neither passed nor failed
    catch = all_rows[(all_rows["role"] == "catch") & all_rows["check_passed"].notna()]
    grouped = catch.groupby(["study", "rater"], sort=True)["check_passed"]
    table = pd.DataFrame(
        {"catch_answered": grouped.size(), "catch_passed": grouped.sum()}
    ).reset_index()
    table["pass_rate"] = table["catch_passed"] / table["catch_answered"]
    table["failed"] = table["pass_rate"] < min_pass - 1e-12
    return CheckResults(table, min_pass, without)
