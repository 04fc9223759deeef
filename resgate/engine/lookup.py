"""Finding a reservation by its id or a prefix of it, and taking it for a change:
locked, swept, and refused unless active and the caller may act for its tenant."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, select

from resgate.engine import members
from resgate.engine.queries import (
    ACTIVE,
    RESERVATIONS,
    by_name,
    lock_reservation,
    lock_rows,
)
from resgate.engine.records import (
    Caller,
)
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    check_reservation_id,
)
from resgate.errors import NotFound, Refused
from resgate.store.database import Tx
from resgate.store.models import Pool, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row


@cache
def _by_id() -> Any:
    return select(RESERVATIONS).where(RESERVATIONS.c.id == bindparam("id"))


def find(tx: Tx, reservation_id: str) -> Row[Any]:
    """The stored row, read as Core (the ORM's get cost several times the query
    on unreserve's path: benchmarks/, cycles). A prefix names the one reservation
    it starts (resolve_id)."""
    rid = resolve_id(tx, reservation_id)
    row = tx.connection.execute(_by_id(), {"id": rid}).first()
    if row is None:
        raise NotFound(f"reservation '{reservation_id}' not found")
    return row


AMBIGUOUS_SHOWN = 5


def resolve_id(tx: Tx, given: str) -> str:
    """The id that `given` (an id, or a prefix of 4 or more hex digits, any case)
    names: among active reservations first, then among all. Several: NotFound
    naming up to five; none: the id as given, for the caller's not-found."""
    rid = check_reservation_id(given)
    if len(rid) == 16:
        return rid
    column = by_name(tx, RESERVATIONS.c.id)
    # A range on the primary key: ids are lowercase hex, all below 'g'.
    starts = [column >= rid, column < rid + "g"]
    for scope in ([*starts, RESERVATIONS.c.status == ACTIVE], starts):
        found = list(
            tx.connection.execute(
                select(RESERVATIONS.c.id).where(*scope).order_by(column).limit(AMBIGUOUS_SHOWN + 1)
            ).scalars()
        )
        if len(found) == 1:
            return str(found[0])
        if found:
            shown = ", ".join(_told_apart(found[:AMBIGUOUS_SHOWN]))
            more = ", …" if len(found) > AMBIGUOUS_SHOWN else ""
            raise NotFound(f"reservation prefix '{given}' is ambiguous: {shown}{more}")
    return rid


def _told_apart(ids: list[str]) -> list[str]:
    """Short ids (8 hex digits and `…`), longer where 8 do not tell them apart."""
    length = 8
    while length < 16 and len({rid[:length] for rid in ids}) < len(ids):
        length += 1
    return [rid if length == 16 else f"{rid[:length]}…" for rid in ids]


def tenant_by_id(tx: Tx, tenant_id: int) -> Row[Any]:
    tenants: Table = Tenant.__table__  # type: ignore[assignment]
    return tx.connection.execute(select(tenants).where(tenants.c.id == tenant_id)).one()


def require_active(tx: Tx, reservation_id: str, caller: Caller | None = None) -> Row[Any]:
    """The reservation, locked and swept; refused unless the caller may act for
    its tenant and it is effective-active."""
    reservation = find(tx, reservation_id)
    if caller is not None and not caller.admin:
        members.check_may_act(tx, tenant_by_id(tx, reservation.tenant_id), caller)
    lock_rows(tx, Pool, [reservation.pool_id])
    lock_rows(tx, Tenant, [reservation.tenant_id])
    lock_reservation(tx, reservation.id)
    expired = sweep(tx)
    # SQLite: the row was read under this writer's lock, so only the sweep can
    # have changed it. PostgreSQL: re-read it under the row lock just taken.
    if tx.is_postgres or reservation.id in expired:
        reservation = find(tx, reservation.id)
    if reservation.status != "active":
        raise Refused(
            f"reservation '{reservation.id}' is not active (status: {reservation.status})"
        )
    return reservation
