"""Reading reservations: the list, and the count of active ones.

Apart from the reservation commands so that `list` and `status` load none of the
write path (audit log, preemption, devices): every command pays for what it
imports (benchmarks/README.md, benchmarks/, startup)."""

from __future__ import annotations

from sqlalchemy import func, select

from resgate.engine.queries import (
    effective_status,
    insertion_order,
    is_active_now,
    is_booked,
    not_found,
    reservations_query,
    to_info,
)
from resgate.engine.records import ReservationInfo
from resgate.engine.validation import check_status
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant


def list_reservations(
    tx: Tx,
    *,
    include_ended: bool = False,
    tenant: str | None = None,
    pool: str | None = None,
    status: str | None = None,
    created_by: str | None = None,
) -> list[ReservationInfo]:
    """Upcoming and active reservations (all of them with include_ended), by creation.
    Tenant and pool filters match by name, deleted rows included; `created_by`
    keeps only the reservations that actor made (README "Who is acting"), none
    of those made before it was recorded."""
    query = reservations_query(tx.now, tx.dialect)
    if status is not None:
        check_status(status)
        include_ended = True
    if tenant is not None:
        ids = tx.session.scalars(select(Tenant.id).where(Tenant.name == tenant)).all()
        if not ids:
            raise not_found(tx, "tenant", tenant)
        query = query.where(Reservation.tenant_id.in_(ids))
    if pool is not None:
        ids = tx.session.scalars(select(Pool.id).where(Pool.name == pool)).all()
        if not ids:
            raise not_found(tx, "pool", pool)
        query = query.where(Reservation.pool_id.in_(ids))
    if created_by is not None:
        query = query.where(Reservation.created_by == created_by)
    if not include_ended:
        query = query.where(is_booked(tx.now))
    elif status is not None:
        query = query.where(effective_status(tx.now) == status)
    rows = tx.session.execute(query.order_by(*insertion_order(tx, active_only=not include_ended)))
    return [to_info(row) for row in rows]


def count_active(tx: Tx) -> int:
    return int(tx.session.scalar(select(func.count()).where(is_active_now(tx.now))) or 0)
