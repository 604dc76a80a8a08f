"""Drop the PostgreSQL functions of revision 0002: the claim and the answer now run as the same
SQLAlchemy statements on both databases (``study_app/assign.py``). Sources of real images
name their data set (``source.dataset``), so raters are told what the real images are.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:30:00
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

FUNCTIONS_OF_0002 = "study_app.migrations.versions.0002_postgresql_task_functions"


def upgrade() -> None:
    # 0002's downgrade drops exactly the functions its upgrade created (PostgreSQL only).
    importlib.import_module(FUNCTIONS_OF_0002).downgrade()
    with op.batch_alter_table("source") as batch:
        batch.add_column(sa.Column("dataset", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.drop_column("dataset")
    importlib.import_module(FUNCTIONS_OF_0002).upgrade()
