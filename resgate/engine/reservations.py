"""Reservations: reserve, unreserve, extend, preempt, list."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError

from resgate.clock import ends, iso, local
from resgate.engine import audit, devices, evictions, members, policies, replay, slots, windows
from resgate.engine.line import line_guard
from resgate.engine.pardon import pardon
from resgate.engine.preemption import Candidate
from resgate.engine.queries import (
    RESERVATIONS,
    PoolRow,
    TenantRow,
    is_active_now,
    lock_rows,
    pool_row,
    tenant_row,
)
from resgate.engine.quotas import check_quota
from resgate.engine.records import (
    Amounts,
    Caller,
    ReservationInfo,
    ReserveResult,
    Victim,
)
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_reservation_request,
    check_window,
)
from resgate.errors import Hint, InsufficientResources, InvalidInput, Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ReserveRequest:
    tenant: str | None  # None: the caller's one tenant (README "Sharing one machine")
    pool: str | None  # None: the only pool
    amounts: Amounts
    ttl: int | None = None  # seconds; None or 0: no expiry
    request_id: str | None = None
    preempt: bool = False  # evict lower-priority reservations if needed
    gpu_ids: tuple[int, ...] | None = None  # these GPU devices, not the lowest free
    # A lease of `resgate run`: no pool default TTL, and the pool's maximum bounds
    # the run's time limit (which run keeps), not the lease.
    lease: bool = False
    caller: Caller | None = None  # None: no membership check (not a user's call)
    # `pid@host+grace` of the `resgate run` whose job will run on it (docs/schema.md).
    runner: str | None = None
    # The window (README "Booking ahead"): a start (None: now), and an end or a
    # duration (neither: the TTL's end, or open). With a start, the TTL is the
    # duration. For a lease, `end` is the run's time limit.
    start: datetime | None = None
    end: datetime | None = None
    duration: int | None = None
    # Book the earliest window of that length from `after` (None: now) on.
    earliest: bool = False
    after: datetime | None = None
    # The new reservation's id, chosen by the caller (a ticket admitted from the
    # line names it first); None: a new one.
    reservation_id: str | None = None


def new_id() -> str:
    return secrets.token_hex(8)


def reserve(tx: Tx, request: ReserveRequest) -> ReservationInfo:
    return reserve_and_report(tx, request).reservation


def reserve_and_report(
    tx: Tx, request: ReserveRequest, spelled: Spelling = FIELD_NAMES
) -> ReserveResult:
    """Checks in the order of README "Using it": arguments → default tenant and pool
    → tenant → pool → membership → request-id replay → sweep → TTL policy →
    per-tenant limit → quota → capacity (→ preemption, README "Preemption")."""
    amounts, requested_ids, ttl = check_reservation_request(
        request.amounts, request.gpu_ids, request.ttl, request.request_id
    )
    tenant_name = request.tenant or members.default_tenant(tx, request.caller, spelled)
    pool_name = request.pool or members.default_pool(tx, spelled)
    tenant = tenant_row(tx, tenant_name)
    pool = pool_row(tx, pool_name)
    members.check_may_act(tx, tenant, request.caller)
    if not request.lease and request.end is None and request.duration is None:
        ttl = policies.default_ttl(pool, ttl)
    request = replace(request, amounts=amounts, ttl=ttl)
    window = _window(tx, request, spelled)
    replayed = replay.replay(tx, request, tenant, pool, ttl)
    if replayed is not None:
        return replayed
    lock_rows(tx, Pool, [pool.id])
    lock_rows(tx, Tenant, [tenant.id])
    # Again under the locks: a concurrent twin may have committed meanwhile.
    replayed = replay.replay(tx, request, tenant, pool, ttl)
    if replayed is not None:
        return replayed
    sweep(tx)
    if request.earliest:
        window = slots.earliest(
            tx, tenant, pool, request.amounts, requested_ids, window, request.after, spelled
        )
    if not request.lease:
        policies.check_length(pool, window.start, window.end)
    policies.check_per_tenant(tx, tenant, pool, window)
    check_quota(tx, tenant, request.amounts, window)
    reservation_id = request.reservation_id or new_id()
    line_check = line_guard(tx, pool, tenant.priority)
    victims = _make_room(tx, request, tenant, pool, requested_ids, reservation_id, window, spelled)
    # Who is acting, once: the same actor the reservation.create event records.
    values = _row(tx, request, tenant, pool, reservation_id, audit.actor(), window)
    if not _insert_row(tx, request, values):
        # Only a concurrent twin can get here (the checks above ran under the
        # locks); the database's constraints are the last line of defence.
        replayed = replay.replay(tx, request, tenant, pool, ttl)
        if replayed is not None:
            return replayed
        policies.check_per_tenant(tx, tenant, pool, window)
        raise Refused(f"pool '{pool.name}' refused the reservation")
    held_ids: list[int] = []
    if request.amounts.gpu or requested_ids is not None:
        held_ids = devices.assign(
            tx, pool.name, pool.id, reservation_id, request.amounts.gpu, requested_ids, window
        )
    if line_check is not None:
        line_check(reservation_id)  # it may not move the head of the line's shadow later
    created = _created(request, tenant, pool, values, held_ids)
    data = _created_data(created, request.preempt)
    audit.record(tx, [audit.Change("reservation.create", created.id, data)])
    # A booking this one cancelled gives its own victims back what still fits.
    cancelled = [v.reservation.id for v in victims if v.reservation.status == "preempted"]
    return ReserveResult(created, victims, tx.now, pardon(tx, cancelled))


def _created(
    request: ReserveRequest,
    tenant: TenantRow,
    pool: PoolRow,
    values: dict[str, Any],
    held_ids: list[int],
) -> ReservationInfo:
    """The new reservation as a record, from the row just inserted."""
    return ReservationInfo(
        id=values["id"],
        tenant=tenant.name,
        pool=pool.name,
        amounts=request.amounts,
        ttl=request.ttl,
        status="upcoming" if values["starts_at"] > values["created_at"] else "active",
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        ended_at=None,
        preempted_by=None,
        preempted_for=None,
        request_id=request.request_id,
        gpu_ids=tuple(held_ids),
        created_by=values["created_by"],
        starts_at=values["starts_at"],
        ends_at=values["ends_at"],
        lease=values["lease"],
    )


def _make_room(
    tx: Tx,
    request: ReserveRequest,
    tenant: TenantRow,
    pool: PoolRow,
    requested_ids: list[int] | None,
    reservation_id: str,
    window: windows.Window,
    spelled: Spelling = FIELD_NAMES,
) -> list[Victim]:
    """Nothing when the request fits over its whole window and its GPUs are free;
    else the victims evicted for it (with --preempt, what holds it now), or the
    refusal (exit 3)."""
    need = request.amounts
    short = windows.first_shortfall(windows.free_steps(tx, pool.id, window), need)
    forced: list[Candidate] = []
    starts_now = window.start == tx.now
    if requested_ids is not None:
        devices.check_requested(tx, pool.name, pool.id, requested_ids)
        if starts_now:
            forced = evictions.device_holders(tx, tenant, pool, requested_ids, request.preempt)
    if request.preempt and (not starts_now or (short is not None and short[0] > tx.now)):
        # The future is in the way (README "Booking ahead"): what is booked there
        # is truncated or cancelled, with notice.
        if short is None and not _devices_short(tx, pool, need, requested_ids, window):
            return []
        return evictions.evict_over_window(
            tx, tenant, pool, need, requested_ids, window, reservation_id
        )
    if not forced and short is None:
        return []
    if short is not None and short[0] > tx.now:
        raise shortfall(tx, pool, need, window, *short, spelled)
    available = short[1] if short is not None else _free_now(tx, pool, window)
    if not request.preempt:
        outranks = _outranks_holders(tx, tenant, pool, need, available, requested_ids)
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}': "
            f"need cpu={need.cpu} mem={need.memory} gpu={need.gpu}, "
            f"available cpu={available.cpu} mem={available.memory} gpu={available.gpu}",
            Hint("outranks", "tenant", tenant.name) if outranks else None,
        )
    victims = evictions.evict_for(tx, tenant, pool, available, need, reservation_id, forced)
    # What the victims gave back is free now; a booking later in the window may
    # still be in the way: that part of the room is made over the window.
    if windows.first_shortfall(
        windows.free_steps(tx, pool.id, window), need
    ) is None and not _devices_short(tx, pool, need, requested_ids, window):
        return victims
    later = evictions.evict_over_window(
        tx, tenant, pool, need, requested_ids, window, reservation_id
    )
    return victims + later


def _devices_short(
    tx: Tx,
    pool: PoolRow,
    need: Amounts,
    requested_ids: list[int] | None,
    window: windows.Window,
) -> bool:
    """Whether the GPUs the request needs are not all free for its whole window."""
    if not need.gpu and not requested_ids:
        return False
    held = devices.holders(tx, pool.id, window)
    if requested_ids is not None:
        return any(device in held for device in requested_ids)
    free = [device for device in devices.pool_ids(tx, pool.id) if device not in held]
    return len(free) < need.gpu


def _free_now(tx: Tx, pool: PoolRow, window: windows.Window) -> Amounts:
    return windows.free_steps(tx, pool.id, windows.Window(window.start, None))[0][1]


def _until(end: datetime, at: datetime) -> str:
    """An end as a person reads it beside `at`: `12:00` on the same day, else in full."""
    shown, day = local(end), local(at)
    return shown[11:16] if shown[:10] == day[:10] else shown


def shortfall(
    tx: Tx,
    pool: PoolRow,
    need: Amounts,
    window: windows.Window,
    at: datetime,
    free: Amounts,
    spelled: Spelling = FIELD_NAMES,
) -> InsufficientResources:
    """The refusal of a window that does not fit (README "Booking ahead"): the first
    instant that fails, what is free then and who holds it; for an open-ended
    request that fits now, the end that would fit."""
    holders = windows.holders_at(tx, pool.id, at)
    wanted = need.asked() or "-"
    shown = ", ".join(
        f"{h.tenant} {h.id[:8]}… " + (f"until {_until(h.end, at)}" if h.end else "open-ended")
        for h in holders
    )
    message = (
        f"insufficient resources in '{pool.name}' from {local(at)}: need {wanted}, "
        f"available cpu={free.cpu} mem={free.memory} gpu={free.gpu}"
        + (f" (held by {shown})" if shown else "")
    )
    if window.end is None and window.start == tx.now:
        starting = [h for h in holders if h.starts_at == at] or holders
        if starting:
            blocker = starting[0]
            message += (
                f"; it fits until {local(at)} (booking {blocker.id[:8]}… of {blocker.tenant}): "
                f"add {spelled.get('end', 'end')} '{local(at)[:16]}'"
            )
    return InsufficientResources(message)


def _outranks_holders(
    tx: Tx,
    tenant: TenantRow,
    pool: PoolRow,
    need: Amounts,
    available: Amounts,
    requested_ids: list[int] | None,
) -> bool:
    """Whether a lower-priority tenant holds some of what is missing (so that
    --preempt could make room): a resource short of the request, or a GPU asked
    for by id."""
    short = [r for r in RESOURCES if getattr(need, r) > getattr(available, r)]
    if requested_ids:
        short.append("gpu")
    if not short:
        return False
    holding = or_(*(getattr(Reservation, r) > 0 for r in short))
    lower = tx.connection.execute(
        select(Reservation.id)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(
            Reservation.pool_id == pool.id,
            is_active_now(tx.now),
            Tenant.priority < tenant.priority,
            holding,
        )
        .limit(1)
    ).first()
    return lower is not None


def _row(
    tx: Tx,
    request: ReserveRequest,
    tenant: TenantRow,
    pool: PoolRow,
    reservation_id: str,
    created_by: str,
    window: windows.Window,
) -> dict[str, Any]:
    # expires_at is never after the planned end: for a lease the renewed deadline,
    # else the end itself. ttl: seconds from now to it (docs/schema.md).
    expires_at = ends(tx.now, request.ttl) if request.lease else window.end
    ttl = None if expires_at is None else max(1, math.ceil((expires_at - tx.now).total_seconds()))
    return {
        "id": reservation_id,
        "tenant_id": tenant.id,
        "pool_id": pool.id,
        "cpu": request.amounts.cpu,
        "memory": request.amounts.memory,
        "gpu": request.amounts.gpu,
        "ttl": ttl,
        "status": "active",
        "created_at": tx.now,
        "expires_at": expires_at,
        "request_id": request.request_id,
        "created_by": created_by,
        "runner": request.runner,
        "starts_at": window.start,
        "ends_at": window.end,
        "preempt_at": None,
        "lease": request.lease,
    }


def _window(tx: Tx, request: ReserveRequest, spelled: Spelling) -> windows.Window:
    """The plan the request asks for, checked against the transaction's now."""
    if request.lease:
        return windows.Window(tx.now, request.end)
    if request.earliest and (request.start, request.end, request.preempt) != (None, None, False):
        # The slot decides the start; its length is the duration (or the TTL).
        raise InvalidInput(
            f"{_flag(spelled, 'earliest')} takes a {_flag(spelled, 'duration')} (or "
            f"{_flag(spelled, 'ttl')}), not {_flag(spelled, 'start')}, {_flag(spelled, 'end')} "
            f"or {_flag(spelled, 'preempt')}"
        )
    duration = request.duration
    end = request.end
    if request.start is not None and duration is None and end is None:
        duration = request.ttl
    elif request.start is None and duration is None and end is None and request.ttl:
        end = ends(tx.now, request.ttl)
    start, end = check_window(tx.now, request.start, end, duration, spelled)
    return windows.Window(start, end)


