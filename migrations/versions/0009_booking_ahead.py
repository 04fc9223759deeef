"""Booking ahead (README "Booking ahead"): reservations get a window, and the
database keeps every instant of the future within capacity.

- `reservations.starts_at` (NOT NULL), `ends_at` (the planned end; null =
  open-ended), `preempt_at` (a planned truncation; null) and `lease` (a
  `resgate run` lease: `expires_at` is its renewed deadline, `ends_at` its time
  limit). Existing rows: `starts_at` = `created_at`; active rows with a
  `reservation.renew` event become leases with `ends_at` null; every other row gets
  `ends_at` = `expires_at`. Nothing that is shown changes.
- A reservation's plan is `[starts_at, min(ends_at, preempt_at))`, nulls open,
  while its stored status is 'active'.
- `pool_free(pool_id, at, cpu, memory, gpu)`: the free capacity of each pool as a
  step function, one row per breakpoint (the value holds from `at` to the next
  row), `CHECK (… >= 0)`. Every pool has a row at 0001-01-01 (the floor). Triggers
  on reservations take each plan out of it and put it back; a trigger on pools
  moves it with a resize. This replaces the capacity trigger that summed every
  active row regardless of time (reservations_capacity_guard) and the resize guard
  of 0001.
- Devices: the partial unique index uq_reservation_devices_active (a device held
  once, whenever) is replaced by a trigger refusing a device held by two
  reservations whose plans overlap (back to back is fine); a non-unique partial
  index on the same columns serves it.
- Per tenant: reservations_per_tenant_guard (0008) now counts, at every instant of
  the new plan, the tenant's reservations in the pool whose plans hold it.
- On PostgreSQL every guard locks the pool row first: raw writers do not follow
  the engine's lock order.
- Views: `active_reservations` and `pool_utilization` count what has started;
  `booked_reservations` lists upcoming and active reservations with their phase.

The constants and SQL are frozen here, as in the earlier migrations.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FLOOR = "0001-01-01 00:00:00.000000"
FOREVER = "9999-12-31 23:59:59.999999"
RESOURCES = ("cpu", "memory", "gpu")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _columns(postgres)
    op.create_table(
        "pool_free",
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), primary_key=True),
        sa.Column("at", sa.DateTime, primary_key=True),
        *(sa.Column(r, sa.Integer, nullable=False) for r in RESOURCES),
        *(sa.CheckConstraint(f"{r} >= 0", name=f"{r}_free") for r in RESOURCES),
    )
    op.create_index("ix_pool_free_at", "pool_free", ["at"])
    op.execute("DROP VIEW pool_utilization")
    op.execute("DROP VIEW active_reservations")
    if postgres:
        op.execute("DROP TRIGGER reservations_capacity_guard ON reservations")
        op.execute("DROP TRIGGER pools_resize_guard ON pools")
        op.execute("DROP FUNCTION resgate_capacity_guard()")
        op.execute("DROP TRIGGER reservations_per_tenant_guard ON reservations")
        op.execute("DROP FUNCTION resgate_per_tenant_guard()")
    else:
        op.execute("DROP TRIGGER reservations_capacity_guard")
        op.execute("DROP TRIGGER pools_resize_guard")
        op.execute("DROP TRIGGER reservations_per_tenant_guard")
    op.drop_index("uq_reservation_devices_active", "reservation_devices")
    op.create_index(
        "ix_reservation_devices_active",
        "reservation_devices",
        ["pool_id", "device"],
        sqlite_where=sa.text("active = 1"),
        postgresql_where=sa.text("active"),
    )
    _fill_pool_free()
    if postgres:
        _postgresql_guards()
    else:
        _sqlite_guards()
    _views(postgres)


def _columns(postgres: bool) -> None:
    # resgate always writes it. A writer that knows nothing of windows (a script from
    # before 0009) gets a reservation that started long ago: held now, as it meant.
    starts = "DEFAULT '1970-01-01 00:00:00' NOT NULL"
    stamp = "TIMESTAMP WITHOUT TIME ZONE" if postgres else "DATETIME"
    op.execute(f"ALTER TABLE reservations ADD COLUMN starts_at {stamp} {starts}")
    op.execute(f"ALTER TABLE reservations ADD COLUMN ends_at {stamp}")
    op.execute(f"ALTER TABLE reservations ADD COLUMN preempt_at {stamp}")
    false = "false" if postgres else "0"
    op.execute(f"ALTER TABLE reservations ADD COLUMN lease BOOLEAN DEFAULT {false} NOT NULL")
    true = "true" if postgres else "1"
    renewed = (
        "status = 'active' AND EXISTS (SELECT 1 FROM events e WHERE "
        "e.action = 'reservation.renew' AND e.subject = reservations.id)"
    )
    # 0007 lets an ended reservation change nothing but its runner; these columns
    # are new, so the guard is lifted while they are filled in.
    _immutable_guard(postgres, drop_only=True)
    op.execute(
        f"UPDATE reservations SET starts_at = created_at, "
        f"lease = CASE WHEN {renewed} THEN {true} ELSE {false} END, "
        f"ends_at = CASE WHEN {renewed} THEN NULL ELSE expires_at END"
    )
    _immutable_guard(postgres)


def _fill_pool_free() -> None:
    """The floor row of every pool, then every active reservation's plan taken out."""
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO pool_free (pool_id, at, cpu, memory, gpu) "
            "SELECT id, :floor, cpu, memory, gpu FROM pools"
        ),
        {"floor": FLOOR},
    )
    rows = bind.execute(
        sa.text(
            "SELECT pool_id, starts_at, ends_at, preempt_at, cpu, memory, gpu FROM reservations "
            "WHERE status = 'active' ORDER BY pool_id"
        )
    ).all()
    for pool_id, starts, ends, preempt, *amounts in rows:
        end = min((t for t in (ends, preempt) if t is not None), default=None)
        for at in (starts, end):
            if at is None:
                continue
            bind.execute(
                sa.text(
                    "INSERT INTO pool_free (pool_id, at, cpu, memory, gpu) "
                    "SELECT pool_id, :at, cpu, memory, gpu FROM pool_free "
                    "WHERE pool_id = :pool AND at <= :at AND NOT EXISTS ("
                    "  SELECT 1 FROM pool_free WHERE pool_id = :pool AND at = :at) "
                    "ORDER BY at DESC LIMIT 1"
                ),
                {"pool": pool_id, "at": at},
            )
        before_end = "" if end is None else "AND at < :end"
        bind.execute(
            sa.text(
                "UPDATE pool_free SET cpu = cpu - :cpu, memory = memory - :memory, "
                f"gpu = gpu - :gpu WHERE pool_id = :pool AND at >= :start {before_end}"
            ),
            {
                "pool": pool_id,
                "start": starts,
                "end": end,
                **dict(zip(RESOURCES, amounts, strict=True)),
            },
        )


