"""Drop the unique index on events.prev_hash: the primary key on seq guards the chain.

Writers take the audit head (BEGIN IMMEDIATE on SQLite, the audit_head row on
PostgreSQL) and append seq = max + 1 with prev_hash = the hash of that max, both
read from the same row: two events naming one predecessor would need the same
seq, which the primary key refuses. The index added nothing to that and cost an
insert into a random-key B-tree per event (benchmarks/README.md, sweep).
Anything written around the writers (by hand, with sqlite3) is what
`resgate audit verify` reports.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("uq_events_prev_hash", table_name="events")


def downgrade() -> None:
    op.create_index("uq_events_prev_hash", "events", ["prev_hash"], unique=True)
