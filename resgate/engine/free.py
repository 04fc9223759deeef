"""`resgate free` (README "Seeing it at a glance"): what is free now, or at an
instant ahead (README "Booking ahead"), in every live pool or in one, and until
when it stays so. How much of it is promised to the queue's head comes with the
queue; until then it is promised to no one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from resgate.engine.calendar import free_at
from resgate.engine.queries import by_name, pool_row
from resgate.engine.records import FreeInfo
from resgate.engine.validation import FIELD_NAMES, Spelling, check_window
from resgate.store.database import Tx
from resgate.store.models import Pool


def free(
    tx: Tx, pool: str | None = None, at: datetime | None = None, spelled: Spelling = FIELD_NAMES
) -> list[FreeInfo]:
    """Every live pool by name (or only `pool`: exit 1 if there is none) at `at`
    (None: now), which is checked as a booking's start is: in the past or beyond
    the horizon is exit 2."""
    when = tx.now
    if at is not None:
        when, _ = check_window(tx.now, at, None, None, spelled)
    names = (
        [pool]
        if pool is not None
        else tx.session.scalars(
            select(Pool.name).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
        ).all()
    )
    found = []
    for name in names:
        row = pool_row(tx, name)
        free_amounts, ids, until = free_at(tx, row, when)
        found.append(FreeInfo(row.name, when, free_amounts, tuple(ids), until))
    return found
