"""The claim index holds the lease expiry: a never-leased slot's expiry is ``NEVER_LEASED``
(1970-01-01) instead of NULL, so "free" is one comparison (``lease_expires_at < now``) that the
index tests on its own entries; a claim no longer reads the rows of the leased slots it passes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:15:00
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

NEVER_LEASED = dt.datetime(1970, 1, 1)  # as schema.NEVER_LEASED (a migration keeps its own copy)
slot = sa.table(
    "slot", sa.column("filled", sa.Boolean()), sa.column("lease_expires_at", sa.DateTime())
)


def upgrade() -> None:
    op.execute(
        slot.update()
        .where(slot.c.lease_expires_at.is_(None), slot.c.filled.is_(False))
        .values(lease_expires_at=NEVER_LEASED)
    )
    op.drop_index("ix_slot_claim", table_name="slot")
    op.create_index(
        "ix_slot_claim", "slot", ["study_id", "filled", "slot_no", "shuffle", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_slot_claim", table_name="slot")
    op.create_index("ix_slot_claim", "slot", ["study_id", "filled", "slot_no", "shuffle"])
    op.execute(
        slot.update().where(slot.c.lease_expires_at == NEVER_LEASED).values(lease_expires_at=None)
    )
