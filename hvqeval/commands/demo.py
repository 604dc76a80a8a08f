"""``hvqeval demo``: the whole pipeline end to end on this machine (see hvqeval/demo/)."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from hvqeval.commands import resumable


@click.command(name="demo")
@click.option(
    "--out",
    default="demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for runs, samples, results, studies and report.html.",
)
@click.option(
    "--minutes",
    default=15.0,
    show_default=True,
    type=float,
    help="Wall-clock budget of the whole run; training gets what the other steps leave.",
)
@click.option(
    "--database-url", default=None, help="Study database (default: SQLite in the demo folder)."
)
@click.option(
    "--all-steps",
    is_flag=True,
    help="Run the baseline and the temperature sweep even when --minutes cannot pay for them "
    "(by default they are left out, and reported, when time runs short).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@resumable
def command(
    out: str, minutes: float, database_url: str | None, all_steps: bool, as_json: bool
) -> None:
    """Train FF and MSP hierarchies, sample, evaluate, and set up human studies.

    Rerunning the same command reuses every finished step and continues the one that was
    under way; Ctrl-C stops at once (exit status 130) and leaves nothing half-written.
    Progress goes to stderr.
    """
    from hvqeval.demo import run_demo
    from hvqeval.demo.quality import ADVICE, ModelQuality

    # The sub-commands print their own summaries; keep stdout for the demo's summary.
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_demo(out, minutes, "shapes", database_url, all_steps=all_steps)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"report: {summary['report']}  ({summary['seconds_all_runs'] / 60:.1f} minutes)")
    quality = [ModelQuality(**q) for q in summary["quality"]]
    for q in quality:
        click.echo(f"  {q.summary()}")
    if any(q.warnings for q in quality):
        click.echo(f"  Note: {ADVICE}.")
    for cut in summary["cuts"]:
        click.echo(f"  Cut to fit --minutes: {cut}.")
    click.echo(
        "studies: serve them with this line (it reads the secret key and admin password files "
        "the demo wrote), then open a link in a browser:"
    )
    click.echo(f"  {summary['serve_command']}")
    for name, url in sorted(summary["studies"].items()):
        click.echo(f"  {name}: {url}")
