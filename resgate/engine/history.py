"""The reservation history that `export` streams."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import or_, select

from resgate.engine.queries import (
    effective_ended_at,
    insertion_order,
    reservations_query,
    to_info,
)
from resgate.engine.records import ReservationInfo
from resgate.store.database import Tx
from resgate.store.models import Event, Reservation


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
