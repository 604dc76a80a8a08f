"""``hvqeval plot``: figures from results, training logs and runs (PNG or SVG by the suffix).

    hvqeval plot temperature --results results/results.jsonl --out reports/temperature.png
    hvqeval plot training --run runs/tiny_ff --run runs/tiny_msp --out reports/training.svg
    hvqeval plot predictability --results results/results.jsonl --out reports/fig5.png
    hvqeval plot reconstructions --run runs/tiny_ff --images shapes:test --out reports/fig10.png

``temperature``: FID and IS against temperature from ``hvqeval sweep temperature`` rows;
``training``: loss, bits/dim and codebook use against step from each run's ``log.jsonl``;
``predictability``: Figure 5 from ``hvqeval predictability`` rows; ``reconstructions``:
Figure 10-style sampled reconstructions from every level (runs ``hvqeval reconstruct``).
``--json`` prints the plotted points.
"""

from __future__ import annotations

import json
import sys

import click

_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Figure file: .png or .svg.",
)
_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print the plotted points as JSON on stdout."
)
_RESULTS = click.option(
    "--results",
    "results_path",
    default="results/results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results store to read.",
)


def _check_suffix(out: str) -> None:
    if not out.lower().endswith((".png", ".svg")):
        raise click.BadParameter(f"{out!r} must end in .png or .svg", param_hint="--out")


def _finish(fig, out: str, records: list[dict], as_json: bool) -> None:
    from analysis.plots import save_figure

    save_figure(fig, out)
    click.echo(f"wrote {out}", err=True)
    if as_json:
        json.dump(records, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")


def _records(frame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts at full float precision (NaN -> null)."""
    import math

    def plain(value):
        value = value.item() if hasattr(value, "item") else value
        return None if isinstance(value, float) and math.isnan(value) else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


@click.group(name="plot")
def command() -> None:
    """Figures: FID/IS vs temperature, training curves, Figure 5, Figure 10-style grids."""


@command.command("temperature")
@_RESULTS
@click.option(
    "--model", "models", multiple=True, metavar="NAME", help="Only these swept models (repeatable)."
)
@click.option(
    "--metrics",
    default="fid,isc",
    show_default=True,
    help="Comma-separated metrics, one panel each.",
)
@_OUT
@_JSON
def temperature_command(results_path, models, metrics, out, as_json) -> None:
    """FID and IS against the sampling temperature (rows of `hvqeval sweep temperature`)."""
    from analysis.curves import sweep_points
    from analysis.plots import temperature_curve
    from analysis.results import load_results

    _check_suffix(out)
    wanted = tuple(m.strip() for m in metrics.split(",") if m.strip())
    points = sweep_points(load_results(results_path), list(wanted), list(models) or None)
    _finish(temperature_curve(points, wanted), out, _records(points), as_json)


@command.command("training")
@click.option(
    "--run", "runs", required=True, multiple=True, metavar="RUN", help="Run folder (repeatable)."
)
@_OUT
@_JSON
def training_command(runs, out, as_json) -> None:
    """Loss, bits/dim and codebook use against step from the runs' log.jsonl."""
    from pathlib import Path

    from analysis.curves import training_log
    from analysis.plots import training_curves

    _check_suffix(out)
    logs = {Path(run).resolve().name: training_log(run) for run in runs}
    records = [{"run": name, **row} for name, log in logs.items() for row in _records(log)]
    _finish(training_curves(logs), out, records, as_json)


@command.command("predictability")
@_RESULTS
@_OUT
@_JSON
def predictability_command(results_path, out, as_json) -> None:
    """Figure 5: code predictability against decoder depth and MSP mask size."""
    from analysis.curves import predictability_points
    from analysis.plots import predictability_curve
    from analysis.results import load_results

    _check_suffix(out)
    points = predictability_points(load_results(results_path))
    _finish(predictability_curve(points), out, _records(points), as_json)


@command.command("reconstructions")
@click.option(
    "--run", "runs", required=True, multiple=True, metavar="RUN", help="Run folder (repeatable)."
)
@click.option(
    "--images",
    required=True,
    metavar="SPEC",
    help="Images to reconstruct (as hvqeval reconstruct).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=4, show_default=True, help="Images per panel."
)
@click.option("--samples-per-image", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--work",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder of the per-level reconstructions (default: next to --out).",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@_OUT
@_JSON
def reconstructions_command(
    runs, images, limit, samples_per_image, seed, work, device, out, as_json
) -> None:
    """Figure 10-style: sampled reconstructions of the same images from every level of each run."""
    from pathlib import Path

    from hvqeval.reconstruction_figure import level_reconstructions, reconstruction_figure

    _check_suffix(out)
    work = work or str(Path(out).with_suffix("")) + "_reconstructions"
    panels = level_reconstructions(
        list(runs),
        images,
        work,
        limit=limit,
        samples_per_image=samples_per_image,
        seed=seed,
        extra_args=("--device", device) if device else (),
        echo=lambda line: click.echo(line, err=True),
    )
    _finish(reconstruction_figure(panels), out, panels, as_json)