def _flag(spelled: Spelling, field: str) -> str:
    return spelled.get(field, field)


def _insert_row(tx: Tx, request: ReserveRequest, values: dict[str, Any]) -> bool:
    """Insert the reservation; False when the database refuses it as a twin.

    A Core INSERT: the ORM's unit of work costs more than the INSERT itself
    (benchmarks/README.md, cycles). A failing Core INSERT leaves the session
    usable, inside a SAVEPOINT or not."""
    try:
        if request.request_id is None and not tx.is_postgres:
            # No replay to fall back on, and BEGIN IMMEDIATE rules out a twin:
            # no SAVEPOINT needed (a failure rolls back the whole command).
            tx.connection.execute(_insert(), values)
        else:
            with tx.session.begin_nested():
                # The connection asked for inside: that is what emits the SAVEPOINT.
                tx.session.connection().execute(_insert(), values)
    except IntegrityError:
        return False
    return True


@cache
def _insert() -> Any:
    return insert(RESERVATIONS)


def _created_data(info: ReservationInfo, preempt: bool = False) -> dict[str, object]:
    """The audit payload of a new reservation. Built here on purpose, not from
    render/data.py: it is hashed into the chain and must not follow changes to
    the JSON output."""
    data: dict[str, object] = {
        "tenant": info.tenant,
        "pool": info.pool,
        "cpu": info.amounts.cpu,
        "memory": info.amounts.memory,
        "gpu": info.amounts.gpu,
        "ttl": info.ttl,
        # The window as planned (README "Booking ahead"), in the chain's own format.
        "starts_at": None if info.starts_at is None else iso(info.starts_at),
        "ends_at": None if info.ends_at is None else iso(info.ends_at),
    }
    if info.request_id is not None:
        data["request_id"] = info.request_id
        # --preempt is part of a keyed request (README "Preemption"); the row does not keep it.
        data["preempt"] = preempt
    return data
