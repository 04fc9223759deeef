"""Who made each reservation (README "Who is acting"): `reservations.created_by`.

The actor of the audit log at creation (RESGATE_ACTOR, else the OS user name).
Rows made before this revision keep null: nothing recorded who made them (their
reservation.create event, if any, names its actor). A nullable column is a plain
ADD COLUMN on both databases; the views name their columns and are unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reservations", sa.Column("created_by", sa.String(128), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0005 does: batch mode would rebuild the
    # table under the views and triggers that name it.
    op.execute("ALTER TABLE reservations DROP COLUMN created_by")