# ---------------------------------------------------------------- SQLite


def _end(row: str) -> str:
    """The end of a row's plan: the earlier of ends_at and preempt_at, nulls open."""
    return (
        f"(CASE WHEN {row}.ends_at IS NULL THEN {row}.preempt_at "
        f"WHEN {row}.preempt_at IS NULL THEN {row}.ends_at "
        f"ELSE MIN({row}.ends_at, {row}.preempt_at) END)"
    )


def _sqlite_plan(row: str, sign: str, start: str | None = None) -> str:
    """Statements of a trigger body that take `row`'s plan out of pool_free (sign
    '-') or put it back ('+') from `start` on (default: its start), when that row is
    active and holds anything."""
    start = start or f"{row}.starts_at"
    end = _end(row)
    when = (
        f"{row}.status = 'active' AND ({row}.cpu > 0 OR {row}.memory > 0 OR {row}.gpu > 0)"
        f" AND ({end} IS NULL OR {start} < {end})"
    )
    breakpoints = "".join(
        f"""
            INSERT OR IGNORE INTO pool_free (pool_id, at, cpu, memory, gpu)
            SELECT pool_id, {at}, cpu, memory, gpu FROM pool_free
             WHERE {when} AND {at} IS NOT NULL AND pool_id = {row}.pool_id AND at <= {at}
             ORDER BY at DESC LIMIT 1;"""
        for at in (start, end)
    )
    # Refused explicitly, not only by pool_free's CHECKs: an outer INSERT OR IGNORE
    # would make SQLite skip the rows a CHECK refuses instead of failing.
    refuse = (
        f"""
            SELECT RAISE(ABORT, 'resgate: pool capacity exceeded') FROM pool_free
             WHERE {when} AND pool_id = {row}.pool_id AND at >= {start}
               AND ({end} IS NULL OR at < {end})
               AND (cpu < {row}.cpu OR memory < {row}.memory OR gpu < {row}.gpu);"""
        if sign == "-"
        else ""
    )
    return f"""{breakpoints}{refuse}
            UPDATE pool_free SET cpu = cpu {sign} {row}.cpu, memory = memory {sign} {row}.memory,
                   gpu = gpu {sign} {row}.gpu
             WHERE {when} AND pool_id = {row}.pool_id AND at >= {start}
               AND ({end} IS NULL OR at < {end});"""


