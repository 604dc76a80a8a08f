"""``hvqeval nll``: the joint NLL bound of a trained hierarchy on real images (Appendix F).

    hvqeval nll --run runs/tiny --data shapes --split val --limit 2000
    hvqeval nll --run runs/in128 --data /data/imagenet --split val --json
    torchrun --standalone --nproc_per_node=8 -m hvqeval -- nll --run runs/in128 --data /data/imagenet --split val

Prints every term (-log D_l for each level, -log P for the prior) and the total in bits per
pixel sub-dimension (H x W x 3) with standard errors over images, and appends the rows
``nll_bpd`` and ``nll_bpd_<term>`` to the results store. The total is an upper bound on the
NLL of the pixels (a lower bound on the likelihood), dominated by the pixel term ``level1``;
for a single-level card (``pixelcnn_baseline``, ``tiny_pixelcnn``) it is the exact NLL.
Under ``torchrun`` the images are shared out over the processes; rank 0 prints and stores the
single-process numbers.
"""

from __future__ import annotations

import json

import click


@click.command(name="nll")
@click.option(
    "--run", "run_dir", required=True, metavar="RUN", help="Run folder made by 'hvqeval train'."
)
@click.option(
    "--data",
    metavar="PATH",
    help="Images: dataset root, npz, image folder or built-in name "
    "(default: the card's built-in dataset).",
)
@click.option("--split", default="val", show_default=True)
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Use only the first N images."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Data-loading processes.",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--model",
    "model_label",
    metavar="NAME",
    help="Model label in the results (default: the card name).",
)
@click.option(
    "--results",
    "results_path",
    default="results/results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results store the rows are appended to.",
)
@click.option("--no-results", is_flag=True, help="Do not write to the results store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(
    run_dir,
    data,
    split,
    limit,
    batch_size,
    workers,
    device,
    model_label,
    results_path,
    no_results,
    as_json,
) -> None:
    """Joint NLL of RUN on real images, per term and in total, in bits/dim."""
    from hvqeval.commands import device_from_option
    from hvqeval.nll import evaluate_run
    from hvqeval.sharding import join, leave

    shard = join(device_from_option(device))  # a world of one without torchrun
    try:
        outcome = evaluate_run(
            run_dir,
            data=data,
            split=split,
            limit=limit,
            batch_size=batch_size,
            num_workers=workers,
            device=shard.device,
            model=model_label,
            results=None if no_results else results_path,
            shard=shard,
        )
    finally:
        leave()
    if not shard.is_main:
        return
    result = outcome.result
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": outcome.model,
                    "run": str(run_dir),
                    "data": outcome.reference,
                    **result.to_dict(),
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"{outcome.model} on {outcome.reference}, {result.n} images, bits/dim over "
        f"{result.dims} pixel sub-dims (mean ± standard error):"
    )
    for stat in result.terms:
        click.echo(
            f"  {stat.name:<8} {stat.bpd:8.4f} ± {stat.stderr:.4f}   "
            f"({stat.bits_per_own_dim:.4f} bits per own sub-dim, {stat.bpd / result.total.bpd:5.1%})"
        )
    kind = (
        "exact NLL of the pixels: single-level model"
        if result.exact
        else "upper bound on the NLL: joint over pixels and codes"
    )
    click.echo(f"  {'total':<8} {result.total.bpd:8.4f} ± {result.total.stderr:.4f}   ({kind})")
    if not no_results:
        click.echo(f"appended {len(result.terms) + 1} rows to {results_path}", err=True)
