"""Turn analysis tables into report sections (display columns, notes, figures).

One builder per report: Table 1 (IS/FID/NLL), Table 2 (ratings), Table 3 (preferences per
study), Table 5 (per class), agreement, rater quality and Bradley-Terry strengths. The numeric
tables come from the analysis modules; here they are only selected, rounded and labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import plots
from analysis.agreement import agreement_table
from analysis.bradley_terry import bradley_terry
from analysis.clustered import interval_label
from analysis.preferences import preference_table
from analysis.quality import FLAGS, QualityRules, rater_quality
from analysis.ratings import rating_distribution, rating_table
from analysis.report import (
    Figure,
    Section,
    fmt,
    fmt_int,
    fmt_interval,
    fmt_p,
    fmt_pct,
    fmt_pm,
    round_to_total,
)
from analysis.results import table1


@dataclass(frozen=True)
class StatOptions:
    """Which beyond-the-paper statistics to compute and show."""

    interval: str = "cluster"  # "cluster" | "bootstrap"
    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95
    alternative: str = "greater"
    intervals: bool = False  # show clustered intervals
    test: bool = False  # show the A > B test (Holm in Table 5)
    position_bias: bool = False
    agreement: bool = False
    figures: bool = False  # HTML only

    def label(self, factors: list[str]) -> str:
        level = f"{100 * self.confidence:g}%"
        return f"{level} {interval_label(self.interval, factors, self.n_boot)}"


def table1_section(
    results: pd.DataFrame,
    models=None,
    feature_extractor=None,
    reference=None,
    n=None,
    allow_mixed=False,
) -> Section:
    table, notes = table1(results, models, feature_extractor, reference, n, allow_mixed)
    mixed = {
        key
        for key, metric in (("is", "isc"), ("fid", "fid"), ("nll", "nll_bpd"))
        if any(note.startswith(f"MIXED {metric} column") for note in notes)
    }
    mark = lambda key: " †" if key in mixed else ""
    display = pd.DataFrame(
        {
            "Model": table["model"],
            "IS": [
                fmt_pm(m, s, 2) + (mark("is") if pd.notna(m) else "")
                for m, s in zip(table["is_mean"], table["is_std"])
            ],
            "FID": [fmt(v, 2) + (mark("fid") if pd.notna(v) else "") for v in table["fid"]],
            "Joint NLL": [
                f"{fmt(v, 3)} bits/dim" + (" (exact)" if kind == "exact" else "")
                if pd.notna(v)
                else "–"
                for v, kind in zip(table["nll_bpd"], table["nll_kind"])
            ],
        }
    )
    settings = []
    for key, name in (("is", "IS"), ("fid", "FID"), ("nll", "NLL")):
        used = sorted({s for s in table[f"{key}_setting"] if s})
        if len(used) == 1:
            settings.append(f"{name}: {used[0]}")
    if (table["nll_kind"] == "exact").any():
        settings.append(
            "NLL marked (exact): a single-level PixelCNN on pixels, whose likelihood is exact; "
            "the other NLLs are joint bounds over pixels and codes (Appendix F)"
        )
    notes_out = settings + [n.replace("MIXED", "† mixed") for n in notes]
    return Section("Table 1: IS, FID and joint NLL", table, display, tuple(notes_out))


def table2_sections(
    responses: pd.DataFrame, opts: StatOptions, by_class: bool = False
) -> list[Section]:
    factors = ["images (within class)", "raters"]
    out = []
    variants = [(False, "Table 2: realism ratings (1-5), mean ± standard error")]
    if by_class:
        variants.append((True, "Table 2 by class: realism ratings per class"))
    for per_class, title in variants:
        table = rating_table(
            responses, per_class, opts.interval, opts.confidence, opts.n_boot, opts.seed
        )
        display = pd.DataFrame(
            {
                **({"Study": table["study"]} if table["study"].nunique() > 1 else {}),
                **({"Class": table["class_name"]} if per_class else {}),
                "Model": table["model"],
                "Average rating": [fmt_pm(m, s, 3) for m, s in zip(table["mean"], table["se"])],
            }
        )
        if opts.intervals:
            se_label = "Clustered SE" if opts.interval == "cluster" else "Bootstrap SE"
            display[se_label] = [fmt(v, 3) for v in table["se_clustered"]]
            display[f"{100 * opts.confidence:g}% interval"] = [
                fmt_interval(lo, hi, 3) for lo, hi in zip(table["ci_low"], table["ci_high"])
            ]
        for column, source in (
            ("Answers", "n_answers"),
            ("Images", "n_images"),
            ("Raters", "n_raters"),
            ("Unusable", "n_unusable"),
        ):
            display[column] = table[source].map(fmt_int)
        notes = ["± is the naive standard error sd/√n over answers (as in the paper)."]
        if opts.intervals:
            notes.append(f"Interval: {opts.label(factors)}.")
        figures = ()
        if opts.figures and not per_class:
            png = plots.rating_distributions(rating_distribution(responses))
            figures = (Figure("Rating distributions per model", png),) if png else ()
        out.append(Section(title, table, display, tuple(notes), figures))
    return out


def _preference_display(table: pd.DataFrame, opts: StatOptions, per_class: bool) -> pd.DataFrame:
    rounded = [round_to_total(r) for r in table[["pct_a", "pct_b", "pct_unknown"]].to_numpy()]
    display = pd.DataFrame(index=table.index)
    if per_class:
        display["Class"] = table["class_name"]
    else:
        if table["study"].nunique() > 1:
            display["Study"] = table["study"]
        display["Model A"] = table["model_a"]
        display["Model B"] = table["model_b"]
    display["A"] = [fmt_pct(r[0]) for r in rounded]
    display["B"] = [fmt_pct(r[1]) for r in rounded]
    display["Unknown"] = [fmt_pct(r[2]) for r in rounded]
    if opts.intervals:
        display[f"A {100 * opts.confidence:g}% interval"] = [
            fmt_interval(lo, hi, 2) for lo, hi in zip(table["pct_a_low"], table["pct_a_high"])
        ]
    if opts.test:
        display["p (A > B)" if opts.alternative == "greater" else "p (A ≠ B)"] = table[
            "p_value"
        ].map(fmt_p)
        if per_class:
            display["p Holm"] = table["p_holm"].map(fmt_p)
    if opts.position_bias:
        display["Left wins"] = table["left_wins"].map(fmt_pct)
        display["Left interval"] = [
            fmt_interval(lo, hi, 2) for lo, hi in zip(table["left_low"], table["left_high"])
        ]
        display["p (left = 50%)"] = table["p_left"].map(fmt_p)
    if not per_class:
        display["All agree"] = table["all_agree"].map(fmt_pct)
        display["Unusable"] = table["n_unusable"].map(fmt_int)
        display["Answers"] = table["n_answers"].map(fmt_int)
        display["Pairs"] = table["n_items"].map(fmt_int)
    return display.reset_index(drop=True)


def _test_notes(opts: StatOptions, per_class: bool) -> list[str]:
    notes = ["Percentages count unusable answers in the denominator; each row adds up to 100%."]
    factors = ["sample A", "sample B", "raters"]
    if opts.intervals or opts.position_bias:
        notes.append(f"Intervals: {opts.label(factors)}.")
    if opts.test:
        side = (
            "one-sided (A preferred more often than B, i.e. by more than half of the usable answers)"
            if opts.alternative == "greater"
            else "two-sided (A and B preferred equally often)"
        )
        reference = (
            "Student's t on G-1 degrees of freedom (G: the fewest clusters)"
            if opts.interval == "cluster"
            else "the normal distribution"
        )
        notes.append(
            f"Test: z = (A% - B%) / clustered SE, compared with {reference}, {side}; the SE clusters answers by sample A, sample B "
            f"and rater ({'multiway cluster-robust' if opts.interval == 'cluster' else 'pigeonhole bootstrap'}), so the 3 answers on a pair and the pairs sharing a sample "
            "are not counted as independent."
            + (" Holm correction across the classes of a study." if per_class else "")
        )
    return notes


def table3_section(responses: pd.DataFrame, opts: StatOptions) -> Section:
    table = preference_table(
        responses, False, opts.interval, opts.confidence, opts.n_boot, opts.seed, opts.alternative
    )
    notes = _test_notes(opts, False) + [
        "All agree: % of pairs whose answers are all usable and identical; Unusable: answers marked unknown."
    ]
    if opts.agreement:
        kappa = agreement_table(responses[responses["kind"] == "pairwise"])
        notes += [
            f"{r.study}: Fleiss' κ = {fmt(r.value, 3)} over {r.n_items} pairs."
            for r in kappa.itertuples()
        ]
    return Section(
        "Table 3: pairwise preference", table, _preference_display(table, opts, False), tuple(notes)
    )


def table5_sections(responses: pd.DataFrame, opts: StatOptions) -> list[Section]:
    table = preference_table(
        responses, True, opts.interval, opts.confidence, opts.n_boot, opts.seed, opts.alternative
    )
    if table.empty:
        return [
            Section(
                "Table 5: preference per class",
                table,
                _preference_display(table, opts, True),
                tuple(_test_notes(opts, True)),
            )
        ]
    sections = []
    for (study, a, b), part in table.groupby(["study", "model_a", "model_b"], sort=False):
        part = part.reset_index(drop=True)
        display = _preference_display(part, opts, True)
        # The paper's layout (Table 5): class, then B's column (feed-forward), then A's (MSP).
        order = ["Class", "B", "A"] + [c for c in display.columns if c not in ("Class", "B", "A")]
        display = display[order].rename(columns={"A": f"{a} (A)", "B": f"{b} (B)"})
        figures = ()
        if opts.figures:
            png = plots.preference_bars(part, a, b, opts.label(["sample A", "sample B", "raters"]))
            figures = (Figure(f"{study}: % preferring {a} per class", png),) if png else ()
        sections.append(
            Section(
                f"Table 5: {study} — preference per class, {b} vs {a}, sorted by {b}'s share",
                part,
                display,
                tuple(_test_notes(opts, True)),
                figures,
            )
        )
    return sections


def agreement_section(responses: pd.DataFrame, opts: StatOptions) -> Section:
    table = agreement_table(responses)
    display = pd.DataFrame(
        {
            "Study": table["study"],
            "Kind": table["kind"],
            "Measure": table["measure"].map(
                {
                    "fleiss_kappa": "Fleiss' κ",
                    "krippendorff_alpha_ordinal": "Krippendorff's α (ordinal)",
                }
            ),
            "Value": table["value"].map(lambda v: fmt(v, 3)),
            "Items": table["n_items"].map(fmt_int),
            "Answers": table["n_answers"].map(fmt_int),
            "All agree": table["all_agree"].map(fmt_pct),
        }
    )
    notes = (
        "Fleiss' κ uses the pairs with the usual number of usable answers; Krippendorff's α uses every "
        "item with at least two usable ratings.",
    )
    figures = ()
    if opts.figures:
        png = plots.agreement_bars(table)
        figures = (Figure("Agreement", png),) if png else ()
    return Section("Agreement", table, display, notes, figures)


def quality_section(
    responses: pd.DataFrame, rules: QualityRules, only_flagged: bool = False
) -> Section:
    table = rater_quality(responses, rules)
    shown = table[table["flags"] != ""] if only_flagged else table
    display = pd.DataFrame(
        {
            "Rater": shown["rater"],
            "Answers": shown["n_answers"].map(fmt_int),
            "Median ms": shown["median_ms"].map(lambda v: fmt(v, 0)),
            "Same rating": shown["rating_modal_share"].map(
                lambda v: fmt_pct(100 * v, 1) if pd.notna(v) else "–"
            ),
            "Same side": shown["side_modal_share"].map(
                lambda v: fmt_pct(100 * v, 1) if pd.notna(v) else "–"
            ),
            "Real items failed": shown["real_failed_share"].map(
                lambda v: fmt_pct(100 * v, 1) if pd.notna(v) else "–"
            ),
            "Flags": shown["flags"].replace("", "–"),
        }
    ).reset_index(drop=True)
    counts = ", ".join(f"{f.replace('_', '-')}: {int(table[f].sum())}" for f in FLAGS)
    real = ", ".join(rules.real_models) if rules.real_models else None
    notes = (
        f"Flagged raters: {counts} of {len(table)}.",
        f"Rules: fast = median response < {rules.fast_ms:g} ms; straight-lining = one rating for all or one "
        f"side for ≥ {100 * rules.side_share:g}% of ≥ {rules.min_answers} answers; failed-real = "
        + (
            f"picked the generated image in ≥ {100 * rules.real_fail_share:g}% of ≥ {rules.real_min_items} "
            f"items against {real}, or rated {real} no higher than generated images"
            if real
            else "not checked (name the real-image model with --real-model)"
        )
        + ".",
    )
    return Section("Rater quality", table, display, notes)


def strengths_section(
    responses: pd.DataFrame, opts: StatOptions, reference: str | None = None
) -> Section:
    table = bradley_terry(responses, reference, opts.n_boot, opts.seed, opts.confidence)
    display = pd.DataFrame(
        {
            "Model": table["model"],
            "Strength": table["strength"].map(lambda v: fmt(v, 3)),
            f"{100 * opts.confidence:g}% interval": [
                fmt_interval(lo, hi, 3) for lo, hi in zip(table["ci_low"], table["ci_high"])
            ],
            "P(beats reference)": table["p_beats_reference"].map(lambda v: fmt_pct(100 * v, 1)),
            "Answers": table["n_answers"].map(fmt_int),
            "Wins": table["n_wins"].map(fmt_int),
        }
    )
    ref = table.loc[table["strength"] == 0, "model"].iloc[0] if len(table) else "–"
    notes = (
        f"Bradley–Terry log-odds strengths from all pairwise studies, reference {ref} = 0; interval: "
        f"{100 * opts.confidence:g}% pigeonhole cluster bootstrap percentile interval over images "
        f"(within class) and raters, B={opts.n_boot} (conservative).",
    )
    figures = ()
    if opts.figures:
        png = plots.strengths(table)
        figures = (Figure("Bradley–Terry strengths", png),) if png else ()
    return Section("Bradley–Terry strengths", table, display, notes, figures)


def curves_section(
    results: pd.DataFrame | None = None,
    logs: dict[str, pd.DataFrame] | None = None,
    metrics: tuple[str, ...] = ("fid", "isc"),
) -> Section:
    """Temperature curves (``hvqeval sweep`` rows) and training curves (runs' logs) as figures.

    ``results``: ``analysis.results.load_results``; ``logs``: run label ->
    ``analysis.curves.training_log``. Either may be missing; the table lists the sweep points.
    """
    from analysis.curves import sweep_points
    from analysis.errors import ResultsError

    figures, notes = [], []
    points = pd.DataFrame(columns=["model", "temperature", "metric", "value", "std", "n"])
    if results is not None:
        try:
            points = sweep_points(results, list(metrics))
        except ResultsError as err:
            notes.append(str(err))
        else:
            fig = plots.temperature_curve(points, metrics)
            figures.append(Figure("Sample quality against temperature", plots.encode_png(fig)))
    if logs:
        fig = plots.training_curves(logs)
        title = "Training curves: loss, bits/dim and codebook use"
        figures.append(Figure(title, plots.encode_png(fig)))
    display = pd.DataFrame(
        {
            "Model": points["model"],
            "Temperature": [fmt(t, 3) for t in points["temperature"]],
            "Metric": points["metric"],
            "Value": [
                fmt_pm(v, s, 3) if pd.notna(s) else fmt(v, 3)
                for v, s in zip(points["value"], points["std"])
            ],
        }
    )
    return Section("Temperature and training curves", points, display, tuple(notes), tuple(figures))
