"""Tables 3 and 5: pairwise preferences (paper Section 7.3 and Appendix G), with tests.

Percentages count unusable ("unknown") answers in the denominator, so ``pct_a + pct_b +
pct_unknown = 100`` exactly as in the paper's Table 3. :func:`preference_table` returns one row
per (study, model_a, model_b) -- or per class as well for Table 5 -- with columns

=================== ===========================================================
pct_a, pct_b        % of all answers preferring A / B
pct_unknown         % of unusable answers
pct_a_low/high      interval for pct_a (type in the report; default multiway cluster-robust)
se_diff             clustered SE of (pct_a - pct_b) / 100
z, p_value          t test (G - 1 df; normal for bootstrap SEs) of "A is preferred more often than B" (equivalently: more than half
                    of the usable answers); ``alternative`` 'greater' or 'two-sided'
p_holm              Holm-adjusted p-value across the classes of a study (Table 5 only)
n_answers           all answers; ``n_unusable`` of them unknown
n_items             distinct pairs
all_agree           % of pairs whose answers are all usable and identical (the paper's 63.68%)
left_wins           % of usable answers choosing the image shown on the left (position bias)
left_low/high       interval for left_wins; ``p_left`` two-sided test of left_wins = 50%
=================== ===========================================================

The test uses the same clustered SE as the intervals, so the 3 answers on one pair, the ten
pairs sharing a sample and the many answers of one rater are not treated as independent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.clustered import (
    bootstrap_ratio,
    cluster_df,
    critical_value,
    multiway_variance,
    proportion_interval,
    subset_codes,
)

ALTERNATIVES = ("greater", "two-sided")
PREFERENCE_COLUMNS = [
    "pct_a",
    "pct_b",
    "pct_unknown",
    "pct_a_low",
    "pct_a_high",
    "se_diff",
    "z",
    "p_value",
    "n_answers",
    "n_unusable",
    "n_items",
    "all_agree",
    "left_wins",
    "left_low",
    "left_high",
    "p_left",
]


def all_agree_share(answers: pd.DataFrame) -> float:
    """% of items (with >= 2 answers) whose answers are all usable and identical."""
    per_item = answers.groupby(["study", "item"]).agg(
        n=("choice", "size"), usable=("usable", "all"), distinct=("choice", "nunique")
    )
    per_item = per_item[per_item["n"] >= 2]
    if per_item.empty:
        return float("nan")
    return 100.0 * float((per_item["usable"] & (per_item["distinct"] == 1)).mean())


def _p_value(z: float, alternative: str, df: float) -> float:
    """p-value of a t statistic (``df = inf``: normal, used with bootstrap SEs)."""
    if not np.isfinite(z):
        return float("nan")
    return (
        float(stats.t.sf(z, df)) if alternative == "greater" else float(2 * stats.t.sf(abs(z), df))
    )


def _summarise(
    group: pd.DataFrame, interval: str, confidence: float, n_boot: int, seed: int, alternative: str
) -> dict:
    n = len(group)
    chose_a = (group["choice"] == "a").to_numpy(float)
    chose_b = (group["choice"] == "b").to_numpy(float)
    factors = group[["image_a", "image_b", "rater"]]
    usable = group["usable"].to_numpy()
    left_won = (group["choice"] == group["left"]).to_numpy(float)[usable]
    pct_a, pct_b = 100 * chose_a.mean(), 100 * chose_b.mean()
    left = 100 * left_won.mean() if left_won.size else float("nan")
    if interval == "bootstrap":
        strata = {"image_a": group["class_name"], "image_b": group["class_name"]}
        reps = bootstrap_ratio(
            np.column_stack([chose_a, chose_a - chose_b]), np.ones(n), factors, strata, n_boot, seed
        )
        alpha = 1 - confidence
        a_low, a_high = 100 * np.nanquantile(reps[:, 0], [alpha / 2, 1 - alpha / 2])
        se_diff = float(np.nanstd(reps[:, 1], ddof=1))
        left_reps = bootstrap_ratio(
            left_won,
            np.ones(left_won.size),
            factors[usable],
            {k: v[usable] for k, v in strata.items()},
            n_boot,
            seed + 1,
        )[:, 0]
        l_low, l_high = 100 * np.nanquantile(left_reps, [alpha / 2, 1 - alpha / 2])
        se_left = float(np.nanstd(left_reps, ddof=1))
        df = df_left = np.inf
    else:
        codes = subset_codes(factors)
        df = cluster_df(codes)
        z_crit = critical_value(confidence, df)
        se_a = np.sqrt(multiway_variance(chose_a, codes))
        # Wilson at the clustered effective n: within 0-100% however small the study
        a_low, a_high = (100 * v for v in proportion_interval(pct_a / 100, se_a, n, z_crit))
        se_diff = float(np.sqrt(multiway_variance(chose_a - chose_b, codes)))
        left_codes = subset_codes(factors[usable]) if left_won.size else []
        df_left = cluster_df(left_codes) if left_won.size else 1
        se_left = (
            float(np.sqrt(multiway_variance(left_won, left_codes)))
            if left_won.size
            else float("nan")
        )
        z_left_crit = critical_value(confidence, df_left)
        l_low, l_high = (
            100 * v for v in proportion_interval(left / 100, se_left, left_won.size, z_left_crit)
        )
    diff = chose_a.mean() - chose_b.mean()
    z = diff / se_diff if se_diff > 0 else float("nan")
    z_left = (left / 100 - 0.5) / se_left if se_left > 0 else float("nan")
    return {
        "pct_a": pct_a,
        "pct_b": pct_b,
        "pct_unknown": 100 * (1 - usable.mean()),
        "pct_a_low": float(a_low),
        "pct_a_high": float(a_high),
        "se_diff": se_diff,
        "z": z,
        "p_value": _p_value(z, alternative, df),
        "n_answers": n,
        "n_unusable": int((~usable).sum()),
        "n_items": group["item"].nunique(),
        "all_agree": all_agree_share(group),
        "left_wins": left,
        "left_low": float(l_low),
        "left_high": float(l_high),
        "p_left": _p_value(z_left, "two-sided", df_left),
    }


def preference_table(
    responses: pd.DataFrame,
    by_class: bool = False,
    interval: str = "cluster",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    alternative: str = "greater",
) -> pd.DataFrame:
    """Table 3 (``by_class=False``, in order of appearance) or Table 5 (per class).

    Table 5's rows are sorted as in the paper (Appendix G): by B's share ascending within each
    study. The paper's study has A = MSP and B = feed-forward (its Table 3 row), and its Table 5
    lists the feed-forward column first, rising from 36.24% to 59.93%; the report layer puts
    B's column first.
    """
    keys = ["study", "model_a", "model_b"] + (["class_name"] if by_class else [])
    pairs = responses[responses["kind"] == "pairwise"]
    rows = [
        {
            **dict(zip(keys, key)),
            **_summarise(group, interval, confidence, n_boot, seed + i, alternative),
        }
        for i, (key, group) in enumerate(pairs.groupby(keys, sort=False))
    ]
    columns = keys + PREFERENCE_COLUMNS + (["p_holm"] if by_class else [])
    table = pd.DataFrame(rows, columns=columns)
    if by_class and len(table):
        table["p_holm"] = np.nan
        for _, index in table.groupby(["study", "model_a", "model_b"], sort=False).groups.items():
            p = table.loc[index, "p_value"]
            ok = p.notna()
            if ok.any():
                table.loc[p[ok].index, "p_holm"] = multipletests(p[ok].to_numpy(), method="holm")[1]
        order = table.groupby(["study", "model_a", "model_b"], sort=False).ngroup()
        table = (
            table.assign(_order=order)
            .sort_values(["_order", "pct_b"], ascending=[True, True], kind="stable")
            .drop(columns="_order")
        )
    return table.reset_index(drop=True)
