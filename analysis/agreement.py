"""Inter-rater agreement (beyond the paper, next to Appendix G's all-raters-agreed fraction).

:func:`agreement_table` returns one row per study with columns

================ ============================================================
study, kind      the study and its kind
measure          ``fleiss_kappa`` (pairwise a/b answers; statsmodels) or
                 ``krippendorff_alpha_ordinal`` (1-5 ratings; ``krippendorff``)
value            the coefficient (NaN when too little data)
n_items          items that entered the coefficient
n_answers        answers that entered it
all_agree        % of items (>= 2 answers) whose answers are all usable and identical
================ ============================================================

Fleiss' kappa needs the same number of answers per item: it uses the items with the most
common number of usable answers (normally all of them, 3 each) and says how many it used.
Krippendorff's alpha handles missing answers, so every usable rating enters it.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import fleiss_kappa

from analysis.preferences import all_agree_share

AGREEMENT_COLUMNS = ["study", "kind", "measure", "value", "n_items", "n_answers", "all_agree"]


def pairwise_kappa(answers: pd.DataFrame) -> tuple[float, int, int]:
    """Fleiss' kappa over a/b answers; returns (kappa, items used, answers used)."""
    usable = answers[answers["usable"]]
    counts = pd.crosstab(usable["item"], usable["choice"]).reindex(columns=["a", "b"], fill_value=0)
    if counts.empty:
        return float("nan"), 0, 0
    per_item = counts.sum(axis=1)
    k = int(per_item.mode().max())
    table = counts[per_item == k].to_numpy()
    if k < 2 or len(table) < 2:
        return float("nan"), len(table), int(table.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(fleiss_kappa(table, method="fleiss"))
    return value, len(table), int(table.sum())


def ordinal_alpha(answers: pd.DataFrame) -> tuple[float, int, int]:
    """Krippendorff's alpha (ordinal, values 1-5) over usable ratings; (alpha, items, answers)."""
    usable = answers[answers["usable"]]
    matrix = usable.pivot(index="rater", columns="item", values="rating")  # (raters, items)
    matrix = matrix.loc[:, matrix.notna().sum() >= 2]  # pairable items only
    n_answers = int(matrix.notna().to_numpy().sum())
    if matrix.shape[1] < 2 or np.unique(matrix.to_numpy()[~np.isnan(matrix.to_numpy())]).size < 2:
        return float("nan"), matrix.shape[1], n_answers
    value = krippendorff.alpha(
        reliability_data=matrix.to_numpy(),
        level_of_measurement="ordinal",
        value_domain=[1.0, 2.0, 3.0, 4.0, 5.0],
    )
    return float(value), matrix.shape[1], n_answers


def agreement_table(responses: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (study, kind), group in responses.groupby(["study", "kind"], sort=False):
        if kind == "pairwise":
            measure, (value, n_items, n_answers) = "fleiss_kappa", pairwise_kappa(group)
            agree = all_agree_share(group)
        else:
            measure, (value, n_items, n_answers) = (
                "krippendorff_alpha_ordinal",
                ordinal_alpha(group),
            )
            agree = all_agree_share(group.assign(choice=group["rating"].astype(str)))
        rows.append(
            {
                "study": study,
                "kind": kind,
                "measure": measure,
                "value": value,
                "n_items": n_items,
                "n_answers": n_answers,
                "all_agree": agree,
            }
        )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
