"""Golden file: Appendix G's MSP-vs-feed-forward study must render as the paper's Table 3 row.

``golden/table3_responses.csv.gz`` is written by ``golden/make_table3_golden.py`` (the counts and
their derivation are in its docstring): 30,000 answers, 53 unusable, 63.68% of pairs unanimous.
"""

from __future__ import annotations

from analysis_helpers import GOLDEN
from click.testing import CliRunner

from hvqeval.cli import cli


def test_table3_first_row_reads_like_the_paper():
    result = CliRunner().invoke(
        cli, ["report", "table3", "--responses", str(GOLDEN / "table3_responses.csv.gz")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "| MSP | Feed-forward | 50.89% | 48.93% | 0.18% | 63.68% | 53 | 30000 | 10000 |"
        in result.output
    )
    assert result.output == (GOLDEN / "table3.md").read_text(encoding="utf-8")


def test_table3_golden_as_csv_keeps_full_precision():
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "table3",
            "--format",
            "csv",
            "--responses",
            str(GOLDEN / "table3_responses.csv.gz"),
        ],
    )
    header, row = result.output.splitlines()[:2]
    values = dict(zip(header.split(","), row.split(",")))
    # 15267 / 30000, 14680 / 30000, 53 / 30000, 6368 / 10000
    assert float(values["pct_a"]) == 100 * 15267 / 30000
    assert abs(float(values["pct_b"]) - 100 * 14680 / 30000) < 1e-9
    assert abs(float(values["pct_unknown"]) - 100 * 53 / 30000) < 1e-9
    assert abs(float(values["all_agree"]) - 63.68) < 1e-9


def test_the_test_note_names_the_distribution_the_p_value_comes_from():
    """The statistic is compared with Student's t on G-1 degrees of freedom (cluster SEs) or the
    normal distribution (bootstrap SEs); the note said only "z = ...", as if always normal."""
    responses = str(GOLDEN / "table3_responses.csv.gz")
    cluster = CliRunner().invoke(cli, ["report", "table3", "--test", "--responses", responses])
    assert cluster.exit_code == 0, cluster.output
    assert "compared with Student's t on G-1 degrees of freedom" in cluster.output
