"""Crowd platforms: a study-level completion code and completion URL (Prolific), and per rater
the platform, its study/HIT and session/assignment ids and MTurk's ``turkSubmitTo``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 20:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

RATER_COLUMNS = ("platform", "platform_study", "platform_session", "submit_to")


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("completion_code", sa.String(40), nullable=True))
        batch.add_column(sa.Column("completion_url", sa.Text(), nullable=True))
    with op.batch_alter_table("rater") as batch:
        batch.add_column(sa.Column("platform", sa.String(20), nullable=True))
        batch.add_column(sa.Column("platform_study", sa.String(100), nullable=True))
        batch.add_column(sa.Column("platform_session", sa.String(100), nullable=True))
        batch.add_column(sa.Column("submit_to", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rater") as batch:
        for name in reversed(RATER_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("study") as batch:
        batch.drop_column("completion_url")
        batch.drop_column("completion_code")
