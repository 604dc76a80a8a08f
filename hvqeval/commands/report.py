"""``hvqeval report``: the paper's Tables 1, 2, 3 and 5 and the statistics it left out.

Paper Section 7.3 and Appendix G. Reads the metrics results store (Table 1) and study answers
(an export CSV from ``hvqeval study export`` or a study database), applies the explicit rater
exclusion options, and prints Markdown (default) or writes csv / latex / html (with figures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

FLAG_NAMES = {"straight-lining": "straight_lining", "fast": "fast", "failed-real": "failed_real"}


def _output_options(f):
    f = click.option(
        "--json", "as_json", is_flag=True, help="Print the unrounded tables as JSON (for scripts)."
    )(f)
    f = click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write to this file instead of standard output.",
    )(f)
    f = click.option(
        "--format",
        "fmt_name",
        type=click.Choice(["md", "csv", "latex", "html"]),
        default="md",
        show_default=True,
        help="Output format; html embeds the figures.",
    )(f)
    return f


def _response_options(f):
    options = [
        click.option(
            "--responses",
            "responses",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Study export CSV (repeatable).",
        ),
        click.option(
            "--database",
            "database_url",
            help="Study database URL (instead of or with --responses).",
        ),
        click.option(
            "--study",
            "studies",
            multiple=True,
            help="Only these studies (repeatable; needed with --database).",
        ),
        click.option(
            "--exclude-flagged",
            "exclude_flagged",
            default="",
            help="Remove raters with these flags: comma list of straight-lining, fast, failed-real, or all.",
        ),
        click.option(
            "--exclude-rater",
            "exclude_raters",
            multiple=True,
            help="Remove this rater (repeatable).",
        ),
        click.option(
            "--exclude-failed-checks",
            is_flag=True,
            help="Remove raters who passed fewer than --min-check-pass of their catch items.",
        ),
        click.option(
            "--min-check-pass",
            type=click.FloatRange(0.0, 1.0),
            default=0.75,
            show_default=True,
            help="Share of catch items a rater must pass (raters below it are listed as failed).",
        ),
        click.option(
            "--min-response-ms", type=float, help="Remove single answers faster than this."
        ),
        click.option(
            "--fast-ms",
            type=float,
            default=500.0,
            show_default=True,
            help="A rater is flagged fast when their median response time is below this.",
        ),
        click.option(
            "--real-model",
            "real_models",
            multiple=True,
            help="Model label of real images; enables the failed-real-vs-fake flag (repeatable).",
        ),
        click.option(
            "--interval",
            type=click.Choice(["cluster", "bootstrap"]),
            default="cluster",
            show_default=True,
            help="cluster: multiway cluster-robust; bootstrap: pigeonhole bootstrap over images and raters.",
        ),
        click.option(
            "--bootstrap",
            "n_boot",
            type=click.IntRange(min=1),
            default=1000,
            show_default=True,
            help="Bootstrap replicates (bootstrap intervals, Bradley-Terry).",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True
        ),
        click.option(
            "--intervals",
            is_flag=True,
            help="Show intervals that account for repeated images and raters.",
        ),
        click.option(
            "--test",
            is_flag=True,
            help="Show the clustered test of A preferred over B (Holm in Table 5).",
        ),
        click.option(
            "--alternative",
            type=click.Choice(["greater", "two-sided"]),
            default="greater",
            show_default=True,
        ),
        click.option("--position-bias", is_flag=True, help="Show how often the left image wins."),
        click.option("--agreement", is_flag=True, help="Show Fleiss' kappa next to Table 3."),
        click.option(
            "--all-stats",
            is_flag=True,
            help="All of --intervals --test --position-bias --agreement.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return _output_options(f)


def _load(params: dict):
    from dataclasses import replace

    from analysis.checks import check_results
    from analysis.errors import AnalysisError
    from analysis.quality import ExclusionRules, QualityRules, apply_exclusions
    from analysis.responses import load_all_responses, task_rows
    from analysis.sections import StatOptions

    flags_text = params["exclude_flagged"].strip()
    if flags_text == "all":
        flags = tuple(FLAG_NAMES.values())
    else:
        names = [n.strip() for n in flags_text.split(",") if n.strip()]
        unknown = [n for n in names if n not in FLAG_NAMES]
        if unknown:
            raise AnalysisError(
                f"--exclude-flagged: unknown flag {unknown[0]!r}; choose from "
                f"{', '.join(FLAG_NAMES)} or all"
            )
        flags = tuple(FLAG_NAMES[n] for n in names)
    everything = load_all_responses(
        params["responses"], _database_frames(params), params["studies"]
    )
    # catch and practice answers only tell who passed the attention checks; never a table's rows
    responses = task_rows(everything)
    checks = check_results(everything, params["min_check_pass"])
    exclude_failed = params["exclude_failed_checks"]
    if exclude_failed:
        checks.require_checks()
    quality = QualityRules(fast_ms=params["fast_ms"], real_models=tuple(params["real_models"]))
    rules = ExclusionRules(
        flags,
        tuple(params["exclude_raters"]),
        params["min_response_ms"],
        checks.failed if exclude_failed else (),
    )
    kept, summary = apply_exclusions(responses, rules, quality)
    summary = replace(summary, check_statement=checks.describe(exclude_failed))
    every = params["all_stats"]
    opts = StatOptions(
        interval=params["interval"],
        n_boot=params["n_boot"],
        seed=params["seed"],
        confidence=params["confidence"],
        alternative=params["alternative"],
        intervals=params["intervals"] or every,
        test=params["test"] or every,
        position_bias=params["position_bias"] or every,
        agreement=params["agreement"] or every,
        figures=params["fmt_name"] == "html",
    )
    return responses, kept, summary, quality, opts


def _database_frames(params: dict) -> list:
    """The answers of ``--study`` studies in ``--database``, read by the study app's export and
    handed to analysis as DataFrames (analysis never reads the database itself)."""
    from analysis.errors import ResponsesError
    from analysis.responses import responses_from_records

    if not params["database_url"]:
        return []
    if not params["studies"]:
        raise ResponsesError("--database needs --study NAME (one or more)")
    from study_app.db import open_database
    from study_app.export import export_rows

    with open_database(params["database_url"]) as engine:
        return [
            responses_from_records(export_rows(engine, name), source=f"study {name!r}")
            for name in params["studies"]
        ]


def _emit(report, params: dict, extra: dict | None = None) -> None:
    from analysis.report import render, to_json

    text = to_json(report, extra) if params["as_json"] else render(report, params["fmt_name"])
    if params.get("out"):
        params["out"].parent.mkdir(parents=True, exist_ok=True)
        params["out"].write_text(text, encoding="utf-8")
        click.echo(f"wrote {params['out']}", err=True)
    else:
        sys.stdout.write(text)


REPORT_OF_KIND = {"rating": "table2", "pairwise": "table3 or table5"}


def _study_report(title: str, build, params: dict, kind: str | None = None) -> None:
    """The report ``build`` makes of the responses; ``kind``: the answers it reports on. A study
    with no answers yet gives empty tables; answers of the other kind only are a mistake."""
    from analysis.errors import AnalysisError
    from analysis.report import Report

    responses, kept, summary, quality, opts = _load(params)
    if kind is not None and len(responses) and not (responses["kind"] == kind).any():
        other = "pairwise" if kind == "rating" else "rating"
        raise AnalysisError(
            f"{title} reports {kind} answers, and these responses hold none (they hold "
            f"{len(responses)} {other} answers); use `hvqeval report {REPORT_OF_KIND[other]}`"
        )
    sections = build(kept, opts, quality)
    _emit(
        Report(title, tuple(sections), (summary.describe(),)),
        params,
        {"exclusions": summary.as_dict()},
    )


@click.group("report")
def command() -> None:
    """The paper's tables (1, 2, 3, 5) and agreement, rater quality and Bradley-Terry reports."""


