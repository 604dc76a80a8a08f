"""``hvqeval study serve``: the study web app under gunicorn, checked before it serves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from hvqeval.commands.study.database import database_url_of, db_option


@click.command(name="serve")
@click.option(
    "--bind", default="127.0.0.1:8000", show_default=True, help="Address to listen on (HOST:PORT)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="gunicorn worker processes [default: one per core].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads per worker [default: 1 on SQLite, 2 on PostgreSQL].",
)
@click.option(
    "--secret-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the secret key that signs sessions [default: $HVQEVAL_SECRET_KEY_FILE, "
    "else $HVQEVAL_SECRET_KEY].",
)
@click.option("--access-log", default=None, help="Access log file ('-' for stderr).")
@click.option(
    "--instance-dir",
    default="instance",
    show_default=True,
    help="Image cache (and default database).",
)
@db_option
def serve(bind, workers, threads, secret_key_file, access_log, instance_dir, database_url):
    """Run the study web app under gunicorn. Needs a secret key; admin pages need HVQEVAL_ADMIN_PASSWORD(_HASH).

    Every setting, the database (it must exist: create a study first) and the port are checked
    before anything is served; the first problem is one line.
    """
    from study_app.db import current_revision, head_revision, make_engine, upgrade
    from study_app.server import check_before_serving
    from study_app.server import serve as run_server
    from study_app.settings import check_settings, settings_from_environment

    config = settings_from_environment(os.environ)
    config["DATABASE_URL"] = database_url_of(database_url, instance_dir)
    config["INSTANCE_DIR"] = str(Path(instance_dir).resolve())
    key_file = secret_key_file or os.environ.get("HVQEVAL_SECRET_KEY_FILE")
    if key_file:
        config["SECRET_KEY"] = _read_secret_key(key_file)
    check_settings(config)  # a bad setting is one line before the database is even opened
    engine = make_engine(config["DATABASE_URL"])  # a missing SQLite file is an error, never created
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision is not None and revision != head_revision():
        upgrade(config["DATABASE_URL"])  # a study database of an older version of this code
    config = check_before_serving(config, bind, access_log)
    links = _raters_links(config["DATABASE_URL"], bind)
    _prerender(config)

    def ready(workers, threads):
        click.echo(
            f"serving on http://{bind} with {workers} worker(s) x {threads} thread(s)", err=True
        )
        for line in links:
            click.echo(line, err=True)

    def stopped():
        click.echo(f"stopped serving on http://{bind}", err=True)

    run_server(
        config,
        bind=bind,
        workers=workers,
        threads=threads,
        access_log=access_log,
        on_ready=ready,
        on_exit=stopped,
    )


def _raters_links(database_url: str, bind: str) -> list[str]:
    """A line per study with its raters' link on this server (a crowd platform appends the
    participant's id; a link without one asks for it)."""
    from study_app.db import make_engine
    from study_app.progress import study_links

    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):  # every address: the raters need one of them
        host = "<this machine's address>"
    engine = make_engine(database_url)
    try:
        studies = study_links(engine)
    finally:
        engine.dispose()
    return [
        f"  study {name} ({status}): http://{host}:{port}/s/{public_id}/?PROLIFIC_PID=<participant id>"
        for name, status, public_id in studies
    ]


def _prerender(config: dict) -> None:
    """Every study image upscaled before serving: a progress bar on a terminal, else a line at
    the start, at every tenth and at the end (a service's log shows that start-up is busy)."""
    import time

    from tqdm import tqdm

    from study_app.server import prerender_before_serving

    on_terminal = sys.stderr.isatty()
    bar, started, next_line = None, time.monotonic(), 0

    def shown(done: int, total: int) -> None:
        nonlocal bar, next_line
        if on_terminal:
            if bar is None:
                bar = tqdm(total=total, desc="rendering images", unit="image")
            bar.update(1)
            return
        if done == 1:
            click.echo(f"upscales of {total} image(s): rendering those not yet rendered", err=True)
        if done >= next_line or done == total:
            click.echo(
                f"rendering images: {done}/{total} ({time.monotonic() - started:.0f} s)", err=True
            )
            next_line = done + max(1, total // 10)

    try:
        prerender_before_serving(config, shown)
    finally:
        if bar is not None:
            bar.close()


def _read_secret_key(path: str) -> str:
    from study_app.errors import ConfigurationError

    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigurationError(
            f"--secret-key-file {path}: {err.strerror or err}; write a key there with "
            "`python -c 'import secrets; print(secrets.token_hex(32))' > KEYFILE`"
        ) from None
    if not key:
        raise ConfigurationError(
            f"--secret-key-file {path} is empty; write a key of 16 or more random characters"
        )
    return key
