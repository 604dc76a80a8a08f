"""``hvqeval samples``: make sample sets from images that were not sampled here.

hvqeval samples import SRC --model NAME --out DIR [--class-map CSV | --class-id N] [--resize SIZE]
hvqeval samples from-dataset DATASET --split val --per-class N --out DIR [--classes 3,5]
"""

from __future__ import annotations

import json

import click


def _summary(sample_set, as_json: bool) -> None:
    counts: dict[int, int] = {}
    for f in sample_set.files:
        counts[f.class_id] = counts.get(f.class_id, 0) + 1
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(sample_set.path),
                    "model": sample_set.model,
                    "images": len(sample_set),
                    "image_size": sample_set.image_size,
                    "classes": {str(k): v for k, v in sorted(counts.items())},
                }
            )
        )
        return
    click.echo(
        f"wrote sample set {sample_set.path}: {len(sample_set)} images of {sample_set.image_size}x"
        f"{sample_set.image_size}, {len(counts)} class(es), model {sample_set.model}"
    )


@click.group(name="samples")
def command() -> None:
    """Import image folders / arrays, or real dataset images, as sample sets."""


@command.command(name="import")
@click.argument("src", type=click.Path())
@click.option(
    "--model", required=True, help="Model name recorded in the manifest (e.g. BigGAN-deep)."
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="New sample-set folder."
)
@click.option(
    "--classes-of",
    default="imagenet",
    show_default=True,
    help="Class table for folder names and labels: imagenet, shapes or fashion_mnist.",
)
@click.option(
    "--class-map",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of 'folder,class_id' rows mapping class sub-folders to class ids.",
)
@click.option(
    "--class-id", type=int, default=None, help="Class id of every image of an unlabelled source."
)
@click.option(
    "--resize",
    type=int,
    default=None,
    metavar="SIZE",
    help="Rescale the shortest side to SIZE (antialiased bilinear) and centre-crop; "
    "needed when sizes differ.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_cmd(src, model, out, classes_of, class_map, class_id, resize, as_json):
    """Import SRC (a folder of images, class sub-folders or an .npz/.npy array) as a sample set.

    Class sub-folders are named by class id, ImageNet wnid or class name (or mapped with
    --class-map). Every file is decoded; an unreadable file, mixed sizes without --resize or an
    unknown class stops the import with nothing written.
    """
    from hvqeval.image_import import import_images

    sample_set = import_images(
        src,
        out,
        model=model,
        classes_of=classes_of,
        class_map=class_map,
        class_id=class_id,
        resize=resize,
        progress=not as_json,
    )
    _summary(sample_set, as_json)


@command.command(name="from-dataset")
@click.argument("dataset")
@click.option("--split", default="val", show_default=True)
@click.option("--per-class", type=click.IntRange(min=1), required=True, help="Images per class.")
@click.option("--classes", default=None, help="Class ids (3,5,7) [default: every class].")
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=None,
    help="Rescale (shortest side) and centre-crop to this size [default: the dataset's].",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the order images are drawn in."
)
@click.option("--model", default=None, help="Name in the manifest [default: real-DATASET].")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="New sample-set folder."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def from_dataset(dataset, split, per_class, classes, image_size, seed, model, out, as_json):
    """Write PER_CLASS real images of DATASET as a sample set (the manifest records the dataset)."""
    from hvqeval.image_import import ImageImportError, write_dataset_images

    class_ids = None
    if classes is not None:
        try:
            class_ids = [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            raise ImageImportError(
                f"--classes: give class ids like 3,5,7, got {classes!r}"
            ) from None
    sample_set = write_dataset_images(
        dataset,
        split,
        out,
        per_class=per_class,
        classes=class_ids,
        image_size=image_size,
        seed=seed,
        model=model,
        progress=not as_json,
    )
    _summary(sample_set, as_json)
