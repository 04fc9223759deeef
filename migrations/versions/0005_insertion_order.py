"""Insertion order for reservations on PostgreSQL (README "Using it": `list` orders by
created_at, ties in insertion order). SQLite has its rowid; PostgreSQL gets a
sequence-filled column. The column exists on both so the schemas match; on SQLite
it stays null and is never read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE reservations_insertion_seq")
        # Existing rows are numbered in their current order: creation, then id.
        op.execute("ALTER TABLE reservations ADD COLUMN insertion_seq BIGINT")
        op.execute(
            "UPDATE reservations r SET insertion_seq = o.n FROM ("
            " SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM reservations"
            ") o WHERE o.id = r.id"
        )
        op.execute(
            "SELECT setval('reservations_insertion_seq', "
            "(SELECT COALESCE(MAX(insertion_seq), 0) + 1 FROM reservations), false)"
        )
        op.execute(
            "ALTER TABLE reservations ALTER COLUMN insertion_seq "
            "SET DEFAULT nextval('reservations_insertion_seq')"
        )
    else:
        op.execute("ALTER TABLE reservations ADD COLUMN insertion_seq BIGINT")


def downgrade() -> None:
    op.execute("ALTER TABLE reservations DROP COLUMN insertion_seq")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE reservations_insertion_seq")
