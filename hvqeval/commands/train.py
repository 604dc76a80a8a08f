"""``hvqeval train``: train one stage of a hierarchy, or all of them in order (Algorithm 1).

    hvqeval train --config tiny_ff --out runs/tiny --level 1        # level-1 autoencoder
    hvqeval train --config tiny_ff --out runs/tiny --prior          # prior on the top codes
    hvqeval train --config tiny_ff --out runs/tiny --all            # every stage, bottom-up
    torchrun --nproc_per_node=8 -m hvqeval train --config imagenet128_ff --data /data/imagenet --out runs/in128 --all

Stopping with Ctrl-C saves a checkpoint; rerunning the same command continues from it.
Before a stage above level 1, the codes of the level below are extracted into the run folder.
"""

from __future__ import annotations

import json
import os

import click

from hvqeval.commands import resumable

# Earlier spellings of the precision names, still accepted on the command line.
SHORT_PRECISIONS = {"bf16": "bfloat16", "fp32": "float32"}


@click.command(name="train")
@click.option(
    "--config",
    "card_name",
    metavar="CARD",
    help="Model card: built-in name or .toml path (default: the run folder's config.json).",
)
@click.option(
    "--data", metavar="PATH", help="Training images (default: the card's built-in dataset)."
)
@click.option("--out", "run_dir", required=True, metavar="DIR", help="Run folder, e.g. runs/NAME.")
@click.option("--level", type=click.IntRange(min=1), help="Train autoencoder level N (1 = pixels).")
@click.option(
    "--prior", "train_prior", is_flag=True, help="Train the prior on the top-level codes."
)
@click.option("--all", "train_all", is_flag=True, help="Train every stage in order (Algorithm 1).")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Train each stage until this step (default: the card's iterations).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a card value (repeatable).",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "bfloat16", *SHORT_PRECISIONS]),
    default="auto",
    show_default=True,
    help="auto = bfloat16 autocast on GPUs, float32 on CPUs (bf16 and fp32 are accepted too).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Data-loading processes.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Use only the first N items of each split (quick runs).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    metavar="STEPS",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@resumable
def command(
    card_name,
    data,
    run_dir,
    level,
    train_prior,
    train_all,
    steps,
    overrides,
    device,
    precision,
    workers,
    limit,
    checkpoint_every,
    seed,
    as_json,
) -> None:
    """Train a stage of a hierarchical model into the run folder --out."""
    from pathlib import Path

    from models import (
        CONFIG_FILE,
        ConfigError,
        Stage,
        TrainOptions,
        load_card,
        read_run_config,
        setup_launch,
        train_stage,
    )

    chosen = [
        flag
        for flag, on in (
            ("--level", level is not None),
            ("--prior", train_prior),
            ("--all", train_all),
        )
        if on
    ]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --level N, --prior or --all")
    if card_name is None:
        if not (Path(run_dir) / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{run_dir} is not a run folder yet: pass --config CARD (e.g. tiny_ff)"
            )
        if overrides:
            raise ConfigError(
                "--set needs --config: overrides apply to a card, not to an existing run"
            )
        card = read_run_config(run_dir)
    else:
        card = load_card(card_name, overrides)
    if level is not None and not card.level:
        raise ConfigError(
            f"card '{card.name}' is a single-level PixelCNN on pixels: its only stage is "
            "the prior; use --prior or --all"
        )
    if level is not None and level > len(card.level):
        raise ConfigError(
            f"card '{card.name}' has {len(card.level)} autoencoder level(s); "
            f"--level must be 1..{len(card.level)} (the prior is --prior)"
        )
    stages = (
        Stage.all_of(card) if train_all else [Stage.PRIOR if train_prior else Stage.of_level(level)]
    )
    options = TrainOptions(
        steps=steps,
        device=device,
        precision=SHORT_PRECISIONS.get(precision, precision),
        num_workers=workers,
        checkpoint_every=checkpoint_every,
        seed=seed,
        progress=True,
        limit=limit,
    )
    launch = setup_launch(device)
    results = []
    for stage in stages:
        result = train_stage(card, run_dir, stage, data, options, launch)
        results.append(result)
        if launch.is_main and not as_json:
            click.echo(_describe(result))
    if launch.is_main and as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "stage": r.stage,
                        "step": r.step,
                        "steps_trained": r.steps_trained,
                        "checkpoint": os.fspath(r.checkpoint),
                        "seconds": round(r.seconds, 3),
                        "steps_per_s": None
                        if r.steps_trained == 0
                        else round(r.steps_per_second, 4),
                        "metrics": r.metrics,
                    }
                    for r in results
                ],
                indent=2,
            )
        )


def _describe(result) -> str:
    if result.steps_trained == 0:
        return f"{result.stage}: already trained to step {result.step} ({result.checkpoint})"
    metrics = result.metrics
    parts = [f"{result.stage}: step {result.step}", f"{result.steps_per_second:.2f} steps/s"]
    if "bpd" in metrics:
        parts.append(f"train {metrics['bpd']:.3f} bits/dim")
    if "usage" in metrics:
        parts.append(
            f"codebook usage {metrics['usage']:.2f}, perplexity {metrics['perplexity']:.1f}"
        )
    return ", ".join(parts) + f" -> {result.checkpoint}"
