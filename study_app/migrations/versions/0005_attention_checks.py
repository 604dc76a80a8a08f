"""Attention checks and practice: per study the catch items each rater gets, the practice items
and the exposure limit; per item its role (task, catch, practice); per answer the exposure in
force and whether a catch/practice answer passed.

Plain ALTER TABLE ADD/DROP COLUMN (recreate="never"): no table is rebuilt on SQLite, where
dropping the old copy of a table would cascade-delete the rows that refer to it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 04:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study", recreate="never") as batch:
        batch.add_column(sa.Column("catch_items", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("practice_items", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("exposure_ms", sa.Integer(), nullable=True))
    with op.batch_alter_table("item", recreate="never") as batch:
        batch.add_column(sa.Column("role", sa.String(10), nullable=False, server_default="task"))
    with op.batch_alter_table("answer", recreate="never") as batch:
        batch.add_column(sa.Column("exposure_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("passed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("answer", recreate="never") as batch:
        batch.drop_column("passed")
        batch.drop_column("exposure_ms")
    with op.batch_alter_table("item", recreate="never") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("study", recreate="never") as batch:
        batch.drop_column("exposure_ms")
        batch.drop_column("practice_items")
        batch.drop_column("catch_items")