# A reservation that ends gives its plan back from the instant it ended: what it
# held before then is the past, which the sweep folds away. An expiry gives back
# nothing (it ended where its plan did), so the sweep costs the same however many
# breakpoints the past has.
_GIVEN_BACK_FROM = (
    "(CASE WHEN NEW.status <> 'active' AND NEW.ended_at IS NOT NULL "
    "AND NEW.ended_at > OLD.starts_at THEN NEW.ended_at ELSE OLD.starts_at END)"
)


def _sqlite_overlap(a: str, b: str) -> str:
    return (
        f"{a}.starts_at < COALESCE({_end(b)}, '{FOREVER}') "
        f"AND {b}.starts_at < COALESCE({_end(a)}, '{FOREVER}')"
    )


WINDOW_COLUMNS = "starts_at, ends_at, preempt_at"
WINDOW_CHANGED = " OR ".join(
    f"NEW.{c} IS NOT OLD.{c}" for c in ("starts_at", "ends_at", "preempt_at")
)


def _sqlite_per_tenant(row: str) -> str:
    """Refuse when, at some instant of `row`'s plan (the start of it or of another
    reservation inside it), the tenant holds more reservations in the pool than
    per_tenant. `row` is already in the table (an AFTER trigger)."""
    end = _end(row)
    mine = f"pool_id = {row}.pool_id AND tenant_id = {row}.tenant_id AND status = 'active'"
    return f"""
            SELECT RAISE(ABORT, 'resgate: per-tenant limit of the pool reached')
              FROM pools p
             WHERE p.id = {row}.pool_id AND p.per_tenant IS NOT NULL AND {row}.status = 'active'
               AND EXISTS (
                   SELECT 1 FROM reservations c
                    WHERE c.{mine.replace(" AND ", " AND c.")}
                      AND c.starts_at >= {row}.starts_at
                      AND ({end} IS NULL OR c.starts_at < {end})
                      AND (SELECT COUNT(*) FROM reservations r
                            WHERE r.{mine.replace(" AND ", " AND r.")}
                              AND r.starts_at <= c.starts_at
                              AND ({_end("r")} IS NULL OR {_end("r")} > c.starts_at))
                          > p.per_tenant);"""


DEVICE_TAKEN = "resgate: GPU device held by another reservation over that window"


