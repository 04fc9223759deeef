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

from resgate.clock import beside, ends, iso, local
from resgate.engine import audit, devices, lookup, policies, windows
from resgate.engine.calendar import Calendar
from resgate.engine.line import line_guard
from resgate.engine.queries import (
    RESERVATIONS,
    reservation_info,
)
from resgate.engine.quotas import limits_of
from resgate.engine.records import (
    Amounts,
    Caller,
    ReservationInfo,
    ranges,
)
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_ttl,
)
from resgate.errors import InsufficientResources, InvalidInput, Refused, ResgateError
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
    # When the whole added time does not fit: extend to the latest end that does.
    partial: bool = False


@dataclass(frozen=True)
class ExtendResult:
    reservation: ReservationInfo
    before: datetime | None  # the end it had
    now: datetime
    asked: datetime | None = None  # the end asked for
    partly: bool = False  # with `partial`: short of `asked`, the latest end that fits


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
    asked: list[datetime | None] = []

    def end(row: Row[Any]) -> datetime | None:
        before.append(row.expires_at)
        asked.append(_asked(tx, row, change, spelled))
        return asked[0]

    info = _set_expiry(tx, reservation_id, end, "reservation.extend", True, caller, change.partial)
    return ExtendResult(info, before[0], tx.now, asked[0], info.expires_at != asked[0])


def _asked(tx: Tx, row: Row[Any], change: Extension, spelled: Spelling) -> datetime | None:
    """The end `change` asks for."""
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
def pool_by_id() -> Any:
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
    partial: bool = False,
) -> ReservationInfo:
    """`end(row)`: the new expiry. bounded: the pool's maximum TTL applies (an
    extend; never a lease's renewal). partial: short of room, the latest end that
    fits."""
    reservation = lookup.require_active(tx, reservation_id, caller)
    old = {"ttl": reservation.ttl, "expires_at": _iso(reservation.expires_at)}
    expires_at = end(reservation)
    pool = tx.connection.execute(pool_by_id(), {"id": reservation.pool_id}).one()
    if not reservation.lease:
        expires_at = _room(tx, reservation, pool, expires_at, partial)
    # The stored ttl stays "seconds from the last change to the end" (docs/schema.md).
    ttl = None if expires_at is None else max(1, math.ceil((expires_at - tx.now).total_seconds()))
    if bounded:
        policies.check_length(pool, reservation.starts_at, expires_at)
    if reservation.lease:
        # A renewal never goes past a planned truncation or the run's time limit.
        stops = [t for t in (reservation.ends_at, reservation.preempt_at) if t is not None]
        if stops and (expires_at is None or expires_at > min(stops)):
            expires_at = min(stops)
        ends_at = reservation.ends_at
    else:
        ends_at = expires_at
    # An extension may not take what the head of the line was promised (README
    # "Waiting in line"); a lease's renewal is never refused.
    behind = None
    if not reservation.lease:
        tenant = lookup.tenant_by_id(tx, reservation.tenant_id)
        behind = line_guard(tx, pool, tenant.priority)
    tx.connection.execute(
        _set_expiry_statement(),
        {"rid": reservation.id, "ttl": ttl, "expires_at": expires_at, "ends_at": ends_at},
    )
    if behind is not None:
        behind(reservation.id)
    new = {"ttl": ttl, "expires_at": _iso(expires_at)}
    audit.record(tx, [audit.Change(action, reservation.id, {"old": old, "new": new})])
    return reservation_info(tx, reservation.id)


def _room(
    tx: Tx, reservation: Row[Any], pool: Row[Any], end: datetime | None, partial: bool
) -> datetime | None:
    """The end the added time may have (README "Booking ahead"): `end` when it all
    fits, else the latest end that does with `partial` (none later than the current
    one: exit 3), else refused with that latest end. Past a planned truncation,
    refused (exit 4)."""
    if reservation.preempt_at is not None and (end is None or end > reservation.preempt_at):
        raise Refused(
            f"reservation '{reservation.id}' is preempted from {local(reservation.preempt_at)}: "
            "it cannot be extended past that"
        )
    old_end = reservation.ends_at
    if old_end is None or (end is not None and end <= old_end):
        return end
    found = blocks(tx, reservation, pool, windows.Window(old_end, end))
    if not found:
        return end
    at, why, refusal = min(found, key=lambda block: block[0])
    if partial and at > old_end:
        return at
    shown = "open-ended" if end is None else beside(end, tx.now)
    room = (
        f"the latest possible end is {beside(at, tx.now)}"
        if at > old_end
        else "there is no room at all"
    )
    raise refusal(f"cannot extend to {shown}: {why}; {room}")


Block = tuple[datetime, str, type[ResgateError]]


def blocks(tx: Tx, reservation: Row[Any], pool: Row[Any], added: windows.Window) -> list[Block]:
    """What stops the reservation from holding through `added`: each rule's first
    refusing instant, why, and the exit it gives."""
    need = Amounts(reservation.cpu, reservation.memory, reservation.gpu)
    found: list[Block] = []
    short = windows.first_shortfall(windows.free_steps(tx, pool.id, added), need)
    if short is not None:
        at, free = short
        why = (
            f"only cpu={free.cpu} mem={free.memory} gpu={free.gpu} are free from "
            f"{beside(at, tx.now)}"
        )
        found.append((at, why, InsufficientResources))
    mine = set(devices.held_by(tx, reservation.id))
    taken: dict[str, list[int]] = {}
    for device, other in devices.holders(tx, pool.id, added).items():
        if device in mine and other != reservation.id:
            taken.setdefault(other, []).append(device)
    for other, ids in taken.items():
        booked = windows.holder(tx, other)
        verb = "is" if len(ids) == 1 else "are"
        why = (
            f"gpu {ranges(ids)} {verb} booked by '{booked.tenant}' from "
            f"{beside(booked.starts_at, tx.now)} (reservation {booked.id[:8]}…)"
        )
        found.append((max(booked.starts_at, added.start), why, InsufficientResources))
    tenant = lookup.tenant_by_id(tx, reservation.tenant_id)
    if pool.per_tenant is not None or any(cap is not None for cap in limits_of(tenant)):
        calendar = Calendar(tx, pool, added.start, tenant, excluding=reservation.id)
        stop = calendar.tenant_refuses(need, added)
        if stop is not None:
            at, rule = stop
            why = f"tenant '{tenant.name}' would exceed its {rule} from {beside(at, tx.now)}"
            found.append((at, why, Refused))
    return found
