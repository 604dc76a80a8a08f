"""``hvqeval reconstruct``: K sampled reconstructions of real images (Figures 6, 7, 10, 14-16).

    hvqeval reconstruct --run runs/tiny --images shapes:val --limit 8 --samples-per-image 4 --out recon/tiny
    hvqeval reconstruct --run runs/in256 --images photos/ --from-level 1 --samples-per-image 3 --out recon/l1

Images get the evaluation preprocessing (rescale shortest side, centre crop, Section 7).
Writes ``grid.png`` (one row per image: the original, then its reconstructions), every image
as its own PNG under ``images/`` and ``reconstructions.json``.
"""

from __future__ import annotations

import json

import click


@click.command(name="reconstruct")
@click.option(
    "--run", "run_dir", required=True, metavar="RUN", help="Run folder made by 'hvqeval train'."
)
@click.option(
    "--images",
    "images_spec",
    required=True,
    metavar="PATH",
    help="Image folder, npz/npy array, sample set, or dataset (shapes:val, /data/imagenet:val).",
)
@click.option(
    "--samples-per-image", type=click.IntRange(min=1), default=4, show_default=True, metavar="K"
)
@click.option("--out", required=True, metavar="DIR", help="Output folder.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    metavar="N",
    help="Reconstruct the first N images.",
)
@click.option(
    "--from-level",
    type=click.IntRange(min=1),
    metavar="L",
    help="Encode up to level L and sample back down (default: the top level).",
)
@click.option(
    "--temperature",
    default="1.0",
    show_default=True,
    metavar="T",
    help="One number, or per level like level1=0.98,level2=1.0.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--sampler", type=click.Choice(["cached", "naive"]), default="cached", show_default=True
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def command(
    run_dir,
    images_spec,
    samples_per_image,
    out,
    limit,
    from_level,
    temperature,
    seed,
    sampler,
    device,
    as_json,
) -> None:
    """Encode real images and draw K sampled reconstructions of each."""
    from hvqeval.commands import device_from_option
    from hvqeval.reconstruction import GRID, write_reconstructions
    from hvqeval.run_folder import check_run
    from hvqeval.sampling import SamplerOptions, parse_temperatures
    from models import Stage

    card = check_run(run_dir, need_prior=False)
    temperatures = parse_temperatures(temperature, Stage.all_of(card)[:-1])
    report = write_reconstructions(
        run_dir,
        images_spec,
        out,
        samples_per_image,
        limit=limit,
        from_level=from_level,
        temperatures=temperatures,
        seed=seed,
        options=SamplerOptions(sampler),
        device=device_from_option(device),
    )
    mae = sum(report.mean_abs_error) / len(report.mean_abs_error)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "out": str(report.out),
                    "grid": str(report.out / GRID),
                    "images": report.images,
                    "samples_per_image": report.samples_per_image,
                    "from_level": report.from_level,
                    "mean_abs_error": report.mean_abs_error,
                },
                indent=2,
            )
        )
    else:
        click.echo(
            f"{report.out / GRID}: {report.images} image(s) x {report.samples_per_image} reconstruction(s) "
            f"from level {report.from_level}; mean absolute error {mae:.1f} (of 255)"
        )
