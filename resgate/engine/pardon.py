"""Pardons (README "Booking ahead"): when a reservation that truncated others ends
before its start, its victims get back as much of their planned end as still fits,
in descending priority and then creation order; the others stay truncated, and the
result says why."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from resgate.clock import iso
from resgate.engine import audit, extension, windows
from resgate.engine.queries import RESERVATIONS, insertion_order
from resgate.engine.records import Pardon
from resgate.store.database import Tx
from resgate.store.models import Reservation, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row


def pardon(tx: Tx, ended: Sequence[str]) -> list[Pardon]:
    """Give the victims truncated for the reservations `ended` (just ended, not
    started) back what still fits of their time."""
    if not ended:
        return []
    started = tx.session.scalars(
        select(RESERVATIONS.c.id).where(
            RESERVATIONS.c.id.in_(list(ended)), RESERVATIONS.c.starts_at <= tx.now
        )
    ).all()
    before_start = [rid for rid in ended if rid not in set(started)]
    if not before_start:
        return []
    victims = tx.session.execute(
        select(RESERVATIONS)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(
            Reservation.preempted_for.in_(before_start),
            Reservation.status == "active",
            Reservation.preempt_at.is_not(None),
            Reservation.preempt_at > tx.now,
        )
        .order_by(Tenant.priority.desc(), *insertion_order(tx))
    ).all()
    return [_give_back(tx, victim) for victim in victims]


def _give_back(tx: Tx, row: Row[Any]) -> Pardon:
    """As much of the victim's planned end as fits again (nothing: it stays truncated)."""
    truncated_at: datetime = row.preempt_at
    pool = tx.connection.execute(extension.pool_by_id(), {"id": row.pool_id}).one()
    found = extension.blocks(tx, row, pool, windows.Window(truncated_at, row.ends_at))
    first = min(found, key=lambda block: block[0]) if found else None
    if first is not None and first[0] <= truncated_at:
        return Pardon(row.id, truncated_at, truncated_at, first[1])
    end: datetime | None = row.ends_at if first is None else first[0]
    values: dict[str, object] = {"preempt_at": None if first is None else end}
    if first is None:
        values.update(preempted_by=None, preempted_for=None)
    if not row.lease:
        values["expires_at"] = end  # the planned end again (a lease renews its own)
    tx.session.execute(
        update(Reservation)
        .where(Reservation.id == row.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    data = {
        "for": row.preempted_for,
        "until": None if end is None else iso(end),
        "whole": first is None,
    }
    audit.record(tx, [audit.Change("reservation.pardon", row.id, data)])
    return Pardon(row.id, truncated_at, end, None if first is None else first[1])
