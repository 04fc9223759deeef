"""Expiry: one UPDATE … RETURNING, whatever the number of due reservations."""

from __future__ import annotations

from sqlalchemy import Table, bindparam, literal_column, update

from resgate.engine import audit, devices
from resgate.store.database import Tx
from resgate.store.models import Reservation

_reservations: Table = Reservation.__table__  # type: ignore[assignment]
_table = _reservations.c
# Built once, as Core: every write transaction runs it, and building the ORM
# statement anew each time cost more than executing it (benchmarks/, cycles).
# 'active' is written inline so SQLite can use the partial index on due rows.
_SWEEP = (
    update(_reservations)
    .where(
        _table.status == literal_column("'active'"),
        _table.expires_at.is_not(None),
        _table.expires_at <= bindparam("now"),
    )
    .values(status="expired", ended_at=_table.expires_at)
    .returning(_table.id, _table.expires_at)
)


def sweep(tx: Tx) -> list[str]:
    """Mark every due reservation expired, ended when it expired, and log them in
    one batched insert. Returns their ids."""
    # Sorted by id as plain strings: comparing SQLAlchemy Rows is ~30x slower,
    # seconds at 100,000 due rows (benchmarks/, sweep).
    rows = tx.connection.execute(_SWEEP, {"now": tx.now}).all()
    expired = sorted(rows, key=lambda row: str(row.id))
    if expired:
        devices.free_ended(tx)
    audit.record(
        tx,
        (
            audit.Change("reservation.expire", row.id, {"expires_at": audit.iso(row.expires_at)})
            for row in expired
        ),
    )
    return [row.id for row in expired]
