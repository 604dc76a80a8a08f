"""Table 2: average realism rating (1-5) per model with its standard error (paper Section 7.3).

:func:`rating_table` returns one row per group (default: per study and model) with columns

============== ================================================================
study, model   group keys (plus ``class_name`` for the per-class breakdown)
mean           average rating over usable answers
se             naive standard error ``sd / sqrt(n)`` (what the paper reports)
se_clustered   standard error that accounts for repeated images and raters
ci_low/ci_high interval at ``confidence`` (type named by ``interval``)
n_answers      usable ratings
n_unusable     "can't answer" escapes (not in the mean)
n_images       distinct images rated
n_raters       distinct raters
============== ================================================================

sorted high to low by ``mean`` (within class for the breakdown), like Table 2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.clustered import bootstrap_mean, clustered_mean

RATING_COLUMNS = [
    "mean",
    "se",
    "se_clustered",
    "ci_low",
    "ci_high",
    "n_answers",
    "n_unusable",
    "n_images",
    "n_raters",
]


def rating_table(
    responses: pd.DataFrame,
    by_class: bool = False,
    interval: str = "cluster",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Table 2 (``by_class=False``) or its per-class breakdown from validated responses."""
    keys = ["study", "class_name", "model"] if by_class else ["study", "model"]
    ratings = responses[responses["kind"] == "rating"].rename(columns={"model_a": "model"})
    rows = []
    for group_index, (key, group) in enumerate(ratings.groupby(keys, sort=True)):
        usable = group[group["usable"]]
        factors = usable[["image_a", "rater"]].rename(columns={"image_a": "image"})
        y = usable["rating"].to_numpy()
        if interval == "bootstrap":
            est = bootstrap_mean(
                y, factors, {"image": usable["class_name"]}, n_boot, seed + group_index, confidence
            )
        else:
            est = clustered_mean(y, factors, confidence)
        rows.append(
            {
                **dict(zip(keys, key)),
                "mean": est.mean,
                "se": est.se_naive,
                "se_clustered": est.se,
                "ci_low": est.ci_low,
                "ci_high": est.ci_high,
                "n_answers": len(usable),
                "n_unusable": int((~group["usable"]).sum()),
                "n_images": usable["image_a"].nunique(),
                "n_raters": usable["rater"].nunique(),
            }
        )
    table = pd.DataFrame(rows, columns=keys + RATING_COLUMNS)
    sort_keys = keys[:-1] + ["mean"]
    ascending = [True] * (len(sort_keys) - 1) + [False]
    return table.sort_values(sort_keys, ascending=ascending, kind="stable").reset_index(drop=True)


def rating_distribution(responses: pd.DataFrame) -> pd.DataFrame:
    """Share of each rating 1-5 per (study, model): columns study, model, rating, count, share."""
    ratings = responses[(responses["kind"] == "rating") & responses["usable"]]
    if ratings.empty:
        return pd.DataFrame(columns=["study", "model", "rating", "count", "share"])
    counts = pd.crosstab(
        [ratings["study"], ratings["model_a"]], ratings["rating"]
    )  # (groups, ratings seen)
    counts = counts.reindex(columns=np.arange(1.0, 6.0), fill_value=0)
    long = counts.stack().rename("count").reset_index()
    long.columns = ["study", "model", "rating", "count"]
    long["share"] = long["count"] / long.groupby(["study", "model"])["count"].transform("sum")
    return long
