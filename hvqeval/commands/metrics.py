"""``hvqeval metrics``: IS / FID / KID / precision-recall of a sample set (paper Section 6, Table 1).

    hvqeval metrics --samples samples/tiny_ff --reference shapes:val --metrics isc,fid,kid
    torchrun --standalone --nproc_per_node=8 -m hvqeval -- metrics --samples samples/in128 --reference /data/imagenet:val
    hvqeval metrics batch spec.toml

Every value is appended to the results store (``--results``, default
``results/results.jsonl``) with the settings that produced it; the table (or ``--json``) goes
to stdout, progress to stderr. Under ``torchrun`` the feature extraction (the expensive part)
is shared out over the processes and gathered in order, every process computes the same
values, and rank 0 alone prints and stores them.
"""

from __future__ import annotations

import json
import sys

import click

from hvqeval.commands import resumable

_SETTINGS_OPTIONS = [
    click.option(
        "--metrics",
        "metrics",
        default="isc,fid",
        show_default=True,
        help="Comma-separated: isc, fid, kid, prc.",
    ),
    click.option(
        "--extractor",
        default="inception-v3-compat",
        show_default=True,
        type=click.Choice(["inception-v3-compat", "domain", "vgg16", "resnet50"]),
        help="Feature network (domain = the classifier written by `hvqeval features train`).",
    ),
    click.option(
        "--inception-weights",
        type=click.Path(dir_okay=False),
        envvar="HVQEVAL_INCEPTION_WEIGHTS",
        help="torch-fidelity InceptionV3 weights file (offline use); env HVQEVAL_INCEPTION_WEIGHTS.",
    ),
    click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        help="Weights file of a non-Inception extractor (required for --extractor domain).",
    ),
    click.option(
        "--per-class", is_flag=True, help="Also class-conditional FID per class and its mean."
    ),
    # Defaults equal torch-fidelity's (seed 2020, 10 splits, 100 KID subsets of 1000).
    click.option(
        "--splits",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="IS splits (of shuffled samples).",
    ),
    click.option(
        "--seed",
        default=2020,
        show_default=True,
        help="Seed of IS shuffling, KID subsets, bootstrap (2020, torch-fidelity's default).",
    ),
    click.option("--kid-subsets", type=click.IntRange(min=1), default=100, show_default=True),
    # an unbiased MMD estimate needs at least 2 samples per subset (else 0/0: NaN)
    click.option("--kid-subset-size", type=click.IntRange(min=2), default=1000, show_default=True),
    click.option(
        "--prc-neighbourhood",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="k of the k-NN balls of precision/recall (torch-fidelity's prc_neighborhood).",
    ),
    click.option(
        "--image-size",
        type=click.IntRange(min=1),
        default=None,
        help="Rescale (shortest side) and centre-crop both inputs to this size first.",
    ),
    click.option(
        "--fid-infinity",
        is_flag=True,
        help="Also FID extrapolated to infinite n (Chong & Forsyth 2020).",
    ),
    click.option(
        "--bootstrap",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Bootstrap resamples for a FID interval (0 = off).",
    ),
    click.option(
        "--tf32/--no-tf32",
        default=False,
        show_default=True,
        help="Allow TF32 on CUDA (faster, less exact); recorded with every result.",
    ),
    click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
    click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
    click.option(
        "--num-workers",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="DataLoader workers decoding images.",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Reference-statistics cache (default $HVQEVAL_CACHE or ~/.cache/hvqeval).",
    ),
    click.option(
        "--no-cache", is_flag=True, help="Do not read or write cached reference statistics."
    ),
    click.option(
        "--model", default=None, help="Model name to record when SET is not a sample set."
    ),
]


def _with_settings_options(func):
    for option in reversed(_SETTINGS_OPTIONS):
        func = option(func)
    return func


def settings_from_options(options: dict, quiet: bool = False):
    from hvqeval.metrics.evaluation import EvalSettings

    weights = (
        options["inception_weights"]
        if options["extractor"] == "inception-v3-compat"
        else options["weights"]
    )
    return EvalSettings(
        metrics=tuple(m.strip() for m in options["metrics"].split(",") if m.strip()),
        extractor=options["extractor"],
        weights=weights,
        per_class=options["per_class"],
        splits=options["splits"],
        seed=options["seed"],
        kid_subsets=options["kid_subsets"],
        kid_subset_size=options["kid_subset_size"],
        prc_neighbourhood=options["prc_neighbourhood"],
        image_size=options["image_size"],
        fid_infinity=options["fid_infinity"],
        bootstrap=options["bootstrap"],
        tf32=options["tf32"],
        batch_size=options["batch_size"],
        device=options["device"],
        num_workers=options["num_workers"],
        cache_dir=options["cache_dir"],
        use_cache=not options["no_cache"],
        progress=not quiet,
        model=options["model"],
    )


@click.group("metrics", invoke_without_command=True)
@click.option(
    "--samples", "samples", help="Sample set, image folder, class-folder dataset or npz array."
)
@click.option(
    "--reference",
    "reference",
    help="Reference: folder, dataset (shapes:val, fashion_mnist:test), npz.",
)
@_with_settings_options
@click.option(
    "--results",
    "results_path",
    default="results/results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results store (JSONL) to append to.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@click.pass_context
def command(ctx, samples, reference, results_path, as_json, **options):
    """IS, FID, KID and precision/recall of SAMPLES against REFERENCE; appends to the results store."""
    if ctx.invoked_subcommand is not None:
        return
    if not samples:
        raise click.UsageError("--samples is required (or use `hvqeval metrics batch SPEC.toml`)")
    import dataclasses
    import warnings

    from hvqeval.metrics.evaluation import evaluate
    from hvqeval.metrics.features import pick_device
    from hvqeval.results import ResultsStore, print_rows
    from hvqeval.sharding import join, leave

    settings = settings_from_options(options)
    shard = join(pick_device(settings.device))  # a world of one without torchrun
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # surfaced below as one line each
            outcome = evaluate(
                samples,
                reference,
                settings if shard.is_main else dataclasses.replace(settings, progress=False),
            )
    finally:
        leave()
    if not shard.is_main:
        return
    ResultsStore(results_path).append(outcome.rows)
    for note in outcome.warnings:
        click.echo(f"Warning: {note}", err=True)
    click.echo(
        f"reference statistics: {outcome.reference_cache}; {len(outcome.rows)} row(s) appended to "
        f"{results_path}",
        err=True,
    )
    rows = [r.to_dict() for r in outcome.rows]
    if as_json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_rows(rows)


@command.command("batch")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--results",
    "results_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Results store (default: the spec's `results`, else results/results.jsonl).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary rows as JSON.")
@click.option(
    "--dry-run", is_flag=True, help="List the jobs and which are already done; compute nothing."
)
@resumable
def batch_command(spec, results_path, as_json, dry_run):
    """Run many sample sets x metrics x references from a TOML SPEC; resumable (skips stored rows)."""
    import os

    from hvqeval.metrics.batch import load_spec, run_batch
    from hvqeval.results import print_rows

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError(
            "metrics batch runs in one process; start it without torchrun "
            "(or shard each job: torchrun ... -m hvqeval -- metrics --samples ...)"
        )

    plan = load_spec(spec, results_override=results_path)
    rows = run_batch(plan, dry_run=dry_run)
    if dry_run:
        return
    if as_json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_rows(rows)
