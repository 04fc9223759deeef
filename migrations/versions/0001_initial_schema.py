"""Initial schema: pools, tenants, reservations, their guards and views.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MAX_AMOUNT = 2_147_483_647


def _amount(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} >= 0 AND {column} <= {MAX_AMOUNT}", name=f"{column}_range")


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=False),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
        _amount("cpu"),
        _amount("memory"),
        _amount("gpu"),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
    )
    op.create_index(
        "uq_pools_live_name",
        "pools",
        ["name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
        sa.CheckConstraint("priority BETWEEN 1 AND 10", name="priority_range"),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
    )
    op.create_index(
        "uq_tenants_live_name",
        "tenants",
        ["name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=False),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("ttl", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("preempted_by", sa.String(64), nullable=True),
        sa.Column("preempted_for", sa.String(16), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        _amount("cpu"),
        _amount("memory"),
        _amount("gpu"),
        sa.CheckConstraint(
            "status IN ('active', 'released', 'expired', 'preempted')", name="status_known"
        ),
        sa.CheckConstraint(f"ttl IS NULL OR (ttl > 0 AND ttl <= {MAX_AMOUNT})", name="ttl_range"),
        sa.CheckConstraint("(status = 'active') = (ended_at IS NULL)", name="ended_iff_not_active"),
        sa.CheckConstraint("length(id) = 16", name="id_length"),
    )
    active = "status = 'active'"
    op.create_index(
        "uq_reservations_active_pool_tenant",
        "reservations",
        ["pool_id", "tenant_id"],
        unique=True,
        sqlite_where=sa.text(active),
        postgresql_where=sa.text(active),
    )
    op.create_index(
        "ix_reservations_active_tenant",
        "reservations",
        ["tenant_id"],
        sqlite_where=sa.text(active),
        postgresql_where=sa.text(active),
    )
    due = "status = 'active' AND expires_at IS NOT NULL"
    op.create_index(
        "ix_reservations_active_expires",
        "reservations",
        ["expires_at"],
        sqlite_where=sa.text(due),
        postgresql_where=sa.text(due),
    )
    op.create_index("ix_reservations_created_at", "reservations", ["created_at"])
    op.create_index("ix_reservations_ended_at", "reservations", ["ended_at"])
    op.create_index("uq_reservations_request_id", "reservations", ["request_id"], unique=True)

    if op.get_bind().dialect.name == "postgresql":
        _postgresql_guards()
    else:
        _sqlite_guards()
    _views(op.get_bind().dialect.name)


# The guards below are the database's own line of defence behind the engine's
# checks: reservations are never deleted, an ended one never changes, and no pool
# is ever committed past its totals (counting rows whose status is 'active'; every
# writer sweeps due rows first, so that is exactly the effective-active set).

_SQLITE_OVER = """
    (SELECT COALESCE(SUM(r.cpu), 0) FROM reservations r
      WHERE r.pool_id = {pool} AND r.status = 'active') + {add_cpu} > p.cpu
 OR (SELECT COALESCE(SUM(r.memory), 0) FROM reservations r
      WHERE r.pool_id = {pool} AND r.status = 'active') + {add_memory} > p.memory
 OR (SELECT COALESCE(SUM(r.gpu), 0) FROM reservations r
      WHERE r.pool_id = {pool} AND r.status = 'active') + {add_gpu} > p.gpu
