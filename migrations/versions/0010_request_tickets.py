"""Waiting in line (README "Waiting in line"): the tickets of requests that wait for
room, kept by the database.

- `requests`: one row per ticket, never deleted. `status` is `waiting` until the
  ticket ends as `admitted` (with the reservation it got), `cancelled`, `timed_out`
  or `abandoned`; `ended_at` is set exactly when it is no longer waiting. `waiter`
  is `pid@host:start` of the waiting process (its liveness on one host),
  `heartbeat_at` its last sign of life (across hosts). A ticket of `resgate run
  --wait` also says its lease (`lease_ttl`) and its `runner`, as its reservation
  will have them.
- A `request_id` is unique among waiting and admitted tickets and reservations
  together: a partial unique index over the tickets, and triggers both ways
  between the tickets and the reservations (an admitted ticket and its reservation
  carry the same key: the ticket is marked admitted before its reservation is
  inserted, so the reference is checked at commit).
- An ended ticket never changes, and no ticket is deleted.
- The waiting tickets of a pool are one partial index away: a write with an empty
  line pays one indexed lookup for them.

The constants and SQL are frozen here, as in the earlier migrations.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MAX_AMOUNT = 2_147_483_647
STATUSES = ("waiting", "admitted", "cancelled", "timed_out", "abandoned")
WAITING = "status = 'waiting'"
KEYED = "request_id IS NOT NULL AND status IN ('waiting', 'admitted')"
KEY_TAKEN = "resgate: request id already used by a reservation or a ticket"
ENDED = "resgate: an ended ticket never changes"
KEPT = "resgate: tickets are never deleted"


def _amount(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} >= 0 AND {column} <= {MAX_AMOUNT}", name=f"{column}_range")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    listed = ", ".join(f"'{s}'" for s in STATUSES)
    op.create_table(
        "requests",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=False),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("gpu_ids", sa.String(4096), nullable=True),
        sa.Column("duration", sa.Integer, nullable=True),
        sa.Column("preempt", sa.Boolean, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("enqueued_at", sa.DateTime, nullable=False),
        sa.Column("deadline", sa.DateTime, nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("waiter", sa.String(255), nullable=True),
        sa.Column("lease_ttl", sa.Integer, nullable=True),
        sa.Column("runner", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "reservation_id",
            sa.String(16),
            sa.ForeignKey("reservations.id", deferrable=True, initially="DEFERRED"),
            nullable=True,
        ),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.CheckConstraint("length(id) = 16", name="id_length"),
        _amount("cpu"),
        _amount("memory"),
        _amount("gpu"),
        sa.CheckConstraint("cpu + memory + gpu > 0", name="asks_for_something"),
        sa.CheckConstraint(
            f"duration IS NULL OR (duration > 0 AND duration <= {MAX_AMOUNT})",
            name="duration_range",
        ),
        sa.CheckConstraint(f"status IN ({listed})", name="status_known"),
        sa.CheckConstraint(f"({WAITING}) = (ended_at IS NULL)", name="ended_iff_not_waiting"),
        sa.CheckConstraint(
            "(status = 'admitted') = (reservation_id IS NOT NULL)",
            name="admitted_iff_reservation",
        ),
        sa.CheckConstraint("deadline IS NULL OR deadline > enqueued_at", name="deadline_after"),
        sa.CheckConstraint(
            f"lease_ttl IS NULL OR (lease_ttl > 0 AND lease_ttl <= {MAX_AMOUNT})",
            name="lease_ttl_range",
        ),
    )
    op.create_index(
        "ix_requests_waiting",
        "requests",
        ["pool_id", "enqueued_at"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    op.create_index(
        "uq_requests_request_id",
        "requests",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text(KEYED),
        postgresql_where=sa.text(KEYED),
    )
    if postgres:
        _postgresql_guards()
    else:
        _sqlite_guards()


def _sqlite_guards() -> None:
    # A waiting ticket takes a key no reservation has; a reservation, one no
    # waiting ticket has (an admitted ticket is no longer waiting when its
    # reservation is inserted).
    op.execute(f"""
        CREATE TRIGGER requests_key_guard BEFORE INSERT ON requests
        WHEN NEW.request_id IS NOT NULL AND NEW.status = 'waiting'
         AND EXISTS (SELECT 1 FROM reservations WHERE request_id = NEW.request_id)
        BEGIN
            SELECT RAISE(ABORT, '{KEY_TAKEN}');
        END""")
    op.execute(f"""
        CREATE TRIGGER reservations_key_guard BEFORE INSERT ON reservations
        WHEN NEW.request_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM requests
                      WHERE request_id = NEW.request_id AND status = 'waiting')
        BEGIN
            SELECT RAISE(ABORT, '{KEY_TAKEN}');
        END""")
    op.execute(f"""
        CREATE TRIGGER requests_ended_immutable BEFORE UPDATE ON requests
        WHEN OLD.status <> 'waiting' OR NEW.id <> OLD.id
          OR NEW.tenant_id <> OLD.tenant_id OR NEW.pool_id <> OLD.pool_id
          OR NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
          OR NEW.request_id IS NOT OLD.request_id OR NEW.enqueued_at <> OLD.enqueued_at
        BEGIN
            SELECT RAISE(ABORT, '{ENDED}');
        END""")
    op.execute(f"""
        CREATE TRIGGER requests_kept BEFORE DELETE ON requests
        BEGIN
            SELECT RAISE(ABORT, '{KEPT}');
        END""")


def _postgresql_guards() -> None:
    op.execute(f"""
        CREATE FUNCTION resgate_requests_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION '{KEPT}';
            END IF;
            IF TG_OP = 'UPDATE' AND (OLD.status <> 'waiting' OR NEW.id <> OLD.id
               OR NEW.tenant_id <> OLD.tenant_id OR NEW.pool_id <> OLD.pool_id
               OR NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
               OR NEW.request_id IS DISTINCT FROM OLD.request_id
               OR NEW.enqueued_at <> OLD.enqueued_at) THEN
                RAISE EXCEPTION '{ENDED}';
            END IF;
            IF TG_OP = 'INSERT' AND NEW.request_id IS NOT NULL AND NEW.status = 'waiting'
               AND EXISTS (SELECT 1 FROM reservations WHERE request_id = NEW.request_id) THEN
                RAISE EXCEPTION '{KEY_TAKEN}';
            END IF;
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER requests_guard BEFORE INSERT OR UPDATE OR DELETE ON requests
        FOR EACH ROW EXECUTE FUNCTION resgate_requests_guard()""")
    op.execute(f"""
        CREATE FUNCTION resgate_reservations_key_guard() RETURNS trigger AS $$
        BEGIN
            IF NEW.request_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM requests WHERE request_id = NEW.request_id AND status = 'waiting'
            ) THEN
                RAISE EXCEPTION '{KEY_TAKEN}';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER reservations_key_guard BEFORE INSERT ON reservations
        FOR EACH ROW EXECUTE FUNCTION resgate_reservations_key_guard()""")


def downgrade() -> None:
    """Back to 0009, refused while a ticket waits: the earlier schema has no line."""
    bind = op.get_bind()
    waiting = bind.execute(sa.text(f"SELECT COUNT(*) FROM requests WHERE {WAITING}")).scalar()
    if waiting:
        raise RuntimeError(f"{waiting} waiting ticket(s): cancel them before downgrading")
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER reservations_key_guard ON reservations")
        op.execute("DROP FUNCTION resgate_reservations_key_guard()")
        op.execute("DROP TRIGGER requests_guard ON requests")
        op.execute("DROP FUNCTION resgate_requests_guard()")
    else:
        for trigger in (
            "requests_key_guard",
            "reservations_key_guard",
            "requests_ended_immutable",
            "requests_kept",
        ):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index("uq_requests_request_id", "requests")
    op.drop_index("ix_requests_waiting", "requests")
    op.drop_table("requests")
