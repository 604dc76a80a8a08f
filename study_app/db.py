"""Database engines, transactions and schema migrations of the study app.

SQLite (the default, a file in the instance folder) runs in WAL mode with a busy timeout, and
every writing transaction starts with ``BEGIN IMMEDIATE``: writers queue for the write lock up
front, so two writers never both read and then both try to upgrade to a write lock (SQLite's
deadlock); read-only ones (``session_scope(engine, read_only=True)``) start with a plain ``BEGIN``.
That is the recipe of SQLAlchemy's SQLite dialect documentation ("Serializable isolation /
Savepoints / Transactional DDL"). PostgreSQL runs at READ COMMITTED; ``assign.py`` takes the row
locks it needs.

Pooled connections are pinged before use (``pool_pre_ping``), so a restarted or terminated
PostgreSQL connection is replaced instead of failing a request, and a rater's request runs its
database work as one call of ``run_transaction(engine, work)``, which runs a transaction once
more when its connection broke during it.

Engines are made by ``make_engine`` and owned by whoever made them (the Flask app keeps its own
in ``app.extensions``); nothing here caches engines between callers.
Schema changes go through Alembic (``study_app/migrations``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from study_app.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_database_url(instance_dir: str | Path = "instance") -> str:
    return f"sqlite:///{Path(instance_dir).resolve() / 'study.sqlite3'}"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` (and ``postgres://``) and use the psycopg 3 driver for it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"not a database URL: {url!r}; use sqlite:///path/study.sqlite3 or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"unsupported database {parsed.get_backend_name()!r} in {url!r}; "
            "use sqlite:/// or postgresql+psycopg://"
        )
    return parsed.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, create: bool = False) -> Engine:
    """An engine for ``url``. A SQLite file that does not exist is an error unless ``create``."""
    url = normalise_url(url)
    path = sqlite_path(url)
    if path is None and make_url(url).get_backend_name() == "sqlite":
        # Each connection would get a database of its own, gone when it closes: a study made
        # there vanishes, and each server process would see another one.
        raise DatabaseError(
            "the database URL names an in-memory SQLite database, which keeps nothing; give a "
            "file, such as sqlite:///instance/study.sqlite3"
        )
    if path is not None:
        if not path.is_file():
            if not create:
                raise DatabaseError(
                    f"no study database at {path}; create a study first "
                    "(hvqeval study create ...) or pass --database-url"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        _begin_immediate_on_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)


def _begin_immediate_on_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = (
            None  # SQLAlchemy's "begin" event below starts transactions
        )
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=20000",
            "foreign_keys=ON",
        ):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Readers need no write lock: in WAL mode they read a snapshot beside the one writer.
        reading = connection.get_execution_options().get("read_only", False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def run_transaction(engine: Engine, work, read_only: bool = False):
    """``work(connection)`` inside one transaction; committed when it returns.

    ``read_only``: lookups that write nothing. On SQLite they start with a plain ``BEGIN`` (no
    write lock: in WAL mode they read a snapshot beside the one writer); on PostgreSQL they run
    in autocommit, each statement one round trip instead of three (``BEGIN``, it, ``COMMIT``),
    so a ``work`` that reads must not need one snapshot across its statements. The pooled
    connection comes back transactional either way.

    A transaction whose connection broke underneath it is run once more on a fresh connection:
    it was rolled back as a whole, so a second run cannot store anything twice.
    """
    for attempt in (1, 2):
        try:
            with engine.connect() as connection:
                if read_only:  # options set before the transaction begins
                    connection.execution_options(read_only=True)
                    if connection.dialect.name == "postgresql":
                        connection.execution_options(isolation_level="AUTOCOMMIT")
                with connection.begin():
                    return work(connection)
        except DBAPIError as err:
            if attempt == 2 or not err.connection_invalidated:
                raise


@contextlib.contextmanager
def session_scope(engine: Engine, read_only: bool = False):
    """An ORM session in one transaction, committed on success (the admin pages and commands;
    a rater's requests use ``run_transaction``). ``read_only`` transactions take no write lock
    on SQLite (plain ``BEGIN``); they must not write."""
    from sqlalchemy.orm import Session

    bind = engine.execution_options(read_only=True) if read_only else engine
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` (Alembic); creates a missing SQLite file."""
    _migrate(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to ``revision`` (Alembic), e.g. before running older code."""
    _migrate(url, "downgrade", revision)


def _migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command

    engine = make_engine(url, create=True)
    try:
        with engine.begin() as connection:
            getattr(command, direction)(_alembic_config(connection), revision)
    except OperationalError as err:
        raise unreachable(url, err) from None
    finally:
        engine.dispose()


def unreachable(url: str, err: OperationalError) -> DatabaseError:
    """One line: the driver's first line of complaint (its hints follow on further lines)."""
    reason = (
        str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else type(err.orig).__name__
    )
    return DatabaseError(f"cannot reach the study database {safe_url(url)}: {reason}")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as err:
        raise unreachable(str(engine.url), err) from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def require_current_schema(engine: Engine) -> None:
    """Raise a clear error unless the database is reachable and migrated to the latest schema."""
    url = engine.url.render_as_string(hide_password=False)
    current = current_revision(engine)
    if current is None:
        raise DatabaseError(
            f"no study tables in {safe_url(url)}; create a study first "
            "(hvqeval study create ...) or run `hvqeval study migrate`"
        )
    if current != head_revision():
        raise DatabaseError(
            f"the study database {safe_url(url)} is at schema {current}, this code needs "
            f"{head_revision()}; run `hvqeval study migrate --database-url ...`"
        )


@contextlib.contextmanager
def open_database(url: str):
    """An engine for an existing, current study database, disposed on exit (the CLI's commands)."""
    engine = make_engine(url)
    try:
        require_current_schema(engine)
        yield engine
    finally:
        engine.dispose()


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
