"""Figures (matplotlib): for the HTML report as base64-encoded PNG, and for `hvqeval plot`.

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
        ax.bar(
            part["rating"] + (k - (len(keys) - 1) / 2) * width,
            100 * part["share"],
            width,
            label=label,
        )
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
    ax.errorbar(
        part["pct_a"],
        y,
        xerr=[part["pct_a"] - part["pct_a_low"], part["pct_a_high"] - part["pct_a"]],
        fmt="none",
        ecolor="black",
        capsize=2,
        lw=1,
    )
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
    ax.barh(
        y + 0.2, agreement["all_agree"].fillna(0) / 100, 0.4, label="all raters agreed (fraction)"
    )
    ax.set_yticks(
        y,
        [f"{s} ({m.split('_')[0]})" for s, m in zip(agreement["study"], agreement["measure"])],
        fontsize="small",
    )
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
    ax.errorbar(
        part["strength"],
        y,
        xerr=[part["strength"] - part["ci_low"], part["ci_high"] - part["strength"]],
        fmt="o",
        capsize=3,
    )
    ax.set_yticks(y, part["model"])
    ax.axvline(0, color="grey", ls="--", lw=1)
    ax.set_xlabel("Bradley-Terry strength (log-odds vs reference)")
    return _encode(fig)


# --------------------------------------------------------------------------------------
# Figures from results and training logs (``hvqeval plot``; the demo report embeds them).
# Built on ``matplotlib.figure.Figure`` directly, so no pyplot state is touched; the data
# come from ``analysis.curves`` and each plotted line carries its series label.

METRIC_LABELS = {
    "fid": "FID (lower is better)",
    "isc": "Inception Score (higher is better)",
    "kid": "KID",
    "nll_bpd": "NLL (bits/dim)",
}
LOG_PANELS = (
    ("loss", "training loss"),
    ("bpd", "bits/dim (autoregressive term)"),
    ("usage", "codebook use (fraction of codes)"),
)


def _figure(panels: int, width: float = 4.2, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def encode_png(fig) -> str:
    """A ``Figure`` as a base64 PNG for the HTML report."""
    return _encode(fig)


def save_figure(fig, path) -> None:
    """Write ``fig`` as PNG or SVG (by the suffix) atomically: a stopped write leaves no file."""
    import os
    from pathlib import Path

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        from analysis.errors import AnalysisError

        raise AnalysisError(f"figure file {path} must end in .png or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=fmt, dpi=150)
    os.replace(tmp, path)


def temperature_curve(points: pd.DataFrame, metrics: tuple[str, ...] = ("fid", "isc")):
    """FID / IS against the sampling temperature, one panel per metric, one line per model.

    ``points``: :func:`analysis.curves.sweep_points`. IS carries its std over splits as bars.
    """
    present = [m for m in metrics if m in set(points["metric"])]
    if not present:
        from analysis.errors import ResultsError

        raise ResultsError(f"no sweep rows of {', '.join(metrics)} to plot")
    fig, axes = _figure(len(present))
    multi = points.groupby("model")["sweep"].nunique().to_dict()
    for ax, metric in zip(axes, present):
        part = points[points["metric"] == metric]
        for (model, sweep), series in part.groupby(["model", "sweep"], sort=False):
            label = f"{model} [{sweep[:6]}]" if multi.get(model, 1) > 1 else str(model)
            (line,) = ax.plot(series["temperature"], series["value"], "o-", label=label)
            if series["std"].notna().any():
                ax.errorbar(
                    series["temperature"],
                    series["value"],
                    yerr=series["std"].fillna(0),
                    fmt="none",
                    ecolor=line.get_color(),
                    capsize=3,
                )
        ax.set_xlabel("sampling temperature")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Sample quality against temperature", fontsize="medium")
    return fig


def training_curves(logs: dict[str, pd.DataFrame]):
    """Loss, bits/dim and codebook use against step, one line per (run, stage).

    ``logs``: run label -> :func:`analysis.curves.training_log`. Panels without data are left out.
    """
    panels = [
        (key, label)
        for key, label in LOG_PANELS
        if any(key in log.columns and log[key].notna().any() for log in logs.values())
    ]
    if not panels:
        from analysis.errors import ResultsError

        raise ResultsError("the training logs hold none of " + ", ".join(k for k, _ in LOG_PANELS))
    fig, axes = _figure(len(panels))
    for ax, (key, label) in zip(axes, panels):
        for run, log in logs.items():
            if key not in log.columns:
                continue
            for stage, series in log.groupby("stage", sort=False):
                series = series[series[key].notna()]
                if len(series):
                    name = f"{run} {stage}" if len(logs) > 1 else str(stage)
                    ax.plot(series["step"], series[key], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Training curves", fontsize="medium")
    return fig


def predictability_curve(points: pd.DataFrame):
    """Figure 5: validation NLL of a small prior on the codes against the auxiliary decoder.

    Left: against decoder layers (feed-forward red circles, MSP blue squares at the most common
    mask size); right (when MSP points exist): MSP against mask size at the most common depth.
    ``points``: :func:`analysis.curves.predictability_points`.
    """
    msp = points[points["kind"] == "msp"]
    fig, axes = _figure(2 if len(msp) else 1)
    left = axes[0]
    mask = msp["mask_size"].mode().iloc[0] if len(msp) else None
    msp_label = f"MSP {mask:g}x{mask:g}" if mask is not None else "MSP"
    for kind, style, label in (("feedforward", "o-", "feed-forward"), ("msp", "s-", msp_label)):
        series = points[points["kind"] == kind]
        if kind == "msp":
            series = series[series["mask_size"] == mask]
        if len(series):
            color = "tab:red" if kind == "feedforward" else "tab:blue"
            left.plot(series["layers"], series["value"], style, color=color, label=label)
            left.errorbar(
                series["layers"],
                series["value"],
                yerr=series["std"].fillna(0),
                fmt="none",
                ecolor=color,
                capsize=3,
            )
    left.set_xlabel("auxiliary decoder layers")
    left.set_ylabel("NLL (bits/dim)")
    left.legend(fontsize="small")
    left.grid(alpha=0.3)
    if len(msp):
        right = axes[1]
        depth = msp["layers"].mode().iloc[0]
        series = msp[msp["layers"] == depth]
        right.plot(
            series["mask_size"],
            series["value"],
            "^-",
            color="tab:orange",
            label=f"MSP, {depth:g} layers",
        )
        right.errorbar(
            series["mask_size"],
            series["value"],
            yerr=series["std"].fillna(0),
            fmt="none",
            ecolor="tab:orange",
            capsize=3,
        )
        right.set_xlabel("mask size")
        right.set_ylabel("NLL (bits/dim)")
        right.legend(fontsize="small")
        right.grid(alpha=0.3)
    fig.suptitle("Code predictability (Figure 5)", fontsize="medium")
    return fig
