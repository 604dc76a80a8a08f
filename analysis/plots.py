"""Figures for the HTML report (matplotlib, Agg backend), returned as base64-encoded PNG.

- rating distributions per model (Table 2's data, Section 7.3),
- per-class preference bars with intervals (Table 5, Appendix G),
- agreement coefficients next to the all-agree fraction,
- Bradley-Terry strengths with bootstrap intervals.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _encode(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def rating_distributions(distribution: pd.DataFrame) -> str | None:
    """Grouped bars: share of each rating 1-5 per (study, model)."""
    if distribution.empty:
        return None
    plt = _pyplot()
    keys = list(dict.fromkeys(zip(distribution["study"], distribution["model"])))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(keys)
    for k, (study, model) in enumerate(keys):
        part = distribution[(distribution["study"] == study) & (distribution["model"] == model)]
        label = model if distribution["study"].nunique() == 1 else f"{study}: {model}"
        ax.bar(part["rating"] + (k - (len(keys) - 1) / 2) * width, 100 * part["share"], width, label=label)
    ax.set_xlabel("realism rating")
    ax.set_ylabel("% of answers")
    ax.set_xticks([1, 2, 3, 4, 5])
    ax.legend(fontsize="small")
    ax.set_title("Rating distributions per model")
    return _encode(fig)


def preference_bars(table5: pd.DataFrame, model_a: str, model_b: str, interval: str) -> str | None:
    """Horizontal bars of A's share per class with interval whiskers and the 50% line."""
    if table5.empty:
        return None
    plt = _pyplot()
    part = table5.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(part) + 1.2))
    y = np.arange(len(part))
    ax.barh(y, part["pct_a"], color="#4c72b0")
    ax.errorbar(part["pct_a"], y, xerr=[part["pct_a"] - part["pct_a_low"], part["pct_a_high"] - part["pct_a"]],
                fmt="none", ecolor="black", capsize=2, lw=1)
    ax.axvline(50, color="grey", ls="--", lw=1)
    ax.set_yticks(y, part["class_name"], fontsize="small")
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of answers preferring {model_a} over {model_b}")
    ax.set_title(f"Per-class preference ({interval})", fontsize="small")
    return _encode(fig)


def agreement_bars(agreement: pd.DataFrame) -> str | None:
    if agreement.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(agreement) + 1.2))
    y = np.arange(len(agreement))
    ax.barh(y - 0.2, agreement["value"].fillna(0), 0.4, label="kappa / alpha")
    ax.barh(y + 0.2, agreement["all_agree"].fillna(0) / 100, 0.4, label="all raters agreed (fraction)")
    ax.set_yticks(y, [f"{s} ({m.split('_')[0]})" for s, m in zip(agreement["study"], agreement["measure"])],
                  fontsize="small")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(min(-0.1, float(agreement["value"].min(skipna=True) or 0) - 0.05), 1)
    ax.legend(fontsize="small")
    ax.set_title("Inter-rater agreement")
    return _encode(fig)


def strengths(bt: pd.DataFrame) -> str | None:
    if bt.empty:
        return None
    plt = _pyplot()
    part = bt.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(part) + 1.2))
    y = np.arange(len(part))
    ax.errorbar(part["strength"], y, xerr=[part["strength"] - part["ci_low"], part["ci_high"] - part["strength"]],
                fmt="o", capsize=3)
    ax.set_yticks(y, part["model"])
    ax.axvline(0, color="grey", ls="--", lw=1)
    ax.set_xlabel("Bradley-Terry strength (log-odds vs reference)")
    return _encode(fig)