@command.command("table1")
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("results/results.jsonl"),
    show_default=True,
    help="Metrics results store (JSONL).",
)
@click.option(
    "--models", help="Comma-separated models, in this order (default: all, in order of appearance)."
)
@click.option("--feature-extractor", help="Use only IS/FID rows from this feature extractor.")
@click.option("--reference", help="Use only FID rows against this reference.")
@click.option("--n", "n", type=int, help="Use only IS/FID rows computed from this many samples.")
@click.option(
    "--allow-mixed", is_flag=True, help="Show a column mixing settings, with every cell marked."
)
@_output_options
def table1_command(results, models, feature_extractor, reference, n, allow_mixed, **params) -> None:
    """Table 1: IS (mean ± std over splits), FID and joint NLL (bits/dim) per model."""
    from analysis.report import Report
    from analysis.results import load_results
    from analysis.sections import table1_section

    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    section = table1_section(
        load_results(results), model_list, feature_extractor, reference, n, allow_mixed
    )
    _emit(Report("Table 1", (section,)), params)


@command.command("table2")
@click.option("--by-class", is_flag=True, help="Add the per-class breakdown.")
@_response_options
def table2_command(by_class, **params) -> None:
    """Table 2: mean realism rating ± SE per model, sorted high to low."""
    from analysis.sections import table2_sections

    _study_report(
        "Table 2", lambda df, opts, q: table2_sections(df, opts, by_class), params, "rating"
    )


