"""Hand-computed small tables (derivations in the comments)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from analysis_helpers import frame, pair_row, rating_row
from statsmodels.stats.sandwich_covariance import cov_cluster_2groups

from analysis.agreement import ordinal_alpha, pairwise_kappa
from analysis.bradley_terry import bradley_terry
from analysis.clustered import multiway_variance
from analysis.errors import AnalysisError, ResultsError
from analysis.preferences import preference_table
from analysis.ratings import rating_table
from analysis.report import Report, round_to_total, to_markdown
from analysis.responses import validate_responses
from analysis.results import load_results, table1
from analysis.sections import StatOptions, table1_section, table3_section


def test_table2_mean_and_naive_se_by_hand():
    rows = [rating_row(f"r{k}", f"i{k}", "M1", f"s{k}", v) for k, v in enumerate([1, 2, 3])]
    rows += [rating_row("r0", "j0", "M2", "t0", 4), rating_row("r1", "j1", "M2", "t1", 5)]
    rows += [rating_row("r2", "i9", "M1", "s9", None, choice="unknown")]
    table = rating_table(validate_responses(frame(rows)))
    # M2: mean (4+5)/2 = 4.5, sd = sqrt(((-.5)^2 + .5^2)/1) = 0.7071, se = 0.7071/sqrt(2) = 0.5
    # M1: mean (1+2+3)/3 = 2, sd = 1, se = 1/sqrt(3) = 0.57735; sorted high to low -> M2 first
    assert table["model"].tolist() == ["M2", "M1"]
    assert table["mean"].tolist() == pytest.approx([4.5, 2.0])
    assert table["se"].tolist() == pytest.approx([0.5, 1 / math.sqrt(3)])
    assert table["n_answers"].tolist() == [2, 3] and table["n_unusable"].tolist() == [0, 1]
    assert table["n_images"].tolist() == [2, 3] and table["n_raters"].tolist() == [2, 3]


def test_one_way_cluster_variance_by_hand():
    # y = [1, 0, 1, 1], clusters [x, x, y, z]: mean 0.75, residuals [.25, -.75, .25, .25];
    # cluster sums x: -0.5, y: 0.25, z: 0.25 -> sum of squares 0.375; / N^2 = 0.0234375;
    # small-sample factor G/(G-1) * (N-1)/(N-K) = 3/2 * 3/3 -> V = 0.03515625
    y = np.array([1.0, 0.0, 1.0, 1.0])
    assert multiway_variance(y, pd.DataFrame({"g": ["x", "x", "y", "z"]})) == pytest.approx(
        0.03515625
    )


def test_two_way_cluster_variance_matches_statsmodels_two_way():
    rng = np.random.default_rng(0)
    g1, g2 = rng.integers(0, 15, 400), rng.integers(0, 12, 400)
    y = rng.normal(size=400) + rng.normal(size=15)[g1] + rng.normal(size=12)[g2]
    fit = sm.OLS(y, np.ones((400, 1))).fit()
    # statsmodels' own two-way estimator: V_1 + V_2 - V_12 (cov_both is the first return value)
    expected = cov_cluster_2groups(fit, g1, g2)[0][0, 0]
    assert multiway_variance(y, pd.DataFrame({"a": g1, "b": g2})) == pytest.approx(
        expected, rel=1e-10
    )


def test_table3_percentages_agreement_and_position_by_hand():
    rows = [
        pair_row("r1", "p1", "a", left="a"),
        pair_row("r2", "p1", "a", left="b"),
        pair_row("r3", "p1", "a", left="a"),
        pair_row("r1", "p2", "a", left="b", b=("B", "b2")),
        pair_row("r2", "p2", "b", left="b", b=("B", "b2")),
        pair_row("r3", "p2", "unknown", left="a", b=("B", "b2")),
    ]
    table = preference_table(validate_responses(frame(rows)))
    row = table.iloc[0]
    # 6 answers: A 4, B 1, unknown 1 -> 66.667 / 16.667 / 16.667 (unknowns in the denominator)
    assert (row.pct_a, row.pct_b, row.pct_unknown) == pytest.approx((400 / 6, 100 / 6, 100 / 6))
    assert row.n_answers == 6 and row.n_unusable == 1 and row.n_items == 2
    # all agree: p1 (a, a, a) yes; p2 has an unknown -> 1 of 2 pairs = 50%
    assert row.all_agree == pytest.approx(50.0)
    # left wins among the 5 usable answers: a@a yes, a@b no, a@a yes, a@b no, b@b yes -> 3/5 = 60%
    assert row.left_wins == pytest.approx(60.0)
    # displayed row adds to 100.00: floors 66.66 + 16.66 + 16.66 = 99.98, the two largest
    # remainders (first two in a tie) get +0.01 -> 66.67 / 16.67 / 16.66
    md = to_markdown(Report("t", (table3_section(validate_responses(frame(rows)), StatOptions()),)))
    assert "| A | B | 66.67% | 16.67% | 16.66% | 50.00% | 1 | 6 | 2 |" in md


def test_round_to_total_keeps_the_sum():
    assert round_to_total([50.89, 48.933333, 0.176667]) == [50.89, 48.93, 0.18]
    assert sum(round_to_total([100 / 3] * 3)) == pytest.approx(100.0)
    for values in np.random.default_rng(1).dirichlet([1, 1, 0.1], size=200) * 100:
        assert sum(round_to_total(values)) == pytest.approx(100.0)


def test_table5_sorted_by_b_share_ascending_with_holm():
    rows, item = [], 0
    # class k: 20 pairs (distinct samples), A chosen in (10 + 3k) of 20 answers... 3 raters each
    for k, wins in enumerate([8, 16, 12]):
        for p in range(20):
            item += 1
            for r in range(3):
                choice = "a" if (p * 3 + r) < wins * 3 else "b"
                rows.append(
                    pair_row(
                        f"r{(p + r) % 9}",
                        f"p{item}",
                        choice,
                        left="ab"[(p + r) % 2],
                        class_name=f"class {k}",
                        a=("A", f"a{item}"),
                        b=("B", f"b{item}"),
                    )
                )
    table = preference_table(validate_responses(frame(rows)), by_class=True)
    # B's share per class: 12/20 = 60%, 4/20 = 20%, 8/20 = 40% -> sorted 20, 40, 60 (the paper's order)
    assert table["class_name"].tolist() == ["class 1", "class 2", "class 0"]
    assert table["pct_b"].tolist() == pytest.approx([20.0, 40.0, 60.0])
    assert table["pct_a"].tolist() == pytest.approx([80.0, 60.0, 40.0])
    # Holm by hand: sort p ascending, adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))
    p = table["p_value"].to_numpy()
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.minimum(1, (3 - np.arange(3)) * p[order]))
    expected = np.empty(3)
    expected[order] = adjusted
    assert table["p_holm"].to_numpy() == pytest.approx(expected)
    assert table.loc[0, "p_value"] < 0.01 < table.loc[2, "p_value"]


def test_fleiss_kappa_by_hand():
    counts = [("a", "a", "a"), ("b", "b", "b"), ("a", "a", "b"), ("a", "b", "b")]
    rows = [pair_row(f"r{r}", f"p{i}", c) for i, cs in enumerate(counts) for r, c in enumerate(cs)]
    kappa, n_items, n_answers = pairwise_kappa(validate_responses(frame(rows)))
    # P_i = (sum n_ij^2 - 3) / 6 = 1, 1, 1/3, 1/3 -> mean 2/3; p_a = 6/12 -> P_e = 0.5;
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3
    assert kappa == pytest.approx(1 / 3) and (n_items, n_answers) == (4, 12)


def test_krippendorff_alpha_by_hand():
    rows = [
        rating_row("r1", "i1", "M", "s1", 1),
        rating_row("r2", "i1", "M", "s1", 1),
        rating_row("r1", "i2", "M", "s2", 2),
        rating_row("r2", "i2", "M", "s2", 2),
        rating_row("r1", "i3", "M", "s3", 1),
        rating_row("r2", "i3", "M", "s3", 2),
    ]
    alpha, n_items, _ = ordinal_alpha(validate_responses(frame(rows)))
    # coincidences: o11 = 2, o22 = 2, o12 = o21 = 1; n1 = n2 = 3, n = 6.
    # Only values 1 and 2 occur, so every disagreement has the same ordinal distance and
    # alpha = 1 - D_o / D_e = 1 - (2/6) / (2*3*3 / (6*5)) = 1 - (1/3) / 0.6 = 4/9
    assert alpha == pytest.approx(4 / 9) and n_items == 3


def _bt_rows(model_a, model_b, wins_a, total, start):
    return [
        pair_row(
            f"r{k % 7}",
            f"q{start + k}",
            "a" if k < wins_a else "b",
            a=(model_a, f"{model_a}{start + k}"),
            b=(model_b, f"{model_b}{start + k}"),
            study=f"{model_a}-{model_b}",
        )
        for k in range(total)
    ]


def test_bradley_terry_two_models_is_the_log_odds():
    df = validate_responses(frame(_bt_rows("A", "B", 30, 40, 0)))
    table = bradley_terry(df, n_boot=50).set_index("model")
    # A beats B 30 of 40: s_A - s_B = log(30/10) = log 3; reference A (alphabetical) = 0
    assert table.loc["B", "strength"] == pytest.approx(-math.log(3), abs=1e-6)
    assert table.loc["B", "ci_low"] < table.loc["B", "strength"] < table.loc["B", "ci_high"]


def test_bradley_terry_recovers_exact_strengths():
    # win fractions that exactly match s = (0, log 2, log 4): P(B > A) = 2/3, P(C > B) = 2/3, P(C > A) = 4/5
    rows = (
        _bt_rows("B", "A", 20, 30, 0)
        + _bt_rows("C", "B", 20, 30, 100)
        + _bt_rows("C", "A", 24, 30, 200)
    )
    table = bradley_terry(validate_responses(frame(rows)), reference="A", n_boot=20).set_index(
        "model"
    )
    assert table.loc[["A", "B", "C"], "strength"].tolist() == pytest.approx(
        [0, math.log(2), math.log(4)], abs=1e-6
    )
    assert table.index.tolist() == ["C", "B", "A"]


def test_bradley_terry_refuses_disconnected_models():
    rows = _bt_rows("A", "B", 5, 9, 0) + _bt_rows("C", "D", 5, 9, 100)
    with pytest.raises(AnalysisError, match="do not connect"):
        bradley_terry(validate_responses(frame(rows)), n_boot=5)


RESULT = {
    "splits": 10,
    "seed": 0,
    "feature_extractor": "inception-v3-compat",
    "weights_sha256": "w",
    "resize": "bilinear",
    "reference": "imagenet:val",
    "reference_id": "ref",
    "n": 50000,
    "created_at": "2026-11-28T10:00:00Z",
}


def _results_file(tmp_path, rows, tail=""):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps({**RESULT, **r}) + "\n" for r in rows) + tail)
    return path


PAPER_ROWS = [
    {"metric": "isc", "model": "Feed-forward", "value": 18.1, "std": 0.96},
    {"metric": "fid", "model": "Feed-forward", "value": 44.95, "std": None},
    {
        "metric": "nll_bpd",
        "model": "Feed-forward",
        "value": 3.343,
        "std": 0.001,
        "n": 1000,
        "feature_extractor": None,
    },
    {"metric": "isc", "model": "MSP", "value": 17.02, "std": 0.79},
    {"metric": "fid", "model": "MSP", "value": 46.05, "std": None},
    {
        "metric": "nll_bpd",
        "model": "MSP",
        "value": 3.409,
        "std": 0.001,
        "n": 1000,
        "feature_extractor": None,
    },
]


def test_table1_paper_layout(tmp_path):
    section = table1_section(load_results(_results_file(tmp_path, PAPER_ROWS)))
    md = to_markdown(Report("Table 1", (section,)))
    assert "| Feed-forward | 18.10 ± 0.96 | 44.95 | 3.343 bits/dim |" in md
    assert "| MSP | 17.02 ± 0.79 | 46.05 | 3.409 bits/dim |" in md
    assert "FID: inception-v3-compat, n=50000, ref=imagenet:val" in md


def test_table1_refuses_mixed_extractors_and_counts(tmp_path):
    rows = (
        PAPER_ROWS[:3]
        + [{**PAPER_ROWS[3], "feature_extractor": "domain-classifier"}]
        + PAPER_ROWS[4:]
    )
    results = load_results(_results_file(tmp_path, rows))
    with pytest.raises(
        ResultsError, match="isc column would mix.*inception-v3-compat.*domain-classifier"
    ):
        table1(results)
    table, notes = table1(results, allow_mixed=True)
    assert any(n.startswith("MIXED isc") for n in notes)
    md = to_markdown(Report("T", (table1_section(results, allow_mixed=True),)))
    assert "18.10 ± 0.96 †" in md and "† mixed isc column" in md
    rows = PAPER_ROWS[:4] + [{**PAPER_ROWS[4], "n": 5000}] + PAPER_ROWS[5:]
    with pytest.raises(ResultsError, match="fid column would mix.*n=50000.*n=5000"):
        table1(load_results(_results_file(tmp_path, rows)))


@pytest.mark.parametrize(
    "option, value, message",
    [
        (
            "reference",
            "imagenet:vall",
            "--reference imagenet:vall: no result has it; present: imagenet:val",
        ),
        ("feature_extractor", "vgg", "--feature-extractor vgg: no result has it"),
        ("n", 5000, "--n 5000: no result has it; present: 1000, 50000"),
    ],
)
def test_table1_filter_that_matches_nothing_is_an_error_not_an_empty_column(
    tmp_path, option, value, message
):
    results = load_results(_results_file(tmp_path, PAPER_ROWS))
    assert table1(results, reference="imagenet:val")[0]["fid"].notna().all()
    with pytest.raises(ResultsError) as err:
        table1(results, **{option: value})
    assert str(err.value) == message or str(err.value).startswith(message)


def test_table1_same_settings_latest_wins_and_torn_line(tmp_path):
    rows = PAPER_ROWS + [{**PAPER_ROWS[1], "value": 40.0, "created_at": "2026-11-28T11:00:00Z"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = load_results(_results_file(tmp_path, rows, tail='{"metric": "fi'))
    assert any("incomplete" in str(w.message) for w in caught)
    table, notes = table1(results)
    assert table.set_index("model").loc["Feed-forward", "fid"] == 40.0
    assert any("superseded" in n for n in notes)
    other = rows + [{**PAPER_ROWS[1], "n": 10000}]
    with pytest.raises(ResultsError, match="'Feed-forward' has fid results made differently"):
        table1(load_results(_results_file(tmp_path, other)))
    assert (
        table1(load_results(_results_file(tmp_path, other)), n=10000)[0]
        .set_index("model")
        .loc["Feed-forward", "fid"]
        == 44.95
    )


def test_percentage_intervals_stay_within_0_100_on_a_tiny_study():
    """Six answers on two pairs: p +- t * SE with 1 df would reach far outside 0-100%; the Wilson
    interval at the clustered effective sample size stays inside and holds the estimate."""
    rows = [
        pair_row("r1", "p1", "a", left="a"),
        pair_row("r2", "p1", "a", left="b"),
        pair_row("r3", "p1", "b", left="a"),
        pair_row("r1", "p2", "a", left="b", b=("B", "b2")),
        pair_row("r2", "p2", "b", left="b", b=("B", "b2")),
        pair_row("r3", "p2", "a", left="a", b=("B", "b2")),
    ]
    row = preference_table(validate_responses(frame(rows))).iloc[0]
    for low, est, high in (
        (row.pct_a_low, row.pct_a, row.pct_a_high),
        (row.left_low, row.left_wins, row.left_high),
    ):
        assert 0.0 <= low <= est <= high <= 100.0


def test_proportion_interval_is_wilson_and_matches_the_t_interval_on_much_data():
    from analysis.clustered import proportion_interval

    # with the naive SE it is the textbook Wilson interval: 8 of 10 -> (0.4902, 0.9433)
    p, n = 0.8, 10
    low, high = proportion_interval(p, math.sqrt(p * (1 - p) / n), n, 1.959964)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    # many answers: the same as p +- z * se
    low, high = proportion_interval(0.6, 0.01, 100_000, 1.96)
    assert (low, high) == pytest.approx((0.6 - 0.0196, 0.6 + 0.0196), abs=5e-4)
    assert proportion_interval(1.0, 0.0, 5, 1.96)[1] == 1.0


def test_report_all_chooses_among_references_as_table1_does(tmp_path):
    """A store with FIDs against two references (as a batch over several references makes)
    could be reported only by `report table1`: `report all` had no way to choose one."""
    from click.testing import CliRunner

    from hvqeval.cli import cli

    other = [{**r, "reference": "imagenet:train"} for r in PAPER_ROWS if r["metric"] == "fid"]
    results = _results_file(tmp_path, PAPER_ROWS + other)
    mixed = CliRunner().invoke(cli, ["report", "all", "--results", str(results)])
    assert mixed.exit_code == 1 and "--reference" in mixed.output
    chosen = CliRunner().invoke(
        cli, ["report", "all", "--results", str(results), "--reference", "imagenet:val"]
    )
    assert chosen.exit_code == 0, chosen.output
    assert "| Feed-forward | 18.10 ± 0.96 | 44.95 | 3.343 bits/dim |" in chosen.output
