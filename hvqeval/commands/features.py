"""``hvqeval features``: train and inspect the domain feature extractor (Section 6, offline IS/FID).

    hvqeval features train --data shapes --out weights/shapes_classifier.pt
    hvqeval features train --data fashion_mnist --out weights/fmnist_classifier.pt
    hvqeval metrics --samples samples/tiny_ff --reference shapes:val \\
        --extractor domain --weights weights/shapes_classifier.pt

The weights are written by this command only (never downloaded); results computed with
them say ``feature_extractor = "domain:<dataset>"``.
"""

from __future__ import annotations

import json

import click


@click.group("features")
def command() -> None:
    """Train the domain classifier used as an offline feature extractor for IS/FID."""


@command.command("train")
@click.option(
    "--data", "data", required=True, help="Dataset: shapes, fashion_mnist, or a class-folder path."
)
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Weights file to write."
)
@click.option(
    "--image-size",
    default=None,
    type=click.IntRange(min=1),
    help="Training resolution (default: the dataset's; shapes 32).",
)
@click.option("--steps", default=2000, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--widths", default="32,64,128", show_default=True, help="Channels of the three conv stages."
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop training after this many seconds even before --steps (at least one step).",
)
@click.option(
    "--val-size", default=2000, show_default=True, help="Validation images used for the accuracy."
)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
def train(
    data,
    out,
    image_size,
    steps,
    batch_size,
    lr,
    seed,
    widths,
    max_seconds,
    val_size,
    device,
    as_json,
):
    """Train the classifier on DATA's train split and write its weights to OUT."""
    import torch
    from torch.utils.data import Subset

    from hvqeval.errors import HvqevalError
    from hvqeval.metrics.domain import save_weights, train_classifier
    from hvqeval.metrics.features import pick_device, sha256_file
    from models import DataError, eval_transform, open_dataset

    device = pick_device(device)
    if steps < 1 or batch_size < 1:
        raise HvqevalError("--steps and --batch-size must be positive")
    try:
        stage_widths = tuple(int(w) for w in widths.split(","))
    except ValueError:
        stage_widths = ()
    if len(stage_widths) != 3 or min(stage_widths) < 1:
        raise HvqevalError(
            f"--widths must be three positive integers like 32,64,128, got {widths!r}"
        )
    try:
        if data == "shapes":
            size = image_size or 32
            train_set = open_dataset("shapes", "train", image_size=size, seed=seed)
            val_set = open_dataset("shapes", "val", image_size=size, length=val_size)
        else:
            probe = open_dataset(data, "train")
            size = image_size or probe.image_size
            if size is None:
                raise HvqevalError(f"{data} has images of different sizes; pass --image-size N")
            transform = eval_transform(size) if size != probe.image_size else None
            train_set = open_dataset(data, "train", transform=transform)
            val_full = open_dataset(
                data, "test" if data == "fashion_mnist" else "val", transform=transform
            )
            val_set = Subset(val_full, range(min(val_size, len(val_full))))
    except DataError as err:
        raise HvqevalError(f"cannot open --data {data}: {err}") from None
    class_names = list(train_set.class_names)
    torch.manual_seed(seed)
    model, stats = train_classifier(
        train_set,
        val_set,
        class_names=class_names,
        image_size=size,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        widths=stage_widths,
        max_seconds=max_seconds,
    )
    dataset_name = "shapes" if data == "shapes" else str(getattr(train_set, "format", data))
    if data == "fashion_mnist":
        dataset_name = "fashion_mnist"
    save_weights(
        out,
        model,
        dataset=dataset_name,
        class_names=class_names,
        meta={**stats, "data": data, "image_size": size},
    )
    summary = {"out": out, "dataset": dataset_name, "sha256": sha256_file(out), **stats}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo(
            f"wrote {out} (sha256 {summary['sha256'][:12]}...): {dataset_name} classifier at {size}x{size}, "
            f"validation accuracy {stats['val_accuracy']:.3f} on {stats['val_size']} images after "
            f"{stats['steps']} of {stats['planned_steps']} steps"
        )
