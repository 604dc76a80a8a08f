"""``hvqeval study pairings``: a pairing design alone (every sample used exactly u times)."""

from __future__ import annotations

import click


@click.command(name="pairings")
@click.option("--n-a", type=int, required=True, help="Samples of model A.")
@click.option("--n-b", type=int, required=True, help="Samples of model B.")
@click.option("--uses", type=int, default=None, help="Uses of every sample (both sides).")
@click.option(
    "--uses-a", type=int, default=None, help="Uses of every A sample (instead of --uses)."
)
@click.option(
    "--uses-b", type=int, default=None, help="Uses of every B sample (instead of --uses)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the design to this CSV.",
)
def pairings(n_a, n_b, uses, uses_a, uses_b, seed, out):
    """Print a pairing design (CSV columns pair, a, b): every sample used exactly u times, no repeated pair."""
    import csv
    import io

    from study_app.errors import PairingError
    from study_app.pairing import design_pairs

    uses_a = uses_a if uses_a is not None else uses
    uses_b = uses_b if uses_b is not None else uses
    if uses_a is None or uses_b is None:
        raise PairingError("give --uses (or both --uses-a and --uses-b)")
    design = design_pairs(n_a, n_b, uses_a, uses_b, seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["pair", "a", "b"])
    writer.writerows((i, a, b) for i, (a, b) in enumerate(design.pairs))
    click.echo(buffer.getvalue(), nl=False)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(buffer.getvalue())
    click.echo(
        f"{design.num_pairs} pairs: {n_a} A samples x {uses_a} uses, {n_b} B samples x {uses_b} uses, "
        f"no repeated pair (seed {seed})",
        err=True,
    )
