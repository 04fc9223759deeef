"""The reservation history that `export` streams."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

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
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Iterator[ReservationInfo]:
    """Every reservation by creation with its final status, streamed in batches.
    `since`: created or ended at or after it; `touched_after`: named by an audit
    event with a higher sequence number (a cron job's cursor). `on_progress(done,
    total)` is told, every `batch` rows, how many have been read of how many (counted
    first, only when there is someone to tell)."""
    filters = _filters(tx, since, touched_after)
    total = None
    if on_progress is not None:
        total = tx.session.scalar(select(func.count()).select_from(Reservation).where(*filters))
    result = tx.session.execute(
        reservations_query(tx.now, tx.dialect).where(*filters).order_by(*insertion_order(tx)),
        execution_options={"yield_per": batch},
    )
    if on_progress is None:
        for row in result:
            yield to_info(row)
        return
    yield from _reported(result, total, batch, on_progress)


def _filters(tx: Tx, since: datetime | None, touched_after: int | None) -> list[Any]:
    filters = []
    if since is not None:
        filters.append(or_(Reservation.created_at >= since, effective_ended_at(tx.now) >= since))
    if touched_after is not None:
        filters.append(
            Reservation.id.in_(
                select(Event.subject).where(
                    Event.seq > touched_after, Event.action.like("reservation.%")
                )
            )
        )
    return filters


def _reported(
    rows: Iterable[Any],
    total: int | None,
    every: int,
    on_progress: Callable[[int, int | None], None],
) -> Iterator[ReservationInfo]:
    done = 0
    on_progress(done, total)
    for row in rows:
        yield to_info(row)
        done += 1
        if done % every == 0:
            on_progress(done, total)
    on_progress(done, total)
