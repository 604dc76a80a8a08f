"""``hvqeval study migrate``: create or upgrade the study database's schema."""

from __future__ import annotations

import click

from hvqeval.commands.study.database import database_url_of, db_option


@click.command(name="migrate")
@db_option
def migrate(database_url):
    """Create or upgrade the study database schema (Alembic)."""
    from study_app.db import current_revision, make_engine, upgrade

    url = database_url_of(database_url)
    upgrade(url)
    engine = make_engine(url)
    try:
        click.echo(f"schema at revision {current_revision(engine)}", err=True)
    finally:
        engine.dispose()
