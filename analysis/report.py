"""The report layer: the only place where numbers are rounded and formatted.

A :class:`Report` is a list of :class:`Section` objects, each holding the numeric table (what
``csv`` and ``--json`` output, unrounded), its display version (strings, what ``md``, ``latex``
and ``html`` show), notes (interval type, exclusions, mixed settings) and, for HTML, figures.

Percentages of one row that add up to 100 (Table 3's A / B / unknown) are rounded with the
largest-remainder method so the displayed row adds up to exactly 100.00 as well.
"""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FORMATS = ("md", "csv", "latex", "html")


@dataclass(frozen=True)
class Figure:
    title: str
    png_base64: str


@dataclass(frozen=True)
class Section:
    title: str
    table: pd.DataFrame  # numeric, unrounded
    display: pd.DataFrame  # formatted strings
    notes: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Report:
    title: str
    sections: tuple[Section, ...]
    notes: tuple[str, ...] = field(default=())


# --- number formatting -------------------------------------------------------------------------


def fmt(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "–"
    return f"{float(value):.{decimals}f}"


def fmt_pct(value, decimals: int = 2) -> str:
    text = fmt(value, decimals)
    return text if text == "–" else f"{text}%"


def fmt_pm(mean, err, decimals: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{fmt(mean, decimals)} ± {fmt(err, decimals)}" if pd.notna(err) else fmt(mean, decimals)


def fmt_interval(low, high, decimals: int) -> str:
    if pd.isna(low) or pd.isna(high):
        return "–"
    return f"[{fmt(low, decimals)}, {fmt(high, decimals)}]"


def fmt_p(p) -> str:
    if pd.isna(p):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def fmt_int(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def round_to_total(values, decimals: int = 2) -> list[float]:
    """Largest-remainder rounding: rounded values keep the rounded total of the inputs."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).any():
        return [float(v) for v in values]
    scale = 10**decimals
    scaled = values * scale
    floors = np.floor(scaled + 1e-9)
    target = round(float(scaled.sum()))
    shortfall = int(target - floors.sum())
    order = np.argsort(-np.round(scaled - floors, 9), kind="stable")  # ties: first column first
    floors[order[: max(shortfall, 0)]] += 1
    return [float(v) / scale for v in floors]


# --- renderers ---------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(display: pd.DataFrame) -> str:
    header = "| " + " | ".join(_md_cell(c) for c in display.columns) + " |"
    rule = "|" + "|".join("---" for _ in display.columns) + "|"
    body = [
        "| " + " | ".join(_md_cell(v) for v in row) + " |" for row in display.astype(str).to_numpy()
    ]
    return "\n".join([header, rule, *body])


def to_markdown(report: Report) -> str:
    parts = [f"# {report.title}", ""]
    parts += [f"{n}" for n in report.notes] + ([""] if report.notes else [])
    for section in report.sections:
        parts += [f"## {section.title}", ""]
        parts += [
            markdown_table(section.display) if len(section.display.columns) else "(no data)",
            "",
        ]
        if section.display.empty:
            parts += ["(no answers of this kind)", ""]
        parts += [f"- {n}" for n in section.notes] + ([""] if section.notes else [])
    return "\n".join(parts).rstrip() + "\n"


def to_csv(report: Report) -> str:
    frames = [
        s.table.assign(section=s.title)[["section", *s.table.columns]] for s in report.sections
    ]
    frames = [f for f in frames if len(f)] or [pd.DataFrame(columns=["section"])]
    buffer = io.StringIO()
    pd.concat(frames, ignore_index=True).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\^{}",
        "±": r"$\pm$",
        "–": "--",
        "<": r"$<$",
        ">": r"$>$",
        "†": r"$^\dagger$",
        "≠": r"$\neq$",
        "≥": r"$\geq$",
        "κ": r"$\kappa$",
        "α": r"$\alpha$",
        "√": r"$\surd$",
    }
    return "".join(replacements.get(ch, ch) for ch in str(text))


def to_latex(report: Report) -> str:
    parts = [f"% {report.title}"] + [f"% {n}" for n in report.notes]
    for section in report.sections:
        display = section.display
        parts += [
            "",
            f"% {section.title}",
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{" + "l" * max(len(display.columns), 1) + "}",
            r"\toprule",
            " & ".join(_latex_escape(c) for c in display.columns) + r" \\",
            r"\midrule",
        ]
        parts += [
            " & ".join(_latex_escape(v) for v in row) + r" \\"
            for row in display.astype(str).to_numpy()
        ]
        parts += [
            r"\bottomrule",
            r"\end{tabular}",
            r"\caption{"
            + _latex_escape(section.title)
            + (". " + _latex_escape("; ".join(section.notes)) if section.notes else "")
            + "}",
            r"\end{table}",
        ]
    return "\n".join(parts) + "\n"


def to_html(report: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        ".note{color:#444;font-size:.9em}img{max-width:100%}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
    ]
    parts += [f'<p class="note">{esc(n)}</p>' for n in report.notes]
    for section in report.sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.display.empty:
            parts.append('<p class="note">(no answers of this kind)</p>')
        parts.append(section.display.to_html(index=False, escape=True, border=0, na_rep="–"))
        parts += [f'<p class="note">{esc(n)}</p>' for n in section.notes]
        for figure in section.figures:
            parts.append(
                f'<figure><img alt="{esc(figure.title)}" src="data:image/png;base64,{figure.png_base64}">'
                f"<figcaption>{esc(figure.title)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is pd.NA:
        return None
    return value


def to_json(report: Report, extra: dict | None = None) -> str:
    data = {
        "report": report.title,
        "notes": list(report.notes),
        "sections": [
            {
                "title": s.title,
                "notes": list(s.notes),
                "rows": [
                    {k: _jsonable(v) for k, v in row.items()} for row in s.table.to_dict("records")
                ],
            }
            for s in report.sections
        ],
        **(extra or {}),
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(report: Report, fmt_name: str = "md") -> str:
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html}[fmt_name](report)
