"""``hvqeval data``: inspect datasets (models.data) before training or evaluating on them."""

from __future__ import annotations

import json
import sys

import click


@click.group(name="data")
def command() -> None:
    """Inspect datasets: shapes, fashion_mnist, ImageNet folders, npz batches, image folders."""


@command.command(name="check")
@click.argument("path")
@click.option(
    "--split", default="train", show_default=True, help="Split to check: train, val or test."
)
@click.option(
    "--all-errors", is_flag=True, help="Keep going past unreadable images and list them all."
)
@click.option(
    "--headers-only",
    is_flag=True,
    help="Folder images: read headers only (fast; misses truncated pixel data).",
)
@click.option(
    "--class-map",
    type=click.Path(exists=True, dir_okay=False),
    help="npz batches: the devkit's map_clsloc.txt, to report 1000-class-index ids.",
)
@click.option("--length", type=int, help="shapes: number of items to check.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def check(
    path: str,
    split: str,
    all_errors: bool,
    headers_only: bool,
    class_map: str | None,
    length: int | None,
    as_json: bool,
) -> None:
    """Read every image of PATH once and report format, classes, image count and sizes.

    PATH is a folder (ImageNet train/<wnid>/*.JPEG, class folders, plain images, npz
    batches, IDX files), an .npz batch, or a built-in name (shapes, fashion_mnist). Exits
    with status 1 and names the offending file when something is wrong.
    """
    from tqdm import tqdm

    from models import check_dataset, open_dataset

    dataset = open_dataset(path, split, class_map=class_map, length=length)

    def progress(items):
        return tqdm(
            items,
            desc=f"checking {path}",
            unit="img",
            file=sys.stderr,
            leave=False,
            disable=None,
            mininterval=0.5,
        )

    report = check_dataset(
        dataset, all_errors=all_errors, headers_only=headers_only, progress=progress
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo("\n".join(report.lines()))
    if not report.ok:
        raise click.exceptions.Exit(1)
