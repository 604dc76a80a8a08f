"""``hvqeval study``: create, serve and export human studies (paper Section 7.3, Appendix G).

hvqeval study create rating   --name NAME --model LABEL=SET ... [--real LABEL=DATASET] ...
hvqeval study create pairwise --name NAME --source LABEL=SET --source LABEL=SET ... [--pair A:B]
hvqeval study pairings --n-a 50 --n-b 50 --uses 10 --seed 0 [--out pairs.csv]
hvqeval study serve    [--bind 127.0.0.1:8000] [--workers 4] [--secret-key-file PATH]
hvqeval study export   --study NAME --out responses.csv
hvqeval study codes    STUDY [--check platform.csv]
hvqeval study list | open NAME | close NAME | migrate | hash-password

One module per command (``list``, ``open`` and ``close`` share ``status``); each takes the
study database as ``--database-url`` (``database``). The web app, the database and the
analysis are ``study_app``'s and ``analysis``'s; these modules only read options and print.
"""

from __future__ import annotations

import click

from hvqeval.commands.study import (
    codes,
    create,
    export,
    hash_password,
    migrate,
    pairings,
    serve,
    status,
)


@click.group(name="study")
def command() -> None:
    """Human realism-rating and pairwise-preference studies (web app, database, export)."""


for subcommand in (
    create.command,
    pairings.pairings,
    serve.serve,
    export.export_cmd,
    codes.codes_cmd,
    status.list_cmd,
    status.open_cmd,
    status.close_cmd,
    migrate.migrate,
    hash_password.hash_password,
):
    command.add_command(subcommand)
