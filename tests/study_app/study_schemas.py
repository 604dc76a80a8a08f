"""Test support of the study-app tests: private PostgreSQL schemas that share one test database,
and engines kept per URL for a test (disposed by the ``db_url`` fixture)."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from study_app.db import make_engine

_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine per URL for the running test (tests call this from many helpers)."""
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def dispose_all() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def isolated_url(database_url: str):
    """(url, cleanup): SQLite as is; PostgreSQL in a fresh schema via the connection's search_path."""
    if not database_url.startswith("postgresql"):
        return database_url, lambda: None
    schema = f"study_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def cleanup():
        dispose_all()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup
