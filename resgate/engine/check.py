"""`resgate db check`: the stored rows against the invariants of docs/schema.md."""

from __future__ import annotations

from sqlalchemy import func, select, text

from resgate.clock import iso
from resgate.engine import windows
from resgate.engine.queries import ACTIVE
from resgate.engine.records import Amounts, CheckReport
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant


def check(tx: Tx) -> CheckReport:
    """Recompute every pool's usage from the reservations and compare with its
    totals; run the integrity checks of the backend. Usage here is by stored
    status, not queries.usage_sums' effective one: the check is of what the rows
    say, due rows included."""
    problems: list[str] = []
    usage_rows = tx.session.execute(
        select(
            Pool.id,
            Pool.name,
            Pool.deleted_at,
            Pool.cpu,
            Pool.memory,
            Pool.gpu,
            func.coalesce(func.sum(Reservation.cpu), 0),
            func.coalesce(func.sum(Reservation.memory), 0),
            func.coalesce(func.sum(Reservation.gpu), 0),
            func.count(Reservation.id),
        )
        .select_from(Pool)
        .outerjoin(Reservation, (Reservation.pool_id == Pool.id) & (Reservation.status == ACTIVE))
        .group_by(Pool.id)
        .order_by(Pool.id)
    ).all()
    for pool_id, name, deleted_at, *values in usage_rows:
        totals, count = Amounts(*values[0:3]), values[6]
        problems += _over_time(tx, pool_id, name, totals)
        if deleted_at is not None and count:
            problems.append(f"deleted pool '{name}' still has {count} active reservation(s)")
    orphans = tx.session.execute(
        select(Tenant.name, func.count())
        .join(Reservation, Reservation.tenant_id == Tenant.id)
        .where(Tenant.deleted_at.is_not(None), Reservation.status == ACTIVE)
        .group_by(Tenant.name)
    ).all()
    for name, count in orphans:
        problems.append(f"deleted tenant '{name}' still has {count} active reservation(s)")
    # How many reservations a tenant holds is the trigger's to keep at insert: a
    # pool's limit may be lowered below what is held (README "Pool policies").
    integrity = "ok"
    if not tx.is_postgres:
        results = [row[0] for row in tx.session.execute(text("PRAGMA integrity_check"))]
        if results != ["ok"]:
            integrity = "; ".join(results[:10])
            problems.append(f"integrity check: {integrity}")
        fk = tx.session.execute(text("PRAGMA foreign_key_check")).all()
        if fk:
            problems.append(f"foreign key check: {len(fk)} row(s) point at nothing")
    return CheckReport(problems=problems, pools_checked=len(usage_rows), integrity=integrity)


def _over_time(tx: Tx, pool_id: int, name: str, totals: Amounts) -> list[str]:
    """At every instant from now on: what the plans hold within the totals, and
    pool_free (a stored counter, docs/schema.md) saying the same."""
    problems: list[str] = []
    expected = windows.recount(tx, pool_id, totals)
    stored = windows.free_steps(tx, pool_id, windows.Window(tx.now, None))
    for at, free in expected:
        when = "" if at == tx.now else f" at {iso(at)}"
        for resource, total, left in zip(RESOURCES, totals, free, strict=True):
            if left < 0:
                problems.append(
                    f"pool '{name}': {resource} reserved {total - left} exceeds total {total}"
                    + when
                )
        recorded = next((f for t, f in reversed(stored) if t <= at), None)
        if recorded != free:
            problems.append(
                f"pool '{name}': pool_free says {_shown(recorded)} free{when or ' now'}, "
                f"the reservations leave {_shown(free)}"
            )
            break
    return problems


def _shown(free: Amounts | None) -> str:
    if free is None:
        return "nothing"
    return f"cpu={free.cpu} mem={free.memory} gpu={free.gpu}"
