"""`resgate free` (README "Seeing it at a glance"): what is free now in every live
pool, or in one.

Each pool comes back as `pool show` reads it (PoolInfo with its devices and their
holders): free is its `available`, the free GPU ids are the devices no one holds.
The seams for what is not built yet: booking ahead will
ask what is free at a later instant and until when it stays so, and waiting in
line how much of it is promised to the queue's head; both will take an `at` here
and return the same records with those two facts beside them. Until then `free`
is always "now", free until no one knows (null) and promised to no one."""

from __future__ import annotations

from sqlalchemy import select

from resgate.engine.pools import show_pool
from resgate.engine.queries import by_name
from resgate.engine.records import PoolInfo
from resgate.store.database import Tx
from resgate.store.models import Pool


def free_now(tx: Tx, pool: str | None = None) -> list[PoolInfo]:
    """Every live pool by name (or only `pool`: exit 1 if there is none), with
    its devices and who holds them."""
    if pool is not None:
        return [show_pool(tx, pool)]
    names = tx.session.scalars(
        select(Pool.name).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
    ).all()
    return [show_pool(tx, name) for name in names]
