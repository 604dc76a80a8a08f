"""Attention checks in `hvqeval report`: catch and practice rows never reach a table, raters below
--min-check-pass are listed, --exclude-failed-checks removes them and says so, bad check input is
one line; and the study app's export header is exactly what analysis reads."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from analysis_helpers import pair_row
from click.testing import CliRunner

from analysis.checks import check_results
from analysis.errors import ResponsesError
from analysis.responses import (
    CHECK_COLUMNS,
    COLUMNS,
    EXPORT_COLUMNS,
    load_all_responses,
    load_responses,
    validate_responses,
)
from hvqeval.cli import cli


def test_the_study_export_header_is_what_analysis_reads():
    from study_app.export import EXPORT_COLUMNS as STUDY_EXPORT

    assert STUDY_EXPORT == EXPORT_COLUMNS and EXPORT_COLUMNS[: len(COLUMNS)] == COLUMNS


def _checked(row, role="task", passed="", rate=""):
    return {
        **row,
        "platform": "",
        "platform_study": "",
        "platform_session": "",
        "completion_code": "",
        "role": role,
        "exposure_ms": "800",
        "check_passed": passed,
        "check_pass_rate": rate,
    }


def rows_with_checks():
    """Raters good1, good2 (all catch items right) and cheat (both wrong, and always 'a')."""
    rows = []
    for rater, ok in (("good1", "1"), ("good2", "1"), ("cheat", "0")):
        rate = "1.0" if ok == "1" else "0.0"
        for k in range(4):
            choice = "a" if rater == "cheat" else "ab"[k % 2]
            rows.append(_checked(pair_row(rater, f"{k}", choice, left="ab"[k % 2]), rate=rate))
        for n in range(2):  # catch: A is the real image, B its corrupted copy
            catch = pair_row(rater, f"c{n}", "a" if ok == "1" else "b", b=("check:corrupted", "x"))
            rows.append(_checked(catch, "catch", ok, rate))
        practice = pair_row(rater, "p0", "b", b=("check:corrupted", "y"))
        rows.append(_checked(practice, "practice", "0", rate))
    return rows


def _csv(tmp_path, rows, columns=EXPORT_COLUMNS):
    path = tmp_path / "checked.csv"
    pd.DataFrame(rows, columns=list(columns)).astype(str).to_csv(path, index=False)
    return path


def test_catch_and_practice_rows_never_reach_the_tables(tmp_path):
    path = _csv(tmp_path, rows_with_checks())
    everything = load_all_responses([path])
    counted = load_responses([path])
    assert len(everything) == 3 * 7 and len(counted) == 3 * 4
    assert set(counted["role"]) == {"task"} and "check:corrupted" not in set(counted["model_b"])
    result = CliRunner().invoke(cli, ["report", "table3", "--responses", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "check:corrupted" not in result.output.split('"exclusions"')[0]
    assert data["exclusions"]["answers_before"] == 12


def test_failed_raters_are_listed_and_removed_when_asked(tmp_path):
    path = _csv(tmp_path, rows_with_checks())
    runner = CliRunner()
    listed = runner.invoke(cli, ["report", "table3", "--responses", str(path)])
    assert listed.exit_code == 0, listed.output
    assert (
        "1 of 3 raters passed fewer than 75% of their catch items: study pairs: cheat (0/2); kept"
        in listed.output
    )
    assert "Exclusions: none applied (3 raters, 12 answers" in listed.output
    for fmt in ("md", "html"):
        out = tmp_path / f"t3.{fmt}"
        removed = runner.invoke(
            cli,
            [
                "report",
                "table3",
                "--responses",
                str(path),
                "--exclude-failed-checks",
                "--format",
                fmt,
                "--out",
                str(out),
            ],
        )
        assert removed.exit_code == 0, removed.output
        text = out.read_text()
        assert "1 of 3 raters removed (failed-checks: 1) with their 4 answers" in text
        assert "cheat (0/2); removed with their answers (--exclude-failed-checks)" in text
    table5 = runner.invoke(
        cli, ["report", "table5", "--responses", str(path), "--exclude-failed-checks", "--json"]
    )
    exclusions = json.loads(table5.output)["exclusions"]
    assert exclusions["raters_removed"] == {"failed_checks": 1}
    assert exclusions["excluded_raters"] == {"failed_checks": {"pairs": ["cheat"]}}
    lenient = runner.invoke(
        cli, ["report", "table3", "--responses", str(path), "--min-check-pass", "0"]
    )
    assert "all 3 raters with catch results passed at least 0%" in lenient.output


def test_check_results_threshold():
    df = validate_responses(pd.DataFrame(rows_with_checks(), columns=list(EXPORT_COLUMNS)))
    results = check_results(df, 0.75)
    assert results.failed == (("pairs", "cheat"),)
    assert results.table.set_index("rater").loc["good1", "pass_rate"] == 1.0


def _in_study(rows, study):
    return [{**r, "study": study} for r in rows]


def test_pass_rates_are_per_study_and_exclusion_removes_only_that_study(tmp_path):
    """One participant id in two studies: passed both catch items in one, failed both in the
    other; per study they pass (2/2) there and fail (0/2) here, not 2/4 pooled."""
    good = _in_study([r for r in rows_with_checks() if r["rater"] != "cheat"], "pw")
    bad = _in_study(rows_with_checks(), "rt")
    for r in good:
        if r["rater"] == "good1" and r["role"] == "catch":
            assert r["check_passed"] == "1"
    for r in bad:  # good1 fails every catch item of study rt
        if r["rater"] == "good1" and r["role"] == "catch":
            r.update(choice="b", check_passed="0", check_pass_rate="0.0")
    pw, rt = tmp_path / "pw.csv", tmp_path / "rt.csv"
    pd.DataFrame(good, columns=list(EXPORT_COLUMNS)).astype(str).to_csv(pw, index=False)
    pd.DataFrame(bad, columns=list(EXPORT_COLUMNS)).astype(str).to_csv(rt, index=False)
    results = check_results(load_all_responses([pw, rt]), 0.75)
    table = results.table.set_index(["study", "rater"])
    assert table.loc[("pw", "good1"), ["catch_passed", "catch_answered"]].tolist() == [2, 2]
    assert table.loc[("rt", "good1"), ["catch_passed", "catch_answered"]].tolist() == [0, 2]
    assert set(results.failed) == {("rt", "good1"), ("rt", "cheat")}
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "table3",
            "--responses",
            str(pw),
            "--responses",
            str(rt),
            "--exclude-failed-checks",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    exclusions = json.loads(result.output)["exclusions"]
    assert exclusions["excluded_raters"] == {"failed_checks": {"rt": ["cheat", "good1"]}}
    assert exclusions["answers_removed_with_raters"] == 8  # 4 each in rt; good1 keeps pw's 4
    assert "study rt: cheat (0/2), good1 (0/2)" in exclusions["attention_checks"]


def test_an_image_that_did_not_load_is_no_check_result(tmp_path):
    rows = rows_with_checks()
    for r in rows:  # cheat says the image did not load on one catch item; nothing else
        if r["rater"] == "cheat" and r["item"] == "c0":
            r.update(choice="unknown", unknown_reason="image-failed", check_passed="")
    results = check_results(validate_responses(pd.DataFrame(rows, columns=list(EXPORT_COLUMNS))))
    cheat = results.table.set_index("rater").loc["cheat"]
    assert (cheat["catch_passed"], cheat["catch_answered"]) == (0, 1)


@pytest.mark.parametrize(
    "columns, rows, message",
    [
        (COLUMNS, None, "have no check columns (role, check_passed)"),
        (EXPORT_COLUMNS, "no-catch", "hold no catch answers"),
    ],
)
def test_exclude_failed_checks_without_checks_is_one_line(tmp_path, columns, rows, message):
    base = [r for r in rows_with_checks() if r["role"] == "task"]
    path = _csv(tmp_path, base, columns)
    result = CliRunner().invoke(
        cli, ["report", "table3", "--responses", str(path), "--exclude-failed-checks"]
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert message in result.output


@pytest.mark.parametrize(
    "change, message",
    [
        ({"role": "warmup"}, "unknown role 'warmup'"),
        ({"role": "catch", "check_passed": ""}, "a catch or practice answer has no result"),
        ({"check_passed": "yes"}, "'yes' is not 0, 1 or empty"),
    ],
)
def test_bad_check_cells_are_one_line(tmp_path, change, message):
    rows = rows_with_checks()
    rows[0] = {**rows[0], **change}
    path = _csv(tmp_path, rows)
    result = CliRunner().invoke(cli, ["report", "table3", "--responses", str(path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert message in result.output and "row 1 (line 2)" in result.output


def test_some_check_columns_missing_is_an_error():
    raw = pd.DataFrame(rows_with_checks(), columns=list(EXPORT_COLUMNS)).drop(
        columns=[CHECK_COLUMNS[2]]
    )
    with pytest.raises(ResponsesError, match="missing check column"):
        validate_responses(raw)


def test_min_check_pass_outside_zero_one_is_one_line(tmp_path):
    path = _csv(tmp_path, rows_with_checks())
    result = CliRunner().invoke(
        cli, ["report", "table3", "--responses", str(path), "--min-check-pass", "1.5"]
    )
    assert result.exit_code == 2 and "--min-check-pass" in result.output


def test_database_rows_with_checks_read_like_the_csv():
    """Rows as `export_rows` returns them (ints, floats and None, not text), the path of
    `hvqeval report --database URL --study NAME`: catch and practice rows carry check_passed
    1/0 beside tasks' None, which must not turn into '1.0' and be refused."""
    from analysis.responses import responses_from_records

    def typed(row):
        out = dict(row)
        for key in ("class_id", "response_ms", "exposure_ms", "check_passed"):
            out[key] = int(row[key]) if row[key] not in ("", None) else None
        for key in ("rating", "choice", "unknown_reason"):
            out[key] = row[key] or None
        out["check_pass_rate"] = float(row["check_pass_rate"]) if row["check_pass_rate"] else None
        return out

    rows = [{**typed(row), "item": n + 1} for n, row in enumerate(rows_with_checks())]
    frame = responses_from_records(rows, source="study 'x'")
    assert len(frame) == len(rows)
    catch = frame[frame["role"] == "catch"]
    assert sorted(catch["check_passed"].tolist()) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert frame[frame["role"] == "task"]["check_passed"].isna().all()