"""


def _sqlite_guards() -> None:
    over_insert = _SQLITE_OVER.format(
        pool="NEW.pool_id", add_cpu="NEW.cpu", add_memory="NEW.memory", add_gpu="NEW.gpu"
    )
    op.execute(f"""
        CREATE TRIGGER reservations_capacity_guard
        BEFORE INSERT ON reservations WHEN NEW.status = 'active'
        BEGIN
            SELECT RAISE(ABORT, 'resgate: pool capacity exceeded')
            FROM pools p WHERE p.id = NEW.pool_id AND ({over_insert});
        END""")
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
    op.execute("""
        CREATE TRIGGER reservations_never_deleted
        BEFORE DELETE ON reservations
        BEGIN
            SELECT RAISE(ABORT, 'resgate: reservations are history and are never deleted');
        END""")
    over_resize = (
        _SQLITE_OVER.format(pool="NEW.id", add_cpu="0", add_memory="0", add_gpu="0")
        .replace("p.cpu", "NEW.cpu")
        .replace("p.memory", "NEW.memory")
        .replace("p.gpu", "NEW.gpu")
    )
    op.execute(f"""
        CREATE TRIGGER pools_resize_guard
        BEFORE UPDATE OF cpu, memory, gpu ON pools
        WHEN {over_resize}
        BEGIN
            SELECT RAISE(ABORT, 'resgate: pool capacity exceeded');
        END""")


def _postgresql_guards() -> None:
    op.execute("""
        CREATE FUNCTION resgate_capacity_guard() RETURNS trigger AS $$
        DECLARE
            p pools%ROWTYPE;
            used_cpu bigint; used_memory bigint; used_gpu bigint;
            pool_id_ integer;
        BEGIN
            IF TG_TABLE_NAME = 'reservations' THEN
                IF NEW.status <> 'active' THEN RETURN NEW; END IF;
                pool_id_ := NEW.pool_id;
            ELSE
                pool_id_ := NEW.id;
            END IF;
            SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory), 0), COALESCE(SUM(gpu), 0)
              INTO used_cpu, used_memory, used_gpu
              FROM reservations WHERE pool_id = pool_id_ AND status = 'active';
            IF TG_TABLE_NAME = 'reservations' THEN
                SELECT * INTO p FROM pools WHERE id = pool_id_;
                used_cpu := used_cpu + NEW.cpu;
                used_memory := used_memory + NEW.memory;
                used_gpu := used_gpu + NEW.gpu;
                IF used_cpu > p.cpu OR used_memory > p.memory OR used_gpu > p.gpu THEN
                    RAISE EXCEPTION 'resgate: pool capacity exceeded' USING ERRCODE = '23514';
                END IF;
            ELSIF used_cpu > NEW.cpu OR used_memory > NEW.memory OR used_gpu > NEW.gpu THEN
                RAISE EXCEPTION 'resgate: pool capacity exceeded' USING ERRCODE = '23514';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER reservations_capacity_guard BEFORE INSERT ON reservations
        FOR EACH ROW EXECUTE FUNCTION resgate_capacity_guard()""")
    op.execute("""
        CREATE TRIGGER pools_resize_guard BEFORE UPDATE OF cpu, memory, gpu ON pools
        FOR EACH ROW EXECUTE FUNCTION resgate_capacity_guard()""")
    op.execute("""
        CREATE FUNCTION resgate_reservation_guard() RETURNS trigger AS $$
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
    op.execute("""
        CREATE TRIGGER reservations_ended_immutable BEFORE UPDATE OR DELETE ON reservations
        FOR EACH ROW EXECUTE FUNCTION resgate_reservation_guard()""")


def _views(dialect: str) -> None:
    if dialect == "postgresql":
        now = "(now() AT TIME ZONE 'UTC')"

        def pct(used: str, total: str) -> str:
            return f"ROUND(100.0 * {used} / NULLIF({total}, 0), 2)::float8"
    else:
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

        def pct(used: str, total: str) -> str:
            return f"ROUND(100.0 * {used} / NULLIF({total}, 0), 2)"

    effective = f"r.status = 'active' AND (r.expires_at IS NULL OR r.expires_at > {now})"
    op.execute(f"""
        CREATE VIEW active_reservations AS
        SELECT r.id, t.name AS tenant, p.name AS pool, r.cpu, r.memory, r.gpu, r.ttl,
               r.created_at, r.expires_at, r.request_id
          FROM reservations r
          JOIN tenants t ON t.id = r.tenant_id
          JOIN pools p ON p.id = r.pool_id
         WHERE {effective}""")
    used = {res: f"COALESCE(SUM(r.{res}), 0)" for res in ("cpu", "memory", "gpu")}
    columns = ",\n               ".join(
        f"p.{res} AS {res}_total, {used[res]} AS {res}_reserved, "
        f"p.{res} - {used[res]} AS {res}_available, "
        f"COALESCE({pct(used[res], 'p.' + res)}, 0) AS {res}_percent"
        for res in ("cpu", "memory", "gpu")
    )
    op.execute(f"""
        CREATE VIEW pool_utilization AS
        SELECT p.name,
               {columns}
          FROM pools p
          LEFT JOIN reservations r ON r.pool_id = p.id AND {effective}
         WHERE p.deleted_at IS NULL
         GROUP BY p.id, p.name, p.cpu, p.memory, p.gpu""")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pool_utilization")
    op.execute("DROP VIEW IF EXISTS active_reservations")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE reservations")
        op.execute("DROP FUNCTION resgate_reservation_guard()")
        op.execute("DROP TABLE pools CASCADE")
        op.execute("DROP FUNCTION resgate_capacity_guard()")
        op.execute("DROP TABLE tenants")
        return
    op.drop_table("reservations")
    op.drop_table("tenants")
    op.drop_table("pools")
