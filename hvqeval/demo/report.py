"""``report.html`` of ``hvqeval demo``: what a person looks at after the pipeline ran.

One self-contained HTML file (figures embedded as PNG data URIs): how good the models are
against reference values (with the training steps each got and a plain warning when far
off), sample grids per class for each model, sampled reconstructions (Figures 6–7 style),
Table 1 (IS/FID with the domain classifier, joint NLL bound), pixel-space nearest
neighbours (Figure 11 style), the studies' raters' links and the command that serves them,
and how each number was made (the exact commands and the settings recorded with every
result). It reads files and the ``ReportInputs`` it is given; it runs nothing.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hvqeval.demo.plan import CARDS, IMAGE_SIZE, LABELS, UNIFORM_BITS_PER_DIM, DemoPlan
from hvqeval.demo.quality import ADVICE, ModelQuality


@dataclass(frozen=True)
class ReportInputs:
    out: Path  # the demo folder
    plan: DemoPlan
    results: Path  # results.jsonl
    commands: list[str]
    serve_command: str
    study_links: dict[str, str]
    training_steps: dict[str, int]  # step name ("train_ff_level1") -> steps it got
    quality: list[ModelQuality]
    real_label: str


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}"
    "img.grid{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}code,pre{background:#f6f6f6}"
    "pre{padding:.6em;overflow-x:auto;font-size:.85em}figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}"
    ".warning{background:#fff3cd;border:1px solid #e0c36c;padding:.5em .8em}"
)


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def class_grid(
    sample_dir: Path, per_row: int = 10, scale: int | None = None
) -> tuple[Image.Image, list[str]]:
    """One row per class (up to ``per_row`` samples each); returns the grid and row labels.

    ``scale``: nearest-neighbour enlargement; by default images are shown at least 64 pixels wide.
    """
    from hvqeval.sample_set import SampleSet

    sample_set = SampleSet.load(sample_dir)
    rows: dict[int, list[int]] = {}
    for index, entry in enumerate(sample_set.files):
        rows.setdefault(entry.class_id, []).append(index)
    size = sample_set.image_size
    pad = 2
    grid = np.full((len(rows) * (size + pad) + pad, per_row * (size + pad) + pad, 3), 255, np.uint8)
    labels = []
    for r, class_id in enumerate(sorted(rows)):
        labels.append(sample_set.files[rows[class_id][0]].class_name or str(class_id))
        for c, index in enumerate(rows[class_id][:per_row]):
            y, x = pad + r * (size + pad), pad + c * (size + pad)
            grid[y : y + size, x : x + size] = sample_set.uint8(index)
    image = Image.fromarray(grid)
    scale = scale or max(2, 64 // size)
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST), labels


def _img(path: Path, alt: str) -> str:
    """A figure enlarged (nearest neighbour) by 2-4x when it is small, inlined as a data URI."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width < 600:
            scale = min(4, max(2, 600 // image.width))
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        return f'<img class="grid" alt="{html.escape(alt)}" src="{png_data_uri(image)}">'


def table1_html(results: Path) -> str:
    from analysis.errors import AnalysisError
    from analysis.results import load_results
    from analysis.sections import table1_section

    if not results.exists():
        return '<p class="note">No results yet.</p>'
    try:
        section = table1_section(load_results(results))
    except AnalysisError as err:
        return f'<p class="note">Table 1 could not be made: {html.escape(str(err))}</p>'
    parts = [section.display.to_html(index=False, border=0, na_rep="–")]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
    return "\n".join(parts)


def provenance_html(results: Path) -> str:
    if not results.exists():
        return ""
    keep = (
        "metric",
        "model",
        "value",
        "std",
        "n",
        "n_reference",
        "reference",
        "splits",
        "seed",
        "feature_extractor",
        "weights_sha256",
        "resize",
        "tf32",
        "versions",
        "created_at",
    )
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    items = []
    for row in rows:
        shown = {k: row[k] for k in keep if k in row and row[k] is not None}
        items.append(html.escape(json.dumps(shown, sort_keys=False)))
    return "<pre>" + "\n".join(items) + "</pre>"


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def quality_html(quality: list[ModelQuality], real_label: str) -> str:
    """Each model's steps and numbers beside the reference values, and a warning when far off."""
    esc = html.escape
    rows = [
        "<table><tr><th>Model</th><th>Training steps</th><th>IS</th><th>FID</th><th>Joint NLL</th></tr>"
    ]
    for q in quality:
        steps = ", ".join(f"{n} {stage}" for stage, n in q.steps.items()) or "–"
        rows.append(
            f"<tr><td>{esc(q.label)} ({esc(q.card)})</td><td>{esc(steps)}</td><td>{_num(q.isc, 2)}</td>"
            f"<td>{_num(q.fid, 2)}</td><td>{_num(q.nll_bpd, 3)} bits/dim</td></tr>"
        )
    real = quality[0] if quality else None
    rows.append(
        f"<tr><td>Reference: {esc(real_label)}</td><td>–</td><td>{_num(real and real.real_isc, 2)}</td>"
        f"<td>{_num(real and real.real_fid, 2)}</td><td>–</td></tr>"
    )
    rows.append(
        f"<tr><td>Reference: uniform model (learnt nothing)</td><td>–</td><td>–</td><td>–</td>"
        f"<td>{UNIFORM_BITS_PER_DIM:.3f} bits/dim</td></tr></table>"
    )
    out = [
        "\n".join(rows),
        (
            '<p class="note">The real images are scored like the samples (same classifier, same number of images, '
            "same reference split): their IS and FID are what a perfect model would get here. Higher IS, lower FID "
            "and lower NLL are better.</p>"
        ),
    ]
    far = [q for q in quality if q.warnings]
    for q in far:
        out.append(
            f'<p class="warning"><strong>{esc(q.label)} is far from good.</strong> '
            + "; ".join(esc(w) for w in q.warnings)
            + ".</p>"
        )
    if far:
        out.append(f'<p class="warning">{esc(ADVICE[0].upper() + ADVICE[1:])}.</p>')
    return "\n".join(out)


def build_report(inputs: ReportInputs) -> str:
    esc = html.escape
    plan, steps = inputs.plan, inputs.training_steps
    trained = ", ".join(
        f"{LABELS[key]} {steps.get(f'train_{key}_level1', 0)} level-1 and "
        f"{steps.get(f'train_{key}_prior', 0)} prior steps"
        for key in CARDS
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>hvqeval demo report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Hierarchical autoregressive image models: demo report</h1>",
        (
            f"<p>Two two-level hierarchies (a VQ autoencoder with a feed-forward or a masked self-prediction "
            f"auxiliary decoder, and a class-conditional attention prior on its codes; De Fauw et al. 2019) trained on "
            f"<code>{esc(plan.data)}</code> at {IMAGE_SIZE}×{IMAGE_SIZE} for a {plan.minutes:g}-minute budget, each "
            f"stage for its share of the time: {esc(trained)}; {plan.per_class} samples per class. Everything below "
            "was made by the commands listed at the end.</p>"
        ),
    ]

    out.append("<h2>How good are these models?</h2>")
    out.append(quality_html(inputs.quality, inputs.real_label))

    out.append("<h2>Samples per class</h2>")
    out.append(
        '<p class="note">Ancestral sampling (Algorithm 4), temperature 1.0, cached sampler. One row per class.</p>'
    )
    for key, card in CARDS.items():
        sample_dir = inputs.out / "samples" / card
        if not sample_dir.exists():
            continue
        grid, labels = class_grid(sample_dir)
        out.append(
            f'<figure><img class="grid" alt="{LABELS[key]} samples" src="{png_data_uri(grid)}">'
            f"<figcaption>{LABELS[key]} ({card}); rows: {esc(', '.join(labels))}</figcaption></figure>"
        )

    out.append("<h2>Sampled reconstructions</h2>")
    out.append(
        '<p class="note">Held-out images (first column) encoded to codes, then decoded by sampling the '
        "autoregressive decoder several times: what the codes keep and what the decoder fills in "
        "(paper Figures 6 and 7).</p>"
    )
    for key, card in CARDS.items():
        grid_path = inputs.out / "reconstructions" / card / "grid.png"
        if grid_path.exists():
            out.append(
                f"<figure>{_img(grid_path, f'{LABELS[key]} reconstructions')}<figcaption>{LABELS[key]} "
                f"({card})</figcaption></figure>"
            )

    out.append("<h2>Table 1: IS, FID and joint NLL</h2>")
    out.append(table1_html(inputs.results))
    out.append(
        '<p class="note">IS and FID use the domain classifier trained by <code>hvqeval features train</code> '
        "(not InceptionV3: these images are not ImageNet); the joint NLL is the Appendix F bound in bits per "
        "pixel sub-dimension on held-out images, dominated by the pixel term.</p>"
    )

    out.append("<h2>Nearest neighbours in pixel space</h2>")
    out.append(
        '<p class="note">Each row: a sample (left) and its 8 nearest training images by L2 distance '
        "(paper Appendix H, Figure 11). Copies of training images would show up here.</p>"
    )
    for key, card in CARDS.items():
        for figure in sorted((inputs.out / "neighbours" / card).glob("*.png"))[:3]:
            out.append(
                f"<figure>{_img(figure, f'{LABELS[key]} neighbours')}<figcaption>{LABELS[key]}: "
                f"{esc(figure.name)}</figcaption></figure>"
            )

    out.append("<h2>Human studies</h2>")
    if inputs.study_links:
        out.append(
            "<p>Serve them by pasting this line into a shell (the secret key and the admin password are "
            f"files in the demo folder), then open a link:</p><pre>{esc(inputs.serve_command)}</pre><ul>"
        )
        out += [
            f'<li>{esc(name)}: <a href="{esc(url)}">{esc(url)}</a></li>'
            for name, url in sorted(inputs.study_links.items())
        ]
        out.append("</ul>")

    out.append("<h2>How each number was made</h2>")
    out.append("<p>Commands, in order:</p><pre>" + esc("\n".join(inputs.commands)) + "</pre>")
    out.append("<p>Settings recorded with every result (<code>results/results.jsonl</code>):</p>")
    out.append(provenance_html(inputs.results))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
