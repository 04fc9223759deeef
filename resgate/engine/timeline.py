"""`resgate timeline` (README "Booking ahead"): what a pool's reservations hold over
a stretch of time, past or ahead — each with the span it holds (until it ended,
else until its planned end) — for the calendar that render/timeline.py draws."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_

from resgate.engine import devices, members
from resgate.engine.queries import (
    effective_ended_at,
    insertion_order,
    pool_row,
    reservations_query,
    to_info,
)
from resgate.engine.records import Amounts, Held, ReservationInfo, Timeline
from resgate.engine.validation import FIELD_NAMES, HORIZON, Spelling
from resgate.engine.windows import plan_end
from resgate.errors import InvalidInput
from resgate.store.database import Tx
from resgate.store.models import Reservation

MOST_HOURS = int(HORIZON.total_seconds()) // 3600


def timeline(
    tx: Tx,
    pool: str | None = None,
    start: datetime | None = None,
    hours: int = 24,
    spelled: Spelling = FIELD_NAMES,
) -> Timeline:
    """The pool (None: the only one) from `start` (None: now) for `hours`."""
    if not 1 <= hours <= MOST_HOURS:
        raise InvalidInput(
            f"{spelled.get('hours', 'hours')} must be between 1 and {MOST_HOURS}, got {hours}"
        )
    row = pool_row(tx, pool or members.default_pool(tx, spelled))
    begins = tx.now if start is None else start
    ends = begins + timedelta(hours=hours)
    held_until = func.coalesce(effective_ended_at(tx.now), plan_end())
    query = reservations_query(tx.now, tx.dialect).where(
        Reservation.pool_id == row.id,
        Reservation.starts_at < ends,
        or_(held_until.is_(None), held_until > begins),
    )
    infos = [to_info(r) for r in tx.session.execute(query.order_by(*insertion_order(tx)))]
    # A booking cancelled before its start held nothing.
    held = tuple(h for h in map(_held, infos) if h.end is None or h.end > h.start)
    return Timeline(
        row.name,
        begins,
        ends,
        tx.now,
        Amounts(row.cpu, row.memory, row.gpu),
        tuple(devices.pool_ids(tx, row.id)),
        held,
    )


def _held(info: ReservationInfo) -> Held:
    """From its start until it ended, else until its planned end (None: open-ended)."""
    start = info.starts_at or info.created_at
    if info.ended_at is not None:
        return Held(info, start, info.ended_at)
    planned = [t for t in (info.ends_at, info.preempt_at) if t is not None]
    return Held(info, start, min(planned, default=None))