def _sqlite_guards() -> None:
    op.execute("""
        CREATE TRIGGER pools_free_floor AFTER INSERT ON pools
        BEGIN
            INSERT INTO pool_free (pool_id, at, cpu, memory, gpu)
            VALUES (NEW.id, '0001-01-01 00:00:00.000000', NEW.cpu, NEW.memory, NEW.gpu);
        END""")
    # pool_free's CHECKs refuse a resize below what some instant holds.
    op.execute("""
        CREATE TRIGGER pools_resize_guard AFTER UPDATE OF cpu, memory, gpu ON pools
        BEGIN
            UPDATE pool_free SET cpu = cpu + NEW.cpu - OLD.cpu,
                   memory = memory + NEW.memory - OLD.memory, gpu = gpu + NEW.gpu - OLD.gpu
             WHERE pool_id = NEW.id;
        END""")
    op.execute(f"""
        CREATE TRIGGER reservations_capacity_guard AFTER INSERT ON reservations
        WHEN NEW.status = 'active'
        BEGIN{_sqlite_plan("NEW", "-")}
        END""")
    # An ending gives back what is left of the plan; an expiry leaves nothing, so the
    # trigger does not even run for it (the sweep ends thousands at once).
    op.execute(f"""
        CREATE TRIGGER reservations_plan_end AFTER UPDATE OF status ON reservations
        WHEN OLD.status = 'active' AND NEW.status <> 'active'
         AND ({_end("OLD")} IS NULL OR NEW.ended_at IS NULL OR NEW.ended_at < {_end("OLD")})
        BEGIN{_sqlite_plan("OLD", "+", _GIVEN_BACK_FROM)}
        END""")
    # A plan that moves: the old one goes back first, so one that moves within what
    # it held fits.
    op.execute(f"""
        CREATE TRIGGER reservations_plan_change AFTER UPDATE OF {WINDOW_COLUMNS} ON reservations
        WHEN NEW.status = 'active' AND ({WINDOW_CHANGED})
        BEGIN{_sqlite_plan("OLD", "+")}{_sqlite_plan("NEW", "-")}
        END""")
    op.execute(f"""
        CREATE TRIGGER reservations_per_tenant_guard AFTER INSERT ON reservations
        WHEN NEW.status = 'active'
        BEGIN{_sqlite_per_tenant("NEW")}
        END""")
    op.execute(f"""
        CREATE TRIGGER reservations_per_tenant_change AFTER UPDATE OF {WINDOW_COLUMNS}
        ON reservations WHEN NEW.status = 'active' AND ({WINDOW_CHANGED})
        BEGIN{_sqlite_per_tenant("NEW")}
        END""")
    op.execute(f"""
        CREATE TRIGGER reservation_devices_guard AFTER INSERT ON reservation_devices
        WHEN NEW.active
        BEGIN
            SELECT RAISE(ABORT, '{DEVICE_TAKEN}')
              FROM reservations n, reservation_devices d, reservations o
             WHERE n.id = NEW.reservation_id AND n.status = 'active'
               AND d.pool_id = NEW.pool_id AND d.device = NEW.device AND d.active
               AND d.reservation_id <> NEW.reservation_id
               AND o.id = d.reservation_id AND o.status = 'active'
               AND {_sqlite_overlap("n", "o")};
        END""")
    op.execute(f"""
        CREATE TRIGGER reservations_devices_change AFTER UPDATE OF {WINDOW_COLUMNS}
        ON reservations WHEN NEW.status = 'active' AND ({WINDOW_CHANGED})
        BEGIN
            SELECT RAISE(ABORT, '{DEVICE_TAKEN}')
              FROM reservation_devices m, reservation_devices d, reservations o
             WHERE m.reservation_id = NEW.id AND m.active
               AND d.pool_id = m.pool_id AND d.device = m.device AND d.active
               AND d.reservation_id <> NEW.id
               AND o.id = d.reservation_id AND o.status = 'active'
               AND {_sqlite_overlap("NEW", "o")};
        END""")


# ---------------------------------------------------------------- PostgreSQL


