"""``hvqeval neighbours``: nearest training images of samples (paper Appendix H, Figures 11-13).

    hvqeval neighbours --samples samples/tiny_ff --dataset shapes:train --space pixel --k 8 --out nn/
    hvqeval neighbours --samples S --dataset /data/imagenet:train --space vgg16-fc7 \\
        --weights vgg16-397923af.pth --k 8 --out nn/

Writes one figure per sample (the sample top-left, then its k neighbours) and
``neighbours.csv`` with (sample, rank, dataset index, dataset path, distance).
"""

from __future__ import annotations

import json

import click


@click.command("neighbours")
@click.option("--samples", required=True, help="Sample set (or image folder / array).")
@click.option(
    "--dataset", required=True, help="Training data: folder, dataset name (shapes:train), npz."
)
@click.option(
    "--space",
    type=click.Choice(["pixel", "vgg16-fc7", "resnet50-avgpool"]),
    default="pixel",
    show_default=True,
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="torchvision VGG-16 / ResNet-50 state_dict file (default: torch hub cache or download).",
)
@click.option("--weights-sha256", default=None, help="Expected SHA-256 of --weights (checked).")
@click.option(
    "--k",
    "k",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Neighbours per sample.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Search for the first N samples (0 = all).",
)
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Dataset rows per distance block.",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where dataset features are kept (default $HVQEVAL_CACHE or ~/.cache/hvqeval).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the neighbours as JSON.")
def command(
    samples,
    dataset,
    space,
    weights,
    weights_sha256,
    k,
    limit,
    out,
    batch_size,
    chunk,
    device,
    num_workers,
    cache_dir,
    as_json,
):
    """Find each sample's k nearest dataset images in pixel, VGG-16-fc7 or ResNet-50-avgpool space."""
    from pathlib import Path

    import numpy as np

    from hvqeval.errors import HvqevalError
    from hvqeval.inputs import open_images
    from hvqeval.metrics import neighbours as nn
    from hvqeval.metrics.features import fp32_mode, pick_device, resolve_extractor
    from hvqeval.metrics.reference_cache import ReferenceCache

    device = pick_device(device)
    sample_source = open_images(samples)
    size = sample_source.require_uniform()
    dataset_source = open_images(dataset, image_size=None, default_split="train")
    if space == "pixel" and dataset_source.image_size != size:
        dataset_source = open_images(dataset, image_size=size, default_split="train")
    extractor = None
    if space != "pixel":
        extractor = resolve_extractor(nn.SPACES[space][0], weights, weights_sha256)
    elif weights is not None:
        raise HvqevalError("--weights has no meaning for --space pixel")
    if k > len(dataset_source):
        raise HvqevalError(f"--k {k} exceeds the {len(dataset_source)} dataset images")
    count = len(sample_source) if limit <= 0 else min(limit, len(sample_source))
    chosen = list(range(count))
    cache_root = ReferenceCache(cache_dir).root

    from torch.utils.data import Subset

    with fp32_mode(False):
        data = nn.dataset_features(
            dataset_source,
            space,
            extractor,
            cache_root,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
        )
        scratch = ReferenceCache(cache_dir).scratch()
        try:
            subset = Subset(sample_source, chosen)
            if space == "pixel":
                queries = np.asarray(nn.pixel_features(subset, scratch / "q.npy", progress=False))
            else:
                queries = np.asarray(
                    nn.network_features(
                        subset,
                        extractor,
                        nn.SPACES[space][1],
                        scratch,
                        batch_size=batch_size,
                        device=device,
                        progress=False,
                    )
                )
        finally:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
        indices, distances = nn.exact_knn(
            queries, data.features, k, chunk=chunk, device=device, progress=True
        )
    csv_path = nn.write_outputs(
        Path(out), sample_source, dataset_source, chosen, indices, distances, space
    )
    click.echo(
        f"dataset features: {'reused' if data.cached else 'computed and cached'} ({data.features.shape[0]} x "
        f"{data.features.shape[1]}); {count} sample(s) -> {csv_path} and {count} figure(s)",
        err=True,
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "sample": sample_source.describe(s),
                        "neighbours": [
                            {
                                "rank": r + 1,
                                "dataset_index": int(j),
                                "dataset_path": dataset_source.describe(int(j)),
                                "distance": float(d),
                            }
                            for r, (j, d) in enumerate(zip(indices[row], distances[row]))
                        ],
                    }
                    for row, s in enumerate(chosen)
                ],
                indent=1,
            )
        )
