"""``hvqeval predictability``: code predictability of auxiliary decoders (Section 7.1, Figure 5).

    hvqeval predictability --run runs/ff_2layers --run runs/msp_5x5 --level 1 --figure reports/fig5.png
    hvqeval predictability --run runs/tiny --level 1 --layers 4 --hidden 32 --steps 500 --json

Trains a small PixelCNN prior on the codes of a level (the paper: 20 layers, 128 units) and
reports its validation NLL in bits per code sub-dimension; lower means the codes are easier to
predict. Each value is appended to the results store as ``code_nll_bpd``.
"""

from __future__ import annotations

import json

import click

from hvqeval.commands import resumable


@click.command(name="predictability")
@click.option(
    "--run", "runs", required=True, multiple=True, metavar="RUN", help="Run folder (repeatable)."
)
@click.option(
    "--level",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Level whose codes to model.",
)
@click.option(
    "--data",
    metavar="PATH",
    help="Images, if the codes still have to be extracted (default: the card's built-in dataset).",
)
@click.option("--layers", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--kernel-size", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True
)
@click.option("--class-conditional", is_flag=True, help="Condition the small prior on the class.")
@click.option(
    "--limit",
    type=click.IntRange(min=2),
    metavar="N",
    help="Use only the first N code maps of each split.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--figure", type=click.Path(dir_okay=False), help="Also plot the values (PNG/PDF/SVG)."
)
@click.option(
    "--results",
    "results_path",
    default="results/results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
)
@click.option("--no-results", is_flag=True, help="Do not write to the results store.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@resumable
def command(
    runs,
    level,
    data,
    layers,
    hidden,
    kernel_size,
    steps,
    batch_size,
    learning_rate,
    class_conditional,
    limit,
    seed,
    device,
    figure,
    results_path,
    no_results,
    as_json,
) -> None:
    """Validation NLL of a small prior trained on each run's level-LEVEL codes (Figure 5)."""
    from hvqeval.commands import device_from_option
    from hvqeval.predictability import PredictabilityConfig, code_predictability, plot, result_row

    config = PredictabilityConfig(
        layers, hidden, kernel_size, steps, batch_size, learning_rate, class_conditional, seed
    )
    dev = device_from_option(device)
    results = [
        code_predictability(run, level, config, data=data, limit=limit, device=dev) for run in runs
    ]
    if not no_results:
        from hvqeval.results import ResultsStore

        ResultsStore(results_path).append([result_row(r) for r in results])
    if figure:
        plot(results, figure)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        c, h, w = r.code_shape
        click.echo(
            f"{r.run} level {r.level} ({r.aux_decoder}; {c}x{h}x{w} codes, {r.code_values} values): "
            f"validation NLL {r.val_bpd:.4f} ± {r.val_stderr:.4f} bits/dim over {r.n_val} maps "
            f"(train {r.train_bpd:.4f})"
        )
    if figure:
        click.echo(f"figure: {figure}", err=True)
