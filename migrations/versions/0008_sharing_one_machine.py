"""Sharing one machine (README "Sharing one machine"): pool policies, tenant members,
runners.

- `pools.per_tenant` (default 1, the earlier rule; null = unlimited) is how many
  active reservations one tenant may hold in the pool. The trigger
  reservations_per_tenant_guard enforces it and replaces the partial unique index
  uq_reservations_active_pool_tenant (a non-unique index on the same columns stays
  for the usage sums). On PostgreSQL the trigger locks the pool row first, so two
  raw sessions cannot both pass the count.
- `pools.default_ttl`, `pools.max_ttl`: seconds, null = none; a default never
  above the maximum (CHECK).
- `tenant_members(tenant_id, user_name)`: who may act for a tenant.
- `reservations.runner`: `pid@host` of the `resgate run` whose job runs on it.
  reservations_ended_immutable now lets an ended reservation's runner be cleared
  (the job outlives the reservation by its grace) and nothing else.

The constants are frozen here, as in the earlier migrations.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MAX_AMOUNT = 2_147_483_647
ACTIVE = "status = 'active'"


def _seconds(column: str, extra: str = "") -> str:
    return (
        f"{column} INTEGER CONSTRAINT {column}_range "
        f"CHECK ({column} IS NULL OR ({column} > 0 AND {column} <= {MAX_AMOUNT}{extra}))"
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "ALTER TABLE pools ADD COLUMN per_tenant INTEGER DEFAULT 1 CONSTRAINT per_tenant_range "
        f"CHECK (per_tenant IS NULL OR (per_tenant >= 1 AND per_tenant <= {MAX_AMOUNT}))"
    )
    op.execute(f"ALTER TABLE pools ADD COLUMN {_seconds('default_ttl')}")
    if postgres:
        op.execute(f"ALTER TABLE pools ADD COLUMN {_seconds('max_ttl')}")
        op.execute(
            "ALTER TABLE pools ADD CONSTRAINT ttl_policy_order "
            "CHECK (default_ttl IS NULL OR max_ttl IS NULL OR default_ttl <= max_ttl)"
        )
    else:
        # SQLite adds no table constraint to an existing table; a column's CHECK
        # may name another column.
        order = " AND (default_ttl IS NULL OR default_ttl <= max_ttl)"
        op.execute(f"ALTER TABLE pools ADD COLUMN {_seconds('max_ttl', order)}")
    op.add_column("reservations", sa.Column("runner", sa.String(255), nullable=True))
    op.create_table(
        "tenant_members",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("user_name", sa.String(64), primary_key=True),
        sa.CheckConstraint("length(user_name) BETWEEN 1 AND 64", name="user_name_length"),
    )
    op.create_index("ix_tenant_members_user_name", "tenant_members", ["user_name"])
    op.drop_index("uq_reservations_active_pool_tenant", "reservations")
    op.create_index(
        "ix_reservations_active_pool_tenant",
        "reservations",
        ["pool_id", "tenant_id"],
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )
    if postgres:
        _postgresql_guards()
    else:
        _sqlite_guards()


# An ended reservation may have its runner cleared and nothing else changed.
_SQLITE_FROZEN = " OR ".join(
    f"NEW.{column} IS NOT OLD.{column}"
    for column in (
        "status",
        "ttl",
        "expires_at",
        "ended_at",
        "preempted_by",
        "preempted_for",
        "request_id",
        "created_by",
        "insertion_seq",
    )
)


def _sqlite_guards() -> None:
    op.execute("""
        CREATE TRIGGER reservations_per_tenant_guard
        BEFORE INSERT ON reservations WHEN NEW.status = 'active'
        BEGIN
            SELECT RAISE(ABORT, 'resgate: per-tenant limit of the pool reached')
            FROM pools p WHERE p.id = NEW.pool_id AND p.per_tenant IS NOT NULL
              AND (SELECT COUNT(*) FROM reservations r
                    WHERE r.pool_id = NEW.pool_id AND r.tenant_id = NEW.tenant_id
                      AND r.status = 'active') >= p.per_tenant;
        END""")
    op.execute("DROP TRIGGER reservations_ended_immutable")
    op.execute(f"""
        CREATE TRIGGER reservations_ended_immutable
        BEFORE UPDATE ON reservations
        WHEN (OLD.status <> 'active' AND (NEW.runner IS NOT NULL OR {_SQLITE_FROZEN}))
          OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.pool_id <> OLD.pool_id
          OR NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
          OR NEW.created_at <> OLD.created_at
        BEGIN
            SELECT RAISE(ABORT, 'resgate: only an active reservation may change');
        END""")


def _postgresql_guards() -> None:
    op.execute("""
        CREATE FUNCTION resgate_per_tenant_guard() RETURNS trigger AS $$
        DECLARE
            allowed integer;
            held bigint;
        BEGIN
            IF NEW.status <> 'active' THEN RETURN NEW; END IF;
            -- The pool row's lock orders concurrent inserts: the count below then
            -- sees every reservation committed before it (READ COMMITTED).
            SELECT per_tenant INTO allowed FROM pools WHERE id = NEW.pool_id FOR UPDATE;
            IF allowed IS NULL THEN RETURN NEW; END IF;
            SELECT COUNT(*) INTO held FROM reservations
             WHERE pool_id = NEW.pool_id AND tenant_id = NEW.tenant_id AND status = 'active';
            IF held >= allowed THEN
                RAISE EXCEPTION 'resgate: per-tenant limit of the pool reached'
                    USING ERRCODE = '23514';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER reservations_per_tenant_guard BEFORE INSERT ON reservations
        FOR EACH ROW EXECUTE FUNCTION resgate_per_tenant_guard()""")
    op.execute("""
        CREATE OR REPLACE FUNCTION resgate_reservation_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'resgate: reservations are history and are never deleted';
            END IF;
            IF (OLD.status <> 'active' AND (NEW.runner IS NOT NULL
                    OR to_jsonb(NEW) - 'runner' <> to_jsonb(OLD) - 'runner'))
               OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id
               OR NEW.pool_id <> OLD.pool_id OR NEW.cpu <> OLD.cpu
               OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
               OR NEW.created_at <> OLD.created_at THEN
                RAISE EXCEPTION 'resgate: only an active reservation may change';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TRIGGER reservations_per_tenant_guard ON reservations")
        op.execute("DROP FUNCTION resgate_per_tenant_guard()")
    else:
        op.execute("DROP TRIGGER reservations_per_tenant_guard")
    # The unique index comes back only where every tenant holds one per pool.
    op.drop_index("ix_reservations_active_pool_tenant", "reservations")
    op.create_index(
        "uq_reservations_active_pool_tenant",
        "reservations",
        ["pool_id", "tenant_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )
    op.drop_index("ix_tenant_members_user_name", "tenant_members")
    op.drop_table("tenant_members")
    _restore_immutable(postgres)
    op.execute("ALTER TABLE reservations DROP COLUMN runner")
    if postgres:
        op.execute("ALTER TABLE pools DROP CONSTRAINT ttl_policy_order")
    for column in ("max_ttl", "default_ttl", "per_tenant"):
        op.execute(f"ALTER TABLE pools DROP COLUMN {column}")


def _restore_immutable(postgres: bool) -> None:
    """0001's reservations_ended_immutable, before the runner column goes."""
    if postgres:
        op.execute("""
            CREATE OR REPLACE FUNCTION resgate_reservation_guard() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    RAISE EXCEPTION 'resgate: reservations are history and are never deleted';
                END IF;
                IF OLD.status <> 'active' OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id
                   OR NEW.pool_id <> OLD.pool_id OR NEW.cpu <> OLD.cpu
                   OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
                   OR NEW.created_at <> OLD.created_at THEN
                    RAISE EXCEPTION 'resgate: only an active reservation may change';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        return
    op.execute("DROP TRIGGER reservations_ended_immutable")
    op.execute("""
        CREATE TRIGGER reservations_ended_immutable
        BEFORE UPDATE ON reservations
        WHEN OLD.status <> 'active'
          OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.pool_id <> OLD.pool_id
          OR NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
          OR NEW.created_at <> OLD.created_at
        BEGIN
            SELECT RAISE(ABORT, 'resgate: only an active reservation may change');
        END""")
