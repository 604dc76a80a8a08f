"""``hvqeval models``: list the model cards and show one resolved card."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from models import ModelCard

# Paper notation next to the card keys they correspond to (Table 4).
_PAPER_NAMES = {
    "prior.layers": "l",
    "prior.hidden": "h",
    "prior.residual_hidden": "r",
    "prior.timing": "timing",
    "prior.attention_layers": "a",
    "prior.attention_heads": "ah",
    "prior.dropout": "do",
    "prior.training.batch_size": "bs",
    "prior.training.iterations": "iters",
}


def _lines(data, prefix: str = "", indent: int = 0):
    pad = "  " * indent
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield f"{pad}[{key}]"
            yield from _lines(value, path, indent + 1)
        elif value is None:
            continue
        else:
            note = f"   ({_PAPER_NAMES[path]})" if path in _PAPER_NAMES else ""
            yield f"{pad}{key} = {json.dumps(value)}{note}"


def parameter_lines(card: ModelCard) -> list[str]:
    """Trainable parameters of every network, per stage (counted on the meta device)."""
    from models import count_parameters, format_count

    rows = count_parameters(card)
    out = ["parameters:"]
    for stage in dict.fromkeys(r.stage for r in rows):
        stage_rows = [r for r in rows if r.stage == stage]
        total = sum(r.parameters for r in stage_rows)
        parts = ", ".join(
            f"{r.network} {format_count(r.parameters)}" for r in stage_rows if r.parameters
        )
        out.append(
            f"  {stage}: {format_count(total)} ({total:,})"
            + (f" = {parts}" if len(stage_rows) > 1 else "")
        )
    return out


def card_summary(card: ModelCard) -> list[str]:
    """Human-readable lines: the hierarchy at a glance, then every resolved value."""
    from models import compression_ratio, downsampling_factor

    out = [f"{card.name}: {card.model.description}", f"source: {card.model.source}", ""]
    out.append(
        f"hierarchy: {len(card.level) + 1} levels ({len(card.level)} autoencoder(s) + prior)"
    )
    for i, lvl in enumerate(card.level):
        ch, values, res = card.level_input(i)
        c = lvl.codes
        out.append(
            f"  level {i + 1}: {res}x{res}x{ch} ({values} values) -> {c.resolution}x{c.resolution}x"
            f"{c.channels} codes of {c.bits} bits; downsampling x{downsampling_factor(card, i)}, "
            f"compression {compression_ratio(card, i):g}x, aux decoder {lvl.aux_decoder.kind}"
        )
    top = card.top_codes
    what = "pixels (single-level PixelCNN, exact NLL)" if card.is_single_level else "codes"
    out.append(
        f"  prior on {top.resolution}x{top.resolution}x{top.channels} {what}, {card.model.num_classes} classes"
    )
    out.append("")
    out.extend(parameter_lines(card))
    out.append("")
    data = card.to_dict()
    notes = data.pop("note", [])
    for i, lvl in enumerate(data.pop("level")):
        out.append(f"[level {i + 1}]")
        out.extend(_lines(lvl, f"level.{i}", 1))
    out.extend(_lines(data))
    if notes:  # the card's [[note]] tables: values that are interpretations or not in the paper
        out.extend(["", "notes:"])
        out.extend(f"  {n['key']} ({n['kind']}): {n['text']}" for n in notes)
    return out


@click.group(name="models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the card names as a JSON list.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List the model cards (models/configs/*.toml)."""
    if ctx.invoked_subcommand is not None:
        return
    from models import list_cards, load_card

    names = list_cards()
    if as_json:
        click.echo(json.dumps(names))
        return
    for name in names:
        card = load_card(name)
        click.echo(f"{name:18s} {card.model.description}")


@command.command(name="show")
@click.argument("name")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value, e.g. level.0.training.iterations=100 (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved card as JSON.")
def show(name: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved card NAME (a built-in name or a path to a .toml file)."""
    from models import load_card

    card = load_card(name, overrides)
    if as_json:
        click.echo(card.to_json())
        return
    click.echo("\n".join(card_summary(card)))