@command.command("table3")
@_response_options
def table3_command(**params) -> None:
    """Table 3: % preferring A / B / unknown per source pair of each pairwise study, all-agree fraction,
    unusable answers; with more than two sources, the Bradley-Terry ranking of all of them."""
    from analysis.sections import strengths_section, table3_section

    def build(df, opts, quality):
        sections = [table3_section(df, opts)]
        pairwise = df[df["kind"] == "pairwise"]
        if len(set(pairwise["model_a"]) | set(pairwise["model_b"])) > 2:
            sections.append(strengths_section(df, opts))
        return sections

    _study_report("Table 3", build, params, "pairwise")


@command.command("table5")
@_response_options
def table5_command(**params) -> None:
    """Table 5: % preferring A and B per class, sorted by A's share (Holm-corrected tests with --test)."""
    from analysis.sections import table5_sections

    _study_report("Table 5", lambda df, opts, q: table5_sections(df, opts), params, "pairwise")


@command.command("agreement")
@_response_options
def agreement_command(**params) -> None:
    """Fleiss' kappa (pairwise) and Krippendorff's ordinal alpha (ratings) with the all-agree fraction."""
    from analysis.sections import agreement_section

    _study_report("Agreement", lambda df, opts, q: [agreement_section(df, opts)], params)


@command.command("quality")
@click.option("--flagged-only", is_flag=True, help="List only flagged raters.")
@_response_options
def quality_command(flagged_only, **params) -> None:
    """Rater-quality flags: straight-lining, implausibly fast, failed real-vs-fake items."""
    from analysis.sections import quality_section

    _study_report(
        "Rater quality", lambda df, opts, q: [quality_section(df, q, flagged_only)], params
    )


@command.command("strengths")
@click.option(
    "--reference",
    "reference_model",
    help="Model fixed at strength 0 (default: alphabetically first).",
)
@_response_options
def strengths_command(reference_model, **params) -> None:
    """Bradley-Terry strengths with bootstrap intervals from all pairwise studies that share models."""
    from analysis.sections import strengths_section

    _study_report(
        "Bradley–Terry strengths",
        lambda df, opts, q: [strengths_section(df, opts, reference_model)],
        params,
    )


@command.command("all")
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Metrics results store (Table 1).",
)
@click.option("--feature-extractor", help="Table 1: only IS/FID rows from this feature extractor.")
@click.option("--reference", help="Table 1: only FID rows against this reference.")
@click.option(
    "--n", "n", type=int, help="Table 1: only IS/FID rows computed from this many samples."
)
@_response_options
def all_command(results, feature_extractor, reference, n, **params) -> None:
    """Every table the inputs allow in one report (use --format html for figures)."""
    from analysis.report import Report
    from analysis.results import load_results
    from analysis.sections import (
        agreement_section,
        quality_section,
        strengths_section,
        table1_section,
        table2_sections,
        table3_section,
        table5_sections,
    )

    sections, notes, extra = [], [], {}
    if results is not None:
        sections.append(
            table1_section(
                load_results(results),
                feature_extractor=feature_extractor,
                reference=reference,
                n=n,
                allow_mixed=True,
            )
        )
    if params["responses"] or params["database_url"]:
        _, kept, summary, quality, opts = _load(params)
        notes.append(summary.describe())
        extra["exclusions"] = summary.as_dict()
        kinds = set(kept["kind"])
        if "rating" in kinds:
            sections += table2_sections(kept, opts, by_class=True)
        if "pairwise" in kinds:
            sections.append(table3_section(kept, opts))
            sections += table5_sections(kept, opts)
            pair_models = set(kept.loc[kept["kind"] == "pairwise", "model_a"]) | set(
                kept.loc[kept["kind"] == "pairwise", "model_b"]
            )
            if len(pair_models) > 2:
                sections.append(strengths_section(kept, opts))
        if len(kept):
            sections.append(agreement_section(kept, opts))
            sections.append(quality_section(kept, quality, only_flagged=True))
    if not sections and results is None and not (params["responses"] or params["database_url"]):
        from analysis.errors import AnalysisError

        raise AnalysisError("nothing to report: pass --results and/or --responses/--database")
    _emit(Report("Evaluation report", tuple(sections), tuple(notes)), params, extra)