def _postgresql_guards() -> None:
    op.execute("""
        CREATE FUNCTION resgate_plan_end(ends timestamp, preempt timestamp)
        RETURNS timestamp AS $$ SELECT LEAST(ends, preempt) $$
        LANGUAGE sql IMMUTABLE""")
    op.execute("""
        CREATE FUNCTION resgate_take_plan(r reservations, sign integer, from_ timestamp)
        RETURNS void AS $$
        DECLARE
            plan_end timestamp := resgate_plan_end(r.ends_at, r.preempt_at);
            at_ timestamp;
        BEGIN
            IF r.status <> 'active' OR (r.cpu = 0 AND r.memory = 0 AND r.gpu = 0)
               OR (plan_end IS NOT NULL AND from_ >= plan_end) THEN
                RETURN;
            END IF;
            FOREACH at_ IN ARRAY ARRAY[from_, plan_end] LOOP
                IF at_ IS NOT NULL THEN
                    INSERT INTO pool_free (pool_id, at, cpu, memory, gpu)
                    SELECT pool_id, at_, cpu, memory, gpu FROM pool_free
                     WHERE pool_id = r.pool_id AND at <= at_ ORDER BY at DESC LIMIT 1
                    ON CONFLICT DO NOTHING;
                END IF;
            END LOOP;
            IF sign < 0 AND EXISTS (
                SELECT 1 FROM pool_free WHERE pool_id = r.pool_id AND at >= from_
                   AND (plan_end IS NULL OR at < plan_end)
                   AND (cpu < r.cpu OR memory < r.memory OR gpu < r.gpu)) THEN
                RAISE EXCEPTION 'resgate: pool capacity exceeded' USING ERRCODE = '23514';
            END IF;
            UPDATE pool_free SET cpu = cpu + sign * r.cpu, memory = memory + sign * r.memory,
                   gpu = gpu + sign * r.gpu
             WHERE pool_id = r.pool_id AND at >= from_
               AND (plan_end IS NULL OR at < plan_end);
        END $$ LANGUAGE plpgsql""")
    op.execute(f"""
        CREATE FUNCTION resgate_plan_guard() RETURNS trigger AS $$
        DECLARE
            allowed integer;
            plan_end timestamp;
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF NEW.status IS NOT DISTINCT FROM OLD.status
                   AND NEW.starts_at IS NOT DISTINCT FROM OLD.starts_at
                   AND NEW.ends_at IS NOT DISTINCT FROM OLD.ends_at
                   AND NEW.preempt_at IS NOT DISTINCT FROM OLD.preempt_at THEN
                    RETURN NULL;
                END IF;
            END IF;
            -- An expiry gives nothing back (it ended where its plan did): the sweep
            -- ends thousands at once, so it returns before taking any lock.
            IF TG_OP = 'UPDATE' AND NEW.status <> 'active' AND NEW.ended_at IS NOT NULL
               AND NEW.ended_at >= resgate_plan_end(OLD.ends_at, OLD.preempt_at) THEN
                RETURN NULL;
            END IF;
            -- Raw writers do not follow the engine's lock order: the pool row's lock
            -- orders every change to a pool's plan (READ COMMITTED then sees all
            -- committed before it).
            SELECT per_tenant INTO allowed FROM pools WHERE id = NEW.pool_id FOR UPDATE;
            IF TG_OP = 'UPDATE' THEN
                -- Given back from the instant it ended (see the SQLite triggers).
                PERFORM resgate_take_plan(OLD, 1, CASE
                    WHEN NEW.status <> 'active' AND NEW.ended_at > OLD.starts_at
                    THEN NEW.ended_at ELSE OLD.starts_at END);
            END IF;
            PERFORM resgate_take_plan(NEW, -1, NEW.starts_at);
            IF NEW.status <> 'active' THEN
                RETURN NULL;
            END IF;
            plan_end := resgate_plan_end(NEW.ends_at, NEW.preempt_at);
            IF allowed IS NOT NULL AND EXISTS (
                SELECT 1 FROM reservations c
                 WHERE c.pool_id = NEW.pool_id AND c.tenant_id = NEW.tenant_id
                   AND c.status = 'active' AND c.starts_at >= NEW.starts_at
                   AND (plan_end IS NULL OR c.starts_at < plan_end)
                   AND (SELECT COUNT(*) FROM reservations r
                         WHERE r.pool_id = NEW.pool_id AND r.tenant_id = NEW.tenant_id
                           AND r.status = 'active' AND r.starts_at <= c.starts_at
                           AND (resgate_plan_end(r.ends_at, r.preempt_at) IS NULL
                                OR resgate_plan_end(r.ends_at, r.preempt_at) > c.starts_at))
                       > allowed) THEN
                RAISE EXCEPTION 'resgate: per-tenant limit of the pool reached'
                    USING ERRCODE = '23514';
            END IF;
            IF TG_OP = 'UPDATE' AND EXISTS (
                SELECT 1 FROM reservation_devices m
                  JOIN reservation_devices d ON d.pool_id = m.pool_id AND d.device = m.device
                   AND d.active AND d.reservation_id <> NEW.id
                  JOIN reservations o ON o.id = d.reservation_id AND o.status = 'active'
                 WHERE m.reservation_id = NEW.id AND m.active
                   AND NEW.starts_at < COALESCE(resgate_plan_end(o.ends_at, o.preempt_at),
                                                'infinity')
                   AND o.starts_at < COALESCE(plan_end, 'infinity')) THEN
                RAISE EXCEPTION '{DEVICE_TAKEN}' USING ERRCODE = '23505';
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER reservations_capacity_guard AFTER INSERT OR UPDATE ON reservations
        FOR EACH ROW EXECUTE FUNCTION resgate_plan_guard()""")
    op.execute(f"""
        CREATE FUNCTION resgate_device_guard() RETURNS trigger AS $$
        BEGIN
            IF NOT NEW.active THEN RETURN NULL; END IF;
            PERFORM 1 FROM pools WHERE id = NEW.pool_id FOR UPDATE;
            IF EXISTS (
                SELECT 1 FROM reservations n, reservation_devices d, reservations o
                 WHERE n.id = NEW.reservation_id AND n.status = 'active'
                   AND d.pool_id = NEW.pool_id AND d.device = NEW.device AND d.active
                   AND d.reservation_id <> NEW.reservation_id
                   AND o.id = d.reservation_id AND o.status = 'active'
                   AND n.starts_at < COALESCE(resgate_plan_end(o.ends_at, o.preempt_at),
                                              'infinity')
                   AND o.starts_at < COALESCE(resgate_plan_end(n.ends_at, n.preempt_at),
                                              'infinity')) THEN
                RAISE EXCEPTION '{DEVICE_TAKEN}' USING ERRCODE = '23505';
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER reservation_devices_guard AFTER INSERT OR UPDATE ON reservation_devices
        FOR EACH ROW EXECUTE FUNCTION resgate_device_guard()""")
    op.execute(f"""
        CREATE FUNCTION resgate_pool_free() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO pool_free (pool_id, at, cpu, memory, gpu)
                VALUES (NEW.id, '{FLOOR}', NEW.cpu, NEW.memory, NEW.gpu);
            ELSIF NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu THEN
                UPDATE pool_free SET cpu = cpu + NEW.cpu - OLD.cpu,
                       memory = memory + NEW.memory - OLD.memory, gpu = gpu + NEW.gpu - OLD.gpu
                 WHERE pool_id = NEW.id;
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER pools_resize_guard AFTER INSERT OR UPDATE OF cpu, memory, gpu ON pools
        FOR EACH ROW EXECUTE FUNCTION resgate_pool_free()""")


