"""Rater-quality flags, exclusion statements, and every output format of `hvqeval report`."""

from __future__ import annotations

import base64
import io
import json

import pandas as pd
from analysis_helpers import frame, pair_row, rating_row
from click.testing import CliRunner

from analysis.quality import ExclusionRules, QualityRules, apply_exclusions, rater_quality
from analysis.responses import validate_responses
from hvqeval.cli import cli


def study_rows():
    rows = []
    # "steady": 12 ratings, varied, normal speed; "liner": 12 ratings all 2 (straight-lining)
    for k in range(12):
        rows.append(rating_row("steady", f"i{k}", "real" if k % 2 else "gen", f"s{k}", 1 + k % 5))
        rows.append(rating_row("liner", f"i{k}", "real" if k % 2 else "gen", f"s{k}", 2))
        rows.append(
            rating_row(
                "speedy", f"i{k}", "real" if k % 2 else "gen", f"s{k}", 1 + (k * 3) % 5, ms=200
            )
        )
    # "fooled": 6 real-vs-generated pairs, picks the generated one (side a) in 5
    for k in range(6):
        rows.append(
            pair_row(
                "fooled",
                f"p{k}",
                "a" if k < 5 else "b",
                left="ab"[k % 2],
                a=("gen", f"g{k}"),
                b=("real", f"x{k}"),
            )
        )
        rows.append(
            pair_row(
                "steady", f"p{k}", "b", left="ab"[k % 2], a=("gen", f"g{k}"), b=("real", f"x{k}")
            )
        )
    return rows


def test_flags():
    df = validate_responses(frame(study_rows()))
    table = rater_quality(df, QualityRules(real_models=("real",))).set_index("rater")
    # liner gives real and generated images the same 2: also "rated real no higher than generated"
    assert table.loc["liner", "flags"] == "straight_lining,failed_real"
    assert table.loc["speedy", "flags"] == "fast"
    # fooled: 5 of 6 real-vs-generated items failed = 83% >= 50%
    assert table.loc["fooled", "flags"] == "failed_real"
    assert table.loc["fooled", "real_failed_share"] == 5 / 6
    assert table.loc["steady", "flags"] == ""
    # without naming the real model nothing is judged real-vs-fake
    assert rater_quality(df).set_index("rater").loc["fooled", "flags"] == ""


def test_exclusions_remove_and_report_counts():
    df = validate_responses(frame(study_rows()))
    kept, summary = apply_exclusions(
        df,
        ExclusionRules(("straight_lining", "fast", "failed_real"), (), 150.0),
        QualityRules(real_models=("real",)),
    )
    # liner 12 + speedy 12 + fooled 6 answers removed with their raters; no remaining answer < 150 ms
    assert set(kept["rater"]) == {"steady"} and len(kept) == 18
    assert summary.raters_removed == {"straight_lining": 1, "fast": 1, "failed_real": 1}
    assert summary.answers_removed_total == 30
    assert (
        "3 of 4 raters removed (straight-lining: 1, fast: 1, failed-real: 1) with their 30 answers"
        in summary.describe()
    )


def test_every_format_states_exclusions(tmp_path):
    path = tmp_path / "r.csv"
    frame(study_rows()).to_csv(path, index=False)
    runner = CliRunner()
    base = [
        "--responses",
        str(path),
        "--exclude-flagged",
        "fast",
        "--real-model",
        "real",
        "--all-stats",
    ]
    for table in ("table2", "table3", "table5", "agreement", "quality"):
        md = runner.invoke(cli, ["report", table, *base])
        assert md.exit_code == 0, md.output
        assert "Exclusions: 1 of 4 raters removed (fast: 1) with their 12 answers" in md.output
        js = runner.invoke(cli, ["report", table, *base, "--json"])
        data = json.loads(js.output)
        assert (
            data["exclusions"]["raters_removed_total"] == 1
            and data["exclusions"]["answers_removed_total"] == 12
        )
    latex = runner.invoke(cli, ["report", "table3", *base, "--format", "latex"]).output
    assert r"\begin{tabular}" in latex and r"\%" in latex
    csv = runner.invoke(cli, ["report", "table2", *base, "--format", "csv"]).output
    parsed = pd.read_csv(io.StringIO(csv))
    assert {"section", "model", "mean", "se", "n_raters"} <= set(parsed.columns)


def test_html_embeds_png_figures(tmp_path):
    rows = study_rows()
    for k in range(6):
        rows.append(
            pair_row(
                "steady",
                f"q{k}",
                "ab"[k % 2],
                a=("gen", f"g{k}"),
                b=("other", f"o{k}"),
                class_name="c (2)",
                study="gen-vs-other",
            )
        )
    path = tmp_path / "r.csv"
    frame(rows).to_csv(path, index=False)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "all",
            "--responses",
            str(path),
            "--format",
            "html",
            "--out",
            str(out),
            "--all-stats",
            "--bootstrap",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    images = text.split('src="data:image/png;base64,')[1:]
    # rating distributions, two per-class preference figures, Bradley-Terry, agreement
    assert len(images) == 5
    assert all(base64.b64decode(i.split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "Exclusions: none applied" in text and "Table 5" in text and "Bradley" in text


def test_unknown_flag_is_one_line_error(tmp_path):
    path = tmp_path / "r.csv"
    frame(study_rows()).to_csv(path, index=False)
    result = CliRunner().invoke(
        cli, ["report", "table2", "--responses", str(path), "--exclude-flagged", "lazy"]
    )
    assert (
        result.exit_code == 1
        and result.output.count("\n") == 1
        and "unknown flag 'lazy'" in result.output
    )
