"""Expiry: one UPDATE … RETURNING, whatever the number of due reservations."""

from __future__ import annotations

from sqlalchemy import update

from resgate.engine.queries import is_due
from resgate.store.database import Tx
from resgate.store.models import Reservation


def sweep(tx: Tx) -> list[str]:
    """Mark every due reservation expired, ended when it expired. Returns their ids."""
    statement = (
        update(Reservation)
        .where(is_due(tx.now))
        .values(status="expired", ended_at=Reservation.expires_at)
        .returning(Reservation.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(tx.session.scalars(statement).all())