# ---------------------------------------------------------------- both


_FROZEN = (
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


def _immutable_guard(postgres: bool, *, drop_only: bool = False) -> None:
    """reservations_ended_immutable with the new columns frozen too (PostgreSQL's
    compares whole rows, so only SQLite's names them)."""
    if postgres:
        if drop_only:
            op.execute("ALTER TABLE reservations DISABLE TRIGGER reservations_ended_immutable")
        else:
            op.execute("ALTER TABLE reservations ENABLE TRIGGER reservations_ended_immutable")
        return
    op.execute("DROP TRIGGER IF EXISTS reservations_ended_immutable")
    if drop_only:
        return
    frozen = " OR ".join(
        f"NEW.{c} IS NOT OLD.{c}" for c in (*_FROZEN, "starts_at", "ends_at", "preempt_at", "lease")
    )
    op.execute(f"""
        CREATE TRIGGER reservations_ended_immutable
        BEFORE UPDATE ON reservations
        WHEN (OLD.status <> 'active' AND (NEW.runner IS NOT NULL OR {frozen}))
          OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id OR NEW.pool_id <> OLD.pool_id
          OR NEW.cpu <> OLD.cpu OR NEW.memory <> OLD.memory OR NEW.gpu <> OLD.gpu
          OR NEW.created_at <> OLD.created_at
        BEGIN
            SELECT RAISE(ABORT, 'resgate: only an active reservation may change');
        END""")


def _views(postgres: bool) -> None:
    if postgres:
        now = "(now() AT TIME ZONE 'UTC')"

        def pct(used: str, total: str) -> str:
            return f"ROUND(100.0 * {used} / NULLIF({total}, 0), 2)::float8"

        planned_end = "LEAST(r.ends_at, r.preempt_at)"
    else:
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

        def pct(used: str, total: str) -> str:
            return f"ROUND(100.0 * {used} / NULLIF({total}, 0), 2)"

        planned_end = _end("r")
    effective = (
        f"r.status = 'active' AND r.starts_at <= {now} "
        f"AND (r.expires_at IS NULL OR r.expires_at > {now}) "
        f"AND (r.preempt_at IS NULL OR r.preempt_at > {now})"
    )
    op.execute(f"""
        CREATE VIEW active_reservations AS
        SELECT r.id, t.name AS tenant, p.name AS pool, r.cpu, r.memory, r.gpu, r.ttl,
               r.created_at, r.expires_at, r.request_id
          FROM reservations r
          JOIN tenants t ON t.id = r.tenant_id
          JOIN pools p ON p.id = r.pool_id
         WHERE {effective}""")
    booked = (
        f"r.status = 'active' AND (r.expires_at IS NULL OR r.expires_at > {now}) "
        f"AND (r.preempt_at IS NULL OR r.preempt_at > {now})"
    )
    op.execute(f"""
        CREATE VIEW booked_reservations AS
        SELECT r.id, t.name AS tenant, p.name AS pool, r.cpu, r.memory, r.gpu,
               r.starts_at, {planned_end} AS planned_end, r.preempt_at, r.lease,
               CASE WHEN r.starts_at > {now} THEN 'upcoming' ELSE 'active' END AS phase,
               r.created_by
          FROM reservations r
          JOIN tenants t ON t.id = r.tenant_id
          JOIN pools p ON p.id = r.pool_id
         WHERE {booked}""")
    used = {res: f"COALESCE(SUM(r.{res}), 0)" for res in RESOURCES}
    columns = ",\n               ".join(
        f"p.{res} AS {res}_total, {used[res]} AS {res}_reserved, "
        f"p.{res} - {used[res]} AS {res}_available, "
        f"COALESCE({pct(used[res], 'p.' + res)}, 0) AS {res}_percent"
        for res in RESOURCES
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
    """Back to 0008, refused while a booking is upcoming: the earlier schema has no
    place for it."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    now = "(now() AT TIME ZONE 'UTC')" if postgres else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    upcoming = bind.execute(
        sa.text(f"SELECT COUNT(*) FROM reservations WHERE status = 'active' AND starts_at > {now}")
    ).scalar()
    if upcoming:
        raise RuntimeError(f"{upcoming} upcoming booking(s): cancel them before downgrading")
    for view in ("booked_reservations", "pool_utilization", "active_reservations"):
        op.execute(f"DROP VIEW {view}")
    if postgres:
        op.execute("DROP TRIGGER reservations_capacity_guard ON reservations")
        op.execute("DROP TRIGGER reservation_devices_guard ON reservation_devices")
        op.execute("DROP TRIGGER pools_resize_guard ON pools")
        for function in (
            "resgate_plan_guard()",
            "resgate_take_plan(reservations, integer, timestamp)",
            "resgate_device_guard()",
            "resgate_pool_free()",
            "resgate_plan_end(timestamp, timestamp)",
        ):
            op.execute(f"DROP FUNCTION {function}")
    else:
        for trigger in (
            "pools_free_floor",
            "pools_resize_guard",
            "reservations_capacity_guard",
            "reservations_plan_end",
            "reservations_plan_change",
            "reservations_per_tenant_guard",
            "reservations_per_tenant_change",
            "reservation_devices_guard",
            "reservations_devices_change",
            "reservations_ended_immutable",
        ):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index("ix_pool_free_at", "pool_free")
    op.drop_table("pool_free")
    op.drop_index("ix_reservation_devices_active", "reservation_devices")
    op.create_index(
        "uq_reservation_devices_active",
        "reservation_devices",
        ["pool_id", "device"],
        unique=True,
        sqlite_where=sa.text("active = 1"),
        postgresql_where=sa.text("active"),
    )
    for column in ("lease", "preempt_at", "ends_at", "starts_at"):
        op.execute(f"ALTER TABLE reservations DROP COLUMN {column}")
    earlier = _revision("0001_initial_schema")
    _earlier_guards(postgres, earlier)
    earlier._views(bind.dialect.name)


def _revision(name: str) -> Any:
    """An earlier revision's module, for its frozen SQL."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _earlier_guards(postgres: bool, initial: Any) -> None:
    """0001's capacity and resize guards and 0008's per-tenant and immutability ones."""
    if postgres:
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
        _revision("0008_sharing_one_machine")._postgresql_guards()
        return
    over_insert = initial._SQLITE_OVER.format(
        pool="NEW.pool_id", add_cpu="NEW.cpu", add_memory="NEW.memory", add_gpu="NEW.gpu"
    )
    op.execute(f"""
        CREATE TRIGGER reservations_capacity_guard
        BEFORE INSERT ON reservations WHEN NEW.status = 'active'
        BEGIN
            SELECT RAISE(ABORT, 'resgate: pool capacity exceeded')
            FROM pools p WHERE p.id = NEW.pool_id AND ({over_insert});
        END""")
    over_resize = (
        initial._SQLITE_OVER.format(pool="NEW.id", add_cpu="0", add_memory="0", add_gpu="0")
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
    # 0008's per-tenant guard, and its immutability guard (which it drops first).
    op.execute("""
        CREATE TRIGGER reservations_ended_immutable BEFORE UPDATE ON reservations
        WHEN 0 BEGIN SELECT 1; END""")
    _revision("0008_sharing_one_machine")._sqlite_guards()
