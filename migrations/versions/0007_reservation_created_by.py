"""Who made each reservation (README "Who is acting"): `reservations.created_by`.

The actor of the audit log at creation (RESGATE_ACTOR, else the OS user name).
Rows made before this revision get the actor of their reservation.create event;
a row with none (written behind resgate's back) keeps null. A nullable column is
a plain ADD COLUMN on both databases; the views name their columns and are
unchanged. The backfill steps around reservations_ended_immutable, which refuses
any change to an ended reservation, and puts it back as it was.

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


# The first reservation.create event of each reservation names who made it.
_CREATORS = """
    SELECT subject, actor FROM events WHERE seq IN (
        SELECT MIN(seq) FROM events WHERE action = 'reservation.create' GROUP BY subject
    )"""
_BACKFILL = f"""
    UPDATE reservations SET created_by = creators.actor
    FROM ({_CREATORS}) AS creators
    WHERE creators.subject = reservations.id"""


def upgrade() -> None:
    op.add_column("reservations", sa.Column("created_by", sa.String(128), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE reservations DISABLE TRIGGER reservations_ended_immutable")
        op.execute(_BACKFILL)
        op.execute("ALTER TABLE reservations ENABLE TRIGGER reservations_ended_immutable")
        return
    trigger = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
        "AND name = 'reservations_ended_immutable'"
    ).scalar()
    op.execute("DROP TRIGGER IF EXISTS reservations_ended_immutable")
    op.execute(_BACKFILL)
    if trigger is not None:
        op.execute(trigger)


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0005 does: batch mode would rebuild the
    # table under the views and triggers that name it.
    op.execute("ALTER TABLE reservations DROP COLUMN created_by")
