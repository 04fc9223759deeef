"""Expiry: one UPDATE … RETURNING, whatever the number of due reservations."""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter

from sqlalchemy import String, and_, bindparam, case, literal_column, type_coerce, update

from resgate.clock import iso
from resgate.engine import audit, devices, windows
from resgate.engine.queries import ACTIVE, RESERVATIONS
from resgate.store.database import Tx

_table = RESERVATIONS.c
# Built once, as Core: every write transaction runs it (benchmarks/README.md, cycles).
# ACTIVE is written inline so SQLite can use the partial index on due rows.
# expires_at comes back as stored (text on SQLite): the audit log wants it as ISO
# text, so the sweep need not parse timestamps only to format them again.
_SWEEP = (
    update(RESERVATIONS)
    .where(
        _table.status == ACTIVE,
        _table.expires_at.is_not(None),
        _table.expires_at <= bindparam("now"),
    )
    .values(
        # A planned truncation (README "Booking ahead") ends it as preempted.
        status=case(
            (
                and_(_table.preempt_at.is_not(None), _table.preempt_at <= _table.expires_at),
                literal_column("'preempted'"),
            ),
            else_=literal_column("'expired'"),
        ),
        ended_at=_table.expires_at,
    )
    .returning(_table.id, type_coerce(_table.expires_at, String), _table.status)
)


def sweep(tx: Tx) -> list[str]:
    """Mark every due reservation expired, ended when it expired, and log them in
    one batched insert. Returns their ids."""
    # Fetched at once and sorted on the id alone: iterating a result fetches row
    # by row, and comparing SQLAlchemy Rows is ~30x slower than comparing ids.
    expired = sorted(tx.connection.execute(_SWEEP, {"now": tx.now}).all(), key=itemgetter(0))
    windows.prune(tx)
    # Whatever this transaction goes on to do, the line is looked at before it
    # commits (README "Waiting in line"). Imported here: the pass makes
    # reservations, and reservations sweep.
    from resgate.engine.queue import admit_waiting

    tx.at_commit(admit_waiting)
    if not expired:
        return []
    devices.free_ended(tx)
    audit.append(
        tx,
        (
            (_ACTIONS[status], rid, f'{{"expires_at":"{_iso(expires_at)}"}}')
            for rid, expires_at, status in expired
        ),
    )
    return [rid for rid, _, _ in expired]


# A truncated reservation ends as preempted: the event says so, at its planned instant.
_ACTIONS = {"expired": "reservation.expire", "preempted": "reservation.preempt"}


def _iso(stored: str | datetime) -> str:
    """An expiry as the log writes times (resgate.clock.iso), from its stored form."""
    if isinstance(stored, str):
        if len(stored) == 26 and stored[10] == " ":
            # 'YYYY-MM-DD HH:MM:SS.ffffff', the form resgate writes on SQLite.
            return f"{stored[:10]}T{stored[11:]}Z"
        stored = datetime.fromisoformat(stored)
    return iso(stored)
