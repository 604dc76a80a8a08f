"""``hvqeval study hash-password``: the hash of an admin password, for the environment."""

from __future__ import annotations

import sys

import click


@click.command(name="hash-password")
def hash_password():
    """Read an admin password from the terminal and print its hash for HVQEVAL_ADMIN_PASSWORD_HASH."""
    from werkzeug.security import generate_password_hash

    from study_app.settings import check_admin_password

    password = click.prompt("admin password", hide_input=True, confirmation_prompt=True, err=True)
    check_admin_password(password, "hash-password")
    click.echo(generate_password_hash(password))
    sys.stdout.flush()
