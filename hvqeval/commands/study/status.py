"""``hvqeval study list | open | close``: the studies, their progress and whether they admit raters."""

from __future__ import annotations

import json

import click

from hvqeval.commands.study.database import database_url_of, db_option


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document) instead of text.")
@db_option
def list_cmd(as_json, database_url):
    """Studies with their progress."""
    from dataclasses import asdict

    from study_app.db import open_database
    from study_app.progress import study_names, study_progress

    with open_database(database_url_of(database_url)) as engine:
        found = [study_progress(engine, n) for n in study_names(engine)]
    if as_json:
        click.echo(
            json.dumps([{k: v for k, v in asdict(p).items() if k != "groups"} for p in found])
        )
        return
    for p in found:
        click.echo(
            f"{p.name:24s} {p.kind:9s} {p.status:7s} {p.done}/{p.needed} answers, {p.raters_text}, "
            f"{p.checks_text}, link /s/{p.public_id}/"
        )
    if not found:
        click.echo("no studies", err=True)


def _set_status(name: str, status: str, database_url: str | None) -> None:
    from study_app.db import open_database, session_scope
    from study_app.progress import set_status
    from study_app.schema import no_study_named

    with open_database(database_url_of(database_url)) as engine:
        if not set_status(engine, name, status):
            with session_scope(engine, read_only=True) as session:
                raise no_study_named(session, name)
    click.echo(f"study {name} is {status}", err=True)


@click.command(name="open")
@click.argument("name")
@db_option
def open_cmd(name, database_url):
    """Open a study: raters get tasks."""
    _set_status(name, "open", database_url)


@click.command(name="close")
@click.argument("name")
@db_option
def close_cmd(name, database_url):
    """Close a study: no new tasks (answers to tasks already handed out are still stored)."""
    _set_status(name, "closed", database_url)
