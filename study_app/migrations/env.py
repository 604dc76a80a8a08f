"""Alembic environment: migrations run on a connection handed over by ``study_app.db.upgrade``."""

from alembic import context

from study_app.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline SQL generation is not supported
    raise RuntimeError("run migrations through study_app.db.upgrade(url)")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
