"""Audit log (README "The audit log"): the events table, its append-only triggers, the audit head.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("seq >= 1", name="seq_positive"),
    )
    op.create_index("uq_events_prev_hash", "events", ["prev_hash"], unique=True)
    op.create_index("ix_events_at", "events", ["at"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute("INSERT INTO audit_head (id) VALUES (1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION resgate_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'resgate: the audit log is append-only';
            END $$ LANGUAGE plpgsql""")
        op.execute("""
            CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION resgate_events_append_only()""")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER events_no_{verb.lower()} BEFORE {verb} ON events
                BEGIN
                    SELECT RAISE(ABORT, 'resgate: the audit log is append-only');
                END""")


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION resgate_events_append_only()")
