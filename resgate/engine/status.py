"""`resgate status`: what every pool holds, and what ended lately."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from resgate.engine.listing import count_active
from resgate.engine.pools import list_pools
from resgate.engine.queries import (
    ACTIVE,
    is_due,
)
from resgate.engine.records import StatusReport
from resgate.engine.tenants import list_tenants
from resgate.store.database import Tx
from resgate.store.models import Reservation

WINDOW_HOURS = 24


def status(tx: Tx) -> StatusReport:
    """Counts: active now, and those that ended within the window by final status.
    Both counts use indexes on active or recent rows, never the whole history."""
    since = tx.now - timedelta(hours=WINDOW_HOURS)
    upcoming = tx.session.scalar(
        select(func.count()).where(Reservation.status == ACTIVE, Reservation.starts_at > tx.now)
    )
    counts = {
        "active": count_active(tx),
        "upcoming": int(upcoming or 0),
        "released": 0,
        "expired": 0,
        "preempted": 0,
    }
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
