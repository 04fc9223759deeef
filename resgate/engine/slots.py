"""Finding a slot (README "Booking ahead"): the earliest windows in which a request
fits every rule a booking must pass, for `resgate slots` and `reserve --earliest`.

The candidate starts are the instant asked for and each later instant at which
free capacity grows (where something the request could use ends); a candidate inside the free
span of a slot already found is skipped, so each slot is a different stretch of
time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from resgate.clock import local, span
from resgate.engine import devices, members
from resgate.engine.calendar import Calendar
from resgate.engine.queries import PoolRow, TenantRow, pool_row, tenant_row
from resgate.engine.records import Amounts, Caller, Slot, Slots
from resgate.engine.validation import (
    FIELD_NAMES,
    HORIZON,
    Spelling,
    check_reservation_request,
    check_ttl,
    check_window,
)
from resgate.engine.windows import Window
from resgate.errors import InsufficientResources, InvalidInput
from resgate.store.database import Tx


@dataclass(frozen=True)
class SlotRequest:
    tenant: str | None  # None: the caller's one tenant
    pool: str | None  # None: the only pool
    amounts: Amounts
    duration: int  # seconds
    gpu_ids: tuple[int, ...] | None = None
    after: datetime | None = None  # None: now
    count: int = 3
    caller: Caller | None = None


def find_slots(tx: Tx, request: SlotRequest, spelled: Spelling = FIELD_NAMES) -> Slots:
    """`resgate slots`: the `count` earliest windows of `duration`, or exit 3 when
    none starts within the horizon."""
    amounts, wanted, _ = check_reservation_request(request.amounts, request.gpu_ids, None, None)
    duration = check_ttl(request.duration)
    if not duration:
        raise InvalidInput(f"{spelled.get('duration', 'duration')} must be above 0")
    if request.count < 1:
        raise InvalidInput(f"{spelled.get('count', 'count')} must be 1 or more")
    tenant = tenant_row(tx, request.tenant or members.default_tenant(tx, request.caller, spelled))
    pool = pool_row(tx, request.pool or members.default_pool(tx, spelled))
    members.check_may_act(tx, tenant, request.caller)
    after = _after(tx, request.after, duration, spelled)
    if wanted is not None:
        devices.check_requested(tx, pool.name, pool.id, wanted)
    found = search(tx, tenant, pool, amounts, wanted, duration, after, request.count)
    if not found:
        raise nowhere(pool, amounts, duration, after)
    return Slots(tenant.name, pool.name, duration, found)


def earliest(
    tx: Tx,
    tenant: TenantRow,
    pool: PoolRow,
    need: Amounts,
    wanted: list[int] | None,
    asked: Window,
    after: datetime | None,
    spelled: Spelling = FIELD_NAMES,
) -> Window:
    """`reserve --earliest`: the first window as long as `asked` (open-ended: one
    that fits for ever) starting at or after `after`, or exit 3."""
    duration = None if asked.end is None else int((asked.end - asked.start).total_seconds())
    begins = _after(tx, after, duration, spelled)
    if wanted is not None:
        devices.check_requested(tx, pool.name, pool.id, wanted)
    found = search(tx, tenant, pool, need, wanted, duration, begins, 1)
    if not found:
        raise nowhere(pool, need, duration, begins)
    start = found[0].start
    return Window(start, None if duration is None else start + timedelta(seconds=duration))


def _after(tx: Tx, after: datetime | None, duration: int | None, spelled: Spelling) -> datetime:
    """The earliest start asked for, checked as a booking's start is (exit 2)."""
    called = {**spelled, "start": spelled.get("after", "after")}
    start, _ = check_window(tx.now, after, None, duration, called)
    return start


def search(
    tx: Tx,
    tenant: TenantRow | None,
    pool: PoolRow,
    need: Amounts,
    wanted: list[int] | None,
    duration: int | None,
    after: datetime,
    count: int,
    calendar: Calendar | None = None,
) -> list[Slot]:
    """Up to `count` slots of `duration` (None: for ever) from `after` on, earliest
    first; over `calendar` when one is given (the line's estimates)."""
    if calendar is None:
        calendar = Calendar(tx, pool, after, tenant)
    horizon = tx.now + HORIZON
    candidates = [after] + [at for at in calendar.growth() if after < at <= horizon]
    found: list[Slot] = []
    for start in candidates:
        if any(_within(slot, start) for slot in found):
            continue
        end = None if duration is None else start + timedelta(seconds=duration)
        fit = calendar.fits(need, Window(start, end), wanted)
        if fit is None:
            continue
        until = None if end is None else calendar.free_until(start, need, fit, end)
        ending = None if start == after else calendar.ending_at(start)
        freed_by = None if ending is None else (ending.id, ending.tenant)
        found.append(Slot(start, until, fit.gpu_ids, freed_by))
        if len(found) == count or until is None:
            break
    return found


def _within(slot: Slot, at: datetime) -> bool:
    return slot.start <= at and (slot.free_until is None or at < slot.free_until)


def nowhere(
    pool: PoolRow, need: Amounts, duration: int | None, after: datetime
) -> InsufficientResources:
    length = "an open-ended window" if duration is None else f"a window of {span(duration)}"
    return InsufficientResources(
        f"no room in '{pool.name}' for {need.asked()}: "
        f"{length} fits nowhere from {local(after)} to 366 days ahead"
    )
