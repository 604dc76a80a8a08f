"""Database engines, transactions and schema migrations for the study app.

SQLite (the default, a file in the instance folder) runs in WAL mode with a busy timeout,
and every writing transaction starts with ``BEGIN IMMEDIATE`` so two writers never both
read and then both try to upgrade to a write lock (the classic SQLite deadlock). PostgreSQL
runs at READ COMMITTED; the claim queries in ``assign.py`` are written for it.
Schema changes go through Alembic (``study_app/migrations``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session

from study_app.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_ENGINES: dict[str, Engine] = {}
_WRITERS: dict[int, Engine] = {}  # id(engine) -> the same engine with BEGIN IMMEDIATE (SQLite)
_LOCK = threading.Lock()
# A pooled PostgreSQL connection idle for longer than this is pinged before use (a server
# restart or an idle timeout may have closed it); one in steady use is not, which saves a
# round trip per request. A connection that breaks in use is dropped from the pool.
PING_AFTER_IDLE_SECONDS = 2.0


def default_database_url(instance_dir: str | Path = "instance") -> str:
    path = Path(instance_dir).resolve() / "study.sqlite3"
    return f"sqlite:///{path}"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` (and ``postgres://``) and use the psycopg 3 driver for it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {url!r}; use sqlite:///path/study.sqlite3 or "
                            "postgresql+psycopg://user@host/dbname") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r} in {url!r}; "
                            "use sqlite:/// or postgresql+psycopg://")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cursor.execute("PRAGMA busy_timeout=20000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since > PING_AFTER_IDLE_SECONDS:
            try:
                ok = engine.dialect.do_ping(dbapi_connection)
            except Exception as err:  # noqa: BLE001 - any failure means: use a new connection
                raise DisconnectionError(f"stale pooled connection: {err}") from err
            if not ok:
                raise DisconnectionError("stale pooled connection")


def get_engine(url: str) -> Engine:
    """One engine per URL and process (engines hold the connection pool)."""
    engine = _ENGINES.get(url)  # the app passes an already normalised URL: no parsing per request
    if engine is not None:
        return engine
    url = normalise_url(url)
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                path = make_url(url).database
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, pool_size=8, max_overflow=16)
                _configure_sqlite(engine)
            else:
                engine = create_engine(url, pool_size=8, max_overflow=16)
                _ping_idle_connections(engine)
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (before forking servers, and at the end of tests)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _WRITERS.clear()
        _WRITER_QUEUES.clear()


def _forget_engines_in_child() -> None:
    # A forked child must never use the parent's pooled connections (one socket, two
    # processes): drop them without closing, the parent still owns them.
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()
    _WRITERS.clear()
    _WRITER_QUEUES.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)


@contextlib.contextmanager
def write_session(engine: Engine):
    """A session whose transaction takes the write lock up front on SQLite; commits on success."""
    bind = engine.execution_options(sqlite_immediate=True) if is_sqlite(engine) else engine
    with Session(bind, expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextlib.contextmanager
def write_transaction(engine: Engine):
    """A Core connection in a transaction that takes the write lock up front on SQLite."""
    bind = engine
    if is_sqlite(engine):
        bind = _WRITERS.get(id(engine))
        if bind is None:
            bind = _WRITERS[id(engine)] = engine.execution_options(sqlite_immediate=True)
    with bind.begin() as connection:
        yield connection


class SqliteWriterQueue:
    """Hands SQLite's write lock to the hot paths' writers in turn, across threads and processes.

    SQLite's busy handler makes a blocked writer sleep and try again (after 1, 2, 5, 10, ... up
    to 100 ms), so with many writers one may sleep on for tens of milliseconds after the lock
    was released: the tail of the answer latency under load. Before ``BEGIN IMMEDIATE`` a hot
    path writer therefore takes an exclusive ``flock`` on ``<database>.writers``, which the
    kernel hands to the next waiter the moment it is released. Each thread has its own file
    descriptor (flock excludes between open files, so threads of one process queue too). The
    lock is released when the transaction ends, and by the kernel if the process dies. SQLite's
    own locking is unchanged for every other writer (admin pages, the CLI).
    """

    def __init__(self, database_path: str):
        self.path = database_path + ".writers"
        self._local = threading.local()

    @contextlib.contextmanager
    def turn(self):
        fd = getattr(self._local, "fd", None)
        if fd is None:
            fd = self._local.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


_WRITER_QUEUES: dict[int, SqliteWriterQueue | None] = {}


def _writer_queue(engine: Engine) -> SqliteWriterQueue | None:
    key = id(engine)
    if key not in _WRITER_QUEUES:
        path = engine.url.database
        _WRITER_QUEUES[key] = SqliteWriterQueue(path) if path and path != ":memory:" else None
    return _WRITER_QUEUES[key]


@contextlib.contextmanager
def _driver_connection(engine: Engine):
    """``(pooled, driver connection)`` from the engine's pool, back to the pool on exit.

    Skips SQLAlchemy's Connection layer (a few hundred microseconds of CPU per transaction)
    but not its pool. A connection that broke in use (server restart, idle timeout) is
    invalidated, so it is never handed out again; the callers invalidate it too when their
    own clean-up (rollback, autocommit reset) fails.
    """
    pooled = engine.raw_connection()
    dbapi_connection = pooled.driver_connection
    try:
        yield pooled, dbapi_connection
    except Exception as err:
        if pooled.is_valid and engine.dialect.is_disconnect(err, dbapi_connection, None):
            pooled.invalidate(err)
        raise
    finally:
        pooled.close()


@contextlib.contextmanager
def driver_transaction(engine: Engine, write: bool = True):
    """A driver (DB-API) cursor inside one transaction, for the hot paths: BEGIN IMMEDIATE on
    SQLite (plain BEGIN when not ``write``; writers queue first, see ``SqliteWriterQueue``),
    psycopg's implicit BEGIN on PostgreSQL; commits on success, rolls back otherwise.
    """
    queue = _writer_queue(engine) if write and engine.dialect.name == "sqlite" else None
    with queue.turn() if queue is not None else contextlib.nullcontext(), \
            _driver_connection(engine) as (pooled, dbapi_connection):
        try:
            cursor = dbapi_connection.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield cursor
            dbapi_connection.commit()
        except BaseException as err:
            try:
                dbapi_connection.rollback()
            except Exception:  # noqa: BLE001 - the connection is gone: drop it, keep the first error
                pooled.invalidate(err if isinstance(err, Exception) else None)
                raise err from None
            raise


@contextlib.contextmanager
def driver_statement(engine: Engine, write: bool = True):
    """A driver cursor for statements that are each a whole transaction: on PostgreSQL the
    connection is in autocommit while the cursor is in use, so one statement costs one round
    trip (no BEGIN, no COMMIT); the hot paths call one function per request this way. On
    SQLite (in process, no round trips) it is ``driver_transaction(engine, write)``.
    """
    if engine.dialect.name != "postgresql":
        with driver_transaction(engine, write) as cursor:
            yield cursor
        return
    with _driver_connection(engine) as (pooled, dbapi_connection):
        dbapi_connection.autocommit = True
        try:
            yield dbapi_connection.cursor()
        finally:
            try:
                dbapi_connection.autocommit = False  # as the pool hands connections out
            except Exception as err:  # noqa: BLE001 - e.g. closed by the server meanwhile
                pooled.invalidate(err)


STUDY_TABLES = ("study", "source", "image", "item", "slot", "rater", "assignment", "answer")


def refresh_statistics(engine: Engine) -> None:
    """Let PostgreSQL's planner see the rows a study just brought in (``ANALYZE``).

    Until autovacuum gets to a freshly filled table the planner takes it for nearly empty, and
    the claim (``assign.py``) then reads every free slot of the study and sorts them (6 ms with
    3,000 slots) instead of walking ``ix_slot_claim`` in order to the first that fits (0.3 ms).
    SQLite keeps no statistics unless asked to, and its planner already walks the index.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE " + ", ".join(STUDY_TABLES))


@contextlib.contextmanager
def read_session(engine: Engine):
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` (Alembic)."""
    _migrate(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to ``revision`` (Alembic), e.g. before running older code."""
    _migrate(url, "downgrade", revision)


def _migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command

    engine = get_engine(url)
    try:
        with engine.begin() as connection:
            getattr(command, direction)(_alembic_config(connection), revision)
    except OperationalError as err:
        raise DatabaseError(f"cannot reach the study database {_safe(url)}: {err.orig}") from None


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as err:
        raise DatabaseError(f"cannot reach the study database {_safe(url)}: {err.orig}") from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def require_current_schema(url: str) -> None:
    """Raise a clear error unless the database exists and is migrated to the latest schema."""
    current = current_revision(url)
    if current is None:
        raise DatabaseError(f"no study tables in {_safe(url)}; create a study first "
                            "(hvqeval study create ...) or run `hvqeval study migrate`")
    if current != head_revision():
        raise DatabaseError(f"the study database {_safe(url)} is at schema {current}, this code needs "
                            f"{head_revision()}; run `hvqeval study migrate --database-url ...`")


def table_names(url: str) -> list[str]:
    return inspect(get_engine(url)).get_table_names()


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
