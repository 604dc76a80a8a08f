"""``hvqeval study export``: every answer of a study as one CSV row."""

from __future__ import annotations

import click

from hvqeval.commands.study.database import database_url_of, db_option


@click.command(name="export")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV file to write.")
@db_option
def export_cmd(study_name, out, database_url):
    """Write every answer as one CSV row (columns documented in the README, "Human studies")."""
    from study_app.export import write_csv

    count = write_csv(database_url_of(database_url), study_name, out)
    click.echo(f"wrote {count} answers to {out}", err=True)
