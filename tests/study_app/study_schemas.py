"""Private PostgreSQL schemas for study-app tests that share one test database."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from study_app.db import dispose_engines


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
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup
