"""``hvqeval sample``: draw a class-conditional sample set from a trained run (Algorithm 4).

    hvqeval sample --run runs/tiny --classes all --per-class 50 --temperature 0.98 --out samples/tiny
    hvqeval sample --run runs/in128 --classes 0-19 --per-class 50 --temperature prior=0.97,level1=1.0 \\
        --sampler cached --precision bfloat16 --out samples/in128_t097
    torchrun --standalone --nproc_per_node=8 -m hvqeval -- sample --run runs/in128 --classes all --per-class 50 ...

Writes lossless PNGs and ``manifest.json`` (see ``hvqeval.sample_set``) as batches finish.
Stopping the command keeps every finished batch; rerunning it continues and yields the same
files as a run that was never interrupted. Under ``torchrun`` the batches are shared out
over the processes (``hvqeval.sharding``) and the files are the same as with one process
(the ``--`` after ``-m hvqeval`` ends torchrun's options: it would take ``--run`` for its
``--run-path``).
"""

from __future__ import annotations

import json

import click

from hvqeval.commands import resumable


@click.command(name="sample")
@click.option(
    "--run", "run_dir", required=True, metavar="RUN", help="Run folder made by 'hvqeval train'."
)
@click.option(
    "--classes",
    default="all",
    show_default=True,
    metavar="IDS",
    help="Class ids: all, 0,1,2 or ranges like 0-9.",
)
@click.option(
    "--per-class", type=click.IntRange(min=1), required=True, metavar="N", help="Images per class."
)
@click.option(
    "--temperature",
    default="1.0",
    show_default=True,
    metavar="T",
    help="Softmax temperature: one number, or per stage like prior=0.97,level1=1.0.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--sampler",
    type=click.Choice(["cached", "naive"]),
    default="cached",
    show_default=True,
    help="cached: incremental (fast); naive: a full forward pass per value (reference).",
)
@click.option(
    "--batch-size",
    "batch_size",
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Images per batch; auto: the largest that fits the device. Only the speed "
    "depends on it: every image has its own seed.",
)
@click.option("--out", required=True, metavar="DIR", help="Sample-set folder, e.g. samples/NAME.")
@click.option(
    "--save-codes", is_flag=True, help="Also keep the sampled codes of every level (npz per batch)."
)
@click.option(
    "--model",
    "model_label",
    metavar="NAME",
    help="Model label in the manifest and later results (default: the card name).",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Arithmetic of the sampling networks (bfloat16 for GPUs).",
)
@click.option(
    "--cuda-graph", is_flag=True, help="Replay each cached step as a CUDA graph (CUDA only)."
)
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    metavar="K",
    help="Stop after K batches in this call; rerun the same command to continue.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@resumable
def command(
    run_dir,
    classes,
    per_class,
    temperature,
    seed,
    sampler,
    batch_size,
    out,
    save_codes,
    model_label,
    device,
    precision,
    cuda_graph,
    max_batches,
    as_json,
) -> None:
    """Draw PER_CLASS samples of every chosen class into a sample set."""
    from hvqeval.commands import device_from_option
    from hvqeval.run_folder import check_run
    from hvqeval.sampling import (
        SampleRequest,
        SamplerOptions,
        generate_sample_set,
        parse_classes,
        parse_temperatures,
    )
    from hvqeval.sharding import join, leave
    from models import Stage

    size = _batch_size(batch_size)
    card = check_run(run_dir, need_prior=True)
    request = SampleRequest(
        run=run_dir,
        classes=tuple(parse_classes(classes, card.model.num_classes)),
        per_class=per_class,
        temperatures=parse_temperatures(temperature, Stage.all_of(card)),
        seed=seed,
        batch_size=size,
        options=SamplerOptions(sampler, precision, cuda_graph),
        save_codes=save_codes,
        model=model_label,
    )
    shard = join(device_from_option(device))  # a world of one without torchrun
    try:
        report = generate_sample_set(
            request, out, device=shard.device, max_batches=max_batches, shard=shard
        )
    finally:
        leave()
    if not shard.is_main:
        return
    summary = {
        "sample_set": str(report.path),
        "images": len(report.manifest["files"]),
        "total": report.total,
        "made_now": report.made_now,
        "already_there": report.already_there,
        "complete": report.complete,
        "model": report.manifest["model"],
        "temperature": report.manifest["temperature"],
        "seed": seed,
        "sampler": sampler,
        "batch_size": report.batch_size,
        "processes": report.processes,
        "seconds": round(report.seconds, 3),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif report.complete:
        click.echo(
            f"{report.path}: {report.total} images of {len(request.classes)} class(es) "
            f"({report.made_now} new, {report.already_there} already there)"
        )
    else:
        click.echo(
            f"{report.path}: {summary['images']} of {report.total} images so far; "
            "rerun the same command to continue"
        )


def _batch_size(text: str) -> int | None:
    """``--batch-size``: a positive integer, or ``auto`` (None: the largest that fits)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise click.BadParameter(
            f"{text!r} is neither a positive whole number nor auto", param_hint="'--batch-size'"
        )
    return value
