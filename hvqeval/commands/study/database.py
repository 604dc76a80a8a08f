"""The ``--database-url`` option of the study commands and the URL it stands for."""

from __future__ import annotations

import os

import click

DB_HELP = (
    "SQLAlchemy URL of the study database (default: $HVQEVAL_STUDY_DATABASE_URL, else "
    "sqlite:///instance/study.sqlite3; deployments: postgresql+psycopg://user@host/db)."
)


def database_url_of(value: str | None, instance_dir: str = "instance") -> str:
    """The database a command works on: ``--database-url``, else the environment's, else the
    SQLite file in the instance folder."""
    from study_app.db import default_database_url, normalise_url

    return normalise_url(
        value or os.environ.get("HVQEVAL_STUDY_DATABASE_URL") or default_database_url(instance_dir)
    )


def db_option(f):
    """The ``--database-url`` option (read with ``database_url_of``)."""
    return click.option("--database-url", "database_url", default=None, help=DB_HELP)(f)
