"""Moving a reservation's end: extend (a TTL from now, --by, --until) and the lease
renewals of `resgate run`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, select, update

from resgate.clock import ends, iso, local
from resgate.engine import audit, devices, lookup, policies, windows
from resgate.engine.queries import (
    RESERVATIONS,
    reservation_info,
)
from resgate.engine.records import (
    Amounts,
    Caller,
    ReservationInfo,
)
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_ttl,
)
from resgate.errors import InsufficientResources, InvalidInput, Refused
from resgate.store.database import Tx
from resgate.store.models import Pool

if TYPE_CHECKING:
    from sqlalchemy.engine import Row


@dataclass(frozen=True)
class Extension:
    """How `extend` moves the end: `ttl` from now (0: no end), `by` seconds past the
    current end, or `until` an instant (README "Typing less"). Exactly one is set."""

    ttl: int | None = None
    by: int | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ExtendResult:
    reservation: ReservationInfo
    before: datetime | None  # the end it had
    now: datetime


def extend(
    tx: Tx, reservation_id: str, ttl: int | None, caller: Caller | None = None
) -> ReservationInfo:
    """`expires_at = now + ttl`; a ttl of 0 or None removes the expiry."""
    return extend_and_report(tx, reservation_id, Extension(ttl=ttl), caller).reservation


def renew(tx: Tx, reservation_id: str, ttl: int) -> ReservationInfo:
    """A lease renewal by `resgate run`: extend, logged as `reservation.renew`."""
    lease = check_ttl(ttl)
    return _set_expiry(tx, reservation_id, lambda _: ends(tx.now, lease), "reservation.renew")


def extend_and_report(
    tx: Tx,
    reservation_id: str,
    change: Extension,
    caller: Caller | None = None,
    spelled: Spelling = FIELD_NAMES,
) -> ExtendResult:
    """Move a reservation's end; what it was before, and the transaction's now."""
    before: list[datetime | None] = []

    def end(row: Row[Any]) -> datetime | None:
        before.append(row.expires_at)
        if change.by is not None:
            if row.expires_at is None:
                raise Refused(
                    f"reservation '{row.id}' has no end to extend: use "
                    f"{spelled.get('ttl', 'ttl')} or {spelled.get('until', 'until')}"
                )
            moved: datetime = row.expires_at + timedelta(seconds=change.by)
            return moved
        if change.until is not None:
            if change.until <= tx.now:
                raise InvalidInput(f"the new end {iso(change.until)} is not after now")
            return change.until
        return ends(tx.now, check_ttl(change.ttl))

    info = _set_expiry(tx, reservation_id, end, "reservation.extend", True, caller)
    return ExtendResult(info, before[0], tx.now)


@cache
def _set_expiry_statement() -> Any:
    return (
        update(RESERVATIONS)
        .where(RESERVATIONS.c.id == bindparam("rid"))
        .values(
            ttl=bindparam("ttl"), expires_at=bindparam("expires_at"), ends_at=bindparam("ends_at")
        )
    )


@cache
def _pool_by_id() -> Any:
    pools: Table = Pool.__table__  # type: ignore[assignment]
    return select(pools).where(pools.c.id == bindparam("id"))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def _set_expiry(
    tx: Tx,
    reservation_id: str,
    end: Callable[[Row[Any]], datetime | None],
    action: str,
    bounded: bool = False,
    caller: Caller | None = None,
) -> ReservationInfo:
    """`end(row)`: the new expiry. bounded: the pool's maximum TTL applies (an
    extend; never a lease's renewal)."""
    reservation = lookup.require_active(tx, reservation_id, caller)
    old = {"ttl": reservation.ttl, "expires_at": _iso(reservation.expires_at)}
    expires_at = end(reservation)
    # The stored ttl stays "seconds from the last change to the end" (docs/schema.md).
    ttl = None if expires_at is None else max(1, math.ceil((expires_at - tx.now).total_seconds()))
    pool = tx.connection.execute(_pool_by_id(), {"id": reservation.pool_id}).one()
    if bounded:
        policies.check_length(pool, reservation.starts_at, expires_at)
    if reservation.lease:
        # A renewal never goes past a planned truncation or the run's time limit.
        stops = [t for t in (reservation.ends_at, reservation.preempt_at) if t is not None]
        if stops and (expires_at is None or expires_at > min(stops)):
            expires_at = min(stops)
        ends_at = reservation.ends_at
    else:
        _check_room(tx, reservation, pool, expires_at)
        ends_at = expires_at
    tx.connection.execute(
        _set_expiry_statement(),
        {"rid": reservation.id, "ttl": ttl, "expires_at": expires_at, "ends_at": ends_at},
    )
    new = {"ttl": ttl, "expires_at": _iso(expires_at)}
    audit.record(tx, [audit.Change(action, reservation.id, {"old": old, "new": new})])
    return reservation_info(tx, reservation.id)


def _check_room(tx: Tx, reservation: Row[Any], pool: Row[Any], end: datetime | None) -> None:
    """The added time must fit (README "Booking ahead"): refused with the latest end
    that would (exit 3); past a planned truncation, refused (exit 4)."""
    if reservation.preempt_at is not None and (end is None or end > reservation.preempt_at):
        raise Refused(
            f"reservation '{reservation.id}' is preempted from {local(reservation.preempt_at)}: "
            "it cannot be extended past that"
        )
    old_end = reservation.ends_at
    if old_end is None or (end is not None and end <= old_end):
        return
    added = windows.Window(old_end, end)
    need = Amounts(reservation.cpu, reservation.memory, reservation.gpu)
    latest: list[tuple[datetime, str]] = []
    short = windows.first_shortfall(windows.free_steps(tx, pool.id, added), need)
    if short is not None:
        at, free = short
        latest.append(
            (at, f"only cpu={free.cpu} mem={free.memory} gpu={free.gpu} are free from {local(at)}")
        )
    mine = set(devices.held_by(tx, reservation.id))
    for device, other in devices.holders(tx, pool.id, added).items():
        if device in mine and other != reservation.id:
            booked = windows.holder(tx, other)
            latest.append(
                (
                    max(booked.starts_at, old_end),
                    f"gpu {device} is booked by '{booked.tenant}' from "
                    f"{local(booked.starts_at)} (reservation {booked.id})",
                )
            )
    if latest:
        at, why = min(latest)
        shown = "open-ended" if end is None else local(end)
        raise InsufficientResources(
            f"cannot extend to {shown}: {why}; the latest possible end is {local(at)}"
        )
