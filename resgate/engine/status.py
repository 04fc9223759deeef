"""The status view, the export's rows and `db check`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, text

from resgate.engine.listing import count_active, list_reservations
from resgate.engine.pools import list_pools
from resgate.engine.queries import (
    ACTIVE,
    effective_ended_at,
    insertion_order,
    is_due,
    reservations_query,
    to_info,
)
from resgate.engine.records import CheckReport, ReservationInfo, StatusReport
from resgate.engine.tenants import list_tenants
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Event, Pool, Reservation, Tenant

WINDOW_HOURS = 24


def status(tx: Tx) -> StatusReport:
    """Counts: active now, and those that ended within the window by final status.
    Both counts use indexes on active or recent rows, never the whole history."""
    since = tx.now - timedelta(hours=WINDOW_HOURS)
    counts = {"active": count_active(tx), "released": 0, "expired": 0, "preempted": 0}
    ended = tx.session.execute(
        select(Reservation.status, func.count())
        .where(Reservation.ended_at >= since, Reservation.status != ACTIVE)
        .group_by(Reservation.status)
    )
    for state, count in ended:
        counts[state] += count
    # Past due but not yet swept: expired for every purpose.
    counts["expired"] += int(
        tx.session.scalar(
            select(func.count()).where(is_due(tx.now), Reservation.expires_at >= since)
        )
        or 0
    )
    return StatusReport(
        now=tx.now,
        pools=list_pools(tx),
        tenants=list_tenants(tx),
        counts=counts,
        window_hours=WINDOW_HOURS,
    )


def active_reservations(tx: Tx) -> list[ReservationInfo]:
    """The effective-active reservations, as `list` shows them."""
    return list_reservations(tx)


def history(
    tx: Tx,
    since: datetime | None = None,
    batch: int = 2000,
    touched_after: int | None = None,
) -> Iterator[ReservationInfo]:
    """Every reservation by creation with its final status, streamed in batches.
    `since`: created or ended at or after it; `touched_after`: named by an audit
    event with a higher sequence number (a cron job's cursor)."""
    query = reservations_query(tx.now, tx.dialect)
    if since is not None:
        query = query.where(
            or_(Reservation.created_at >= since, effective_ended_at(tx.now) >= since)
        )
    if touched_after is not None:
        query = query.where(
            Reservation.id.in_(
                select(Event.subject).where(
                    Event.seq > touched_after, Event.action.like("reservation.%")
                )
            )
        )
    result = tx.session.execute(
        query.order_by(*insertion_order(tx)), execution_options={"yield_per": batch}
    )
    for row in result:
        yield to_info(row)


def check(tx: Tx) -> CheckReport:
    """Recompute every pool's usage from the reservations and compare with its
    totals; run the integrity checks of the backend."""
    problems: list[str] = []
    usage_rows = tx.session.execute(
        select(
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
    for name, deleted_at, *values in usage_rows:
        totals, used, count = values[0:3], values[3:6], values[6]
        for resource, total, reserved in zip(RESOURCES, totals, used, strict=True):
            if reserved > total:
                problems.append(
                    f"pool '{name}': {resource} reserved {reserved} exceeds total {total}"
                )
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
    twins = tx.session.execute(
        select(Reservation.tenant_id, Reservation.pool_id, func.count())
        .where(Reservation.status == ACTIVE)
        .group_by(Reservation.tenant_id, Reservation.pool_id)
        .having(func.count() > 1)
    ).all()
    for tenant_id, pool_id, count in twins:
        problems.append(f"tenant #{tenant_id} holds {count} active reservations in pool #{pool_id}")
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


__all__ = ["active_reservations", "check", "history", "status"]
