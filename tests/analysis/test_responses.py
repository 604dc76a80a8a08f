"""Bad input gives one-line errors naming row and column; empty studies give empty tables."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_helpers import frame, pair_row, rating_row
from click.testing import CliRunner

from analysis.errors import ResponsesError
from analysis.preferences import preference_table
from analysis.ratings import rating_table
from analysis.responses import COLUMNS, read_responses_csv, validate_responses
from hvqeval.cli import cli


def good_rows():
    return [
        rating_row("r1", "i1", "M", "s1", 3),
        pair_row("r1", "p1", "a"),
        pair_row("r2", "p1", "b", left="b"),
    ]


def error_for(rows) -> str:
    with pytest.raises(ResponsesError) as info:
        validate_responses(frame(rows), source="x.csv", header_lines=1)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_rows_are_typed():
    df = validate_responses(frame(good_rows()))
    assert df["rating"].tolist()[0] == 3.0 and df["usable"].tolist() == [True, True, True]
    assert df["image_a"].iloc[0] == "M/s1" and df["row"].tolist() == [1, 2, 3]


def test_missing_columns_are_named():
    raw = frame(good_rows()).drop(columns=["choice", "left"])
    with pytest.raises(ResponsesError, match=r"header row, missing column\(s\) left, choice"):
        validate_responses(raw)


@pytest.mark.parametrize(
    "index, column, value, expected",
    [
        (1, "kind", "ranking", r"row 2 \(line 3\), column 'kind': unknown study kind 'ranking'"),
        (0, "rating", "6", r"row 1 \(line 2\), column 'rating': 6 is outside 1-5"),
        (0, "rating", "0", r"row 1 \(line 2\), column 'rating': 0 is outside 1-5"),
        (0, "rating", "2.5", r"row 1 \(line 2\), column 'rating': '2.5' is not an integer rating"),
        (2, "choice", "", r"row 3 \(line 4\), column 'choice': a pairwise answer has no choice"),
        (2, "choice", "left", r"row 3 \(line 4\), column 'choice': unknown choice 'left'"),
        (1, "left", "", r"row 2 \(line 3\), column 'left'"),
        (0, "rating", "", r"row 1 \(line 2\), column 'rating': a rating answer has no rating"),
        (2, "rater", "", r"row 3 \(line 4\), column 'rater': is empty"),
        (1, "response_ms", "-4", r"row 2 \(line 3\), column 'response_ms'"),
    ],
)
def test_bad_cells_name_row_and_column(index, column, value, expected):
    rows = good_rows()
    rows[index][column] = value
    assert pd.Series([error_for(rows)]).str.contains(expected).all(), error_for(rows)


def test_duplicate_answer_is_refused():
    rows = good_rows() + [pair_row("r1", "p1", "b")]
    assert "answered item 'p1'" in error_for(rows) and "row 4" in error_for(rows)


def test_cli_prints_one_line_error(write_csv):
    rows = good_rows()
    rows[0]["rating"] = "7"
    path = write_csv(rows)
    result = CliRunner().invoke(cli, ["report", "table2", "--responses", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("Error: ")
        and "row 1 (line 2), column 'rating'" in lines[0]
    )


def test_a_table_of_the_other_kind_of_answers_is_a_one_line_error(write_csv):
    """Ratings given to a pairwise table (or pairs to Table 2) are a mistake, not an empty
    table: one line naming what the responses hold and the report that fits them."""
    ratings = write_csv([rating_row("r1", "i1", "M", "s1", 3)], "ratings.csv")
    pairs = write_csv([pair_row("r1", "p1", "a")], "pairs.csv")
    runner = CliRunner()
    for table, path, fits in (
        ("table3", ratings, "table2"),
        ("table5", ratings, "table2"),
        ("table2", pairs, "table3 or table5"),
    ):
        result = runner.invoke(cli, ["report", table, "--responses", str(path)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith("Error: ") and f"use `hvqeval report {fits}`" in lines[0]
        assert "(they hold 1 " in lines[0]
    # the matching table of the same file still reports
    reported = runner.invoke(cli, ["report", "table2", "--responses", str(ratings)])
    assert reported.exit_code == 0 and "none applied (1 rater, 1 answer kept" in reported.output
    assert runner.invoke(cli, ["report", "table3", "--responses", str(pairs)]).exit_code == 0


def test_empty_study_gives_empty_tables(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    df = read_responses_csv(path)
    assert df.empty
    assert (
        rating_table(df).empty
        and preference_table(df).empty
        and preference_table(df, by_class=True).empty
    )
    runner = CliRunner()
    for table in ("table1", "table2", "table3", "table5", "agreement", "quality", "strengths"):
        if table == "table1":
            continue
        result = runner.invoke(cli, ["report", table, "--responses", str(path)])
        assert result.exit_code == 0, result.output
        assert "Exclusions: none applied (0 raters, 0 answers kept" in result.output
    result = runner.invoke(
        cli, ["report", "table3", "--responses", str(path), "--format", "html", "--all-stats"]
    )
    assert result.exit_code == 0 and "<table" in result.output


def test_completely_empty_file(tmp_path):
    path = tmp_path / "nothing.csv"
    path.write_text("")
    with pytest.raises(ResponsesError, match="empty"):
        read_responses_csv(path)


@pytest.mark.parametrize("content", [b"study,kind,rater\n", "gzip cut short"])
def test_a_gz_file_that_is_no_gzip_is_one_line_naming_it(tmp_path, content):
    import gzip

    path = tmp_path / "answers.csv.gz"
    if content == "gzip cut short":
        content = gzip.compress(b"study,kind,rater\n" * 200)[:40]
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["report", "table2", "--responses", str(path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: {path}: not a readable CSV")
