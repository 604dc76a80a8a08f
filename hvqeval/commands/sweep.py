"""``hvqeval sweep``: sample sets and metric rows over a range of a sampling parameter.

    hvqeval sweep temperature --run runs/tiny --values 0.9,0.95,1.0 --per-class 20 \\
        --reference shapes:val --extractor domain --weights weights/shapes_classifier.pt
    hvqeval plot temperature --results results/results.jsonl --out reports/temperature.png

Each value runs ``hvqeval sample`` and ``hvqeval metrics`` (see ``hvqeval.sweep``); the rows
go to the results store tagged with the sweep and the value. Rerunning the same command skips
finished values, so a stopped sweep continues where it was.
"""

from __future__ import annotations

import json
import sys

import click

from hvqeval.commands import resumable


@click.group(name="sweep")
def command() -> None:
    """Sample and evaluate a run at several values of a sampling parameter."""


@command.command("temperature")
@click.option(
    "--run", "run_dir", required=True, metavar="RUN", help="Run folder made by 'hvqeval train'."
)
@click.option(
    "--values", required=True, metavar="T1,T2,...", help="Softmax temperatures, e.g. 0.9,0.95,1.0."
)
@click.option(
    "--classes",
    default="all",
    show_default=True,
    metavar="IDS",
    help="Class ids (as hvqeval sample).",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="Images per class and value.",
)
@click.option(
    "--reference", metavar="REF", help="FID reference (e.g. shapes:val); without it only IS."
)
@click.option(
    "--metrics",
    "metrics",
    default=None,
    metavar="LIST",
    help="Metrics per value (default: isc,fid with --reference, else isc).",
)
@click.option(
    "--extractor",
    default="inception-v3-compat",
    show_default=True,
    type=click.Choice(["inception-v3-compat", "domain", "vgg16", "resnet50"]),
    help="Feature network of the metrics (as hvqeval metrics).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    envvar="HVQEVAL_INCEPTION_WEIGHTS",
    help="Weights file of the extractor (required for --extractor domain).",
)
@click.option(
    "--splits", type=click.IntRange(min=1), default=10, show_default=True, help="IS splits."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--sampler", type=click.Choice(["cached", "naive"]), default="cached", show_default=True
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--model", "model_label", metavar="NAME", help="Label of the run (default: the card name)."
)
@click.option(
    "--out", metavar="DIR", help="Sweep folder (default: samples/<run name>_temperature)."
)
@click.option(
    "--results",
    "results_path",
    default="results/results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results store the rows are appended to.",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Reference-statistics cache of the metrics.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the sweep's rows as JSON on stdout.")
@resumable
def temperature_command(
    run_dir,
    values,
    classes,
    per_class,
    reference,
    metrics,
    extractor,
    weights,
    splits,
    seed,
    sampler,
    batch_size,
    model_label,
    out,
    results_path,
    device,
    cache_dir,
    as_json,
) -> None:
    """Sample RUN at every temperature in VALUES and compute IS (and FID) of each sample set."""
    from pathlib import Path

    from hvqeval.results import print_rows
    from hvqeval.sweep import SweepSettings, parse_values, temperature_sweep

    parsed = parse_values(values)
    sample_args = ("--device", device) if device else ()
    metric_args = (("--device", device) if device else ()) + (
        ("--cache-dir", cache_dir) if cache_dir else ()
    )
    settings = SweepSettings(
        run=str(run_dir),
        classes=classes,
        per_class=per_class,
        seed=seed,
        sampler=sampler,
        batch_size=batch_size,
        reference=reference,
        metrics=metrics or ("isc,fid" if reference else "isc"),
        extractor=extractor,
        weights=weights,
        splits=splits,
        model=model_label,
        sample_args=sample_args,
        metric_args=metric_args,
    )
    out = out or str(Path("samples") / f"{Path(run_dir).resolve().name}_temperature")
    outcome = temperature_sweep(
        settings, parsed, out, results_path, echo=lambda line: click.echo(line, err=True)
    )
    click.echo(
        f"{len(outcome.computed)} value(s) computed, {len(outcome.skipped)} already in "
        f"{results_path}; "
        f"plot them: hvqeval plot temperature --results {results_path} --model '{outcome.label}'",
        err=True,
    )
    if as_json:
        json.dump(outcome.rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_rows(outcome.rows)
