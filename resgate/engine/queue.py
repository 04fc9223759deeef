"""Waiting in line (README "Waiting in line"): tickets for requests that did not fit,
and the admission pass that lets them in, with no daemon.

Every write transaction that sweeps asks for the pass just before it commits
(`sweep` calls `Tx.at_commit`), so a release lets the first waiter in at once. In
each pool with waiting tickets, in order of tenant priority (highest first), then
age, then id, a ticket that fits by every rule of a reservation is admitted: its
reservation starts now, on its owner's behalf. The first ticket that does not fit is
the head; its *shadow* is its earliest start with every open-ended holder counted as
ending now (what they give back goes to the head first). A ticket behind the head is
admitted only if the head's shadow does not move later for it (EASY backfilling),
and so is a plain `reserve` of a tenant that does not outrank the head. Tickets
blocked by their tenant's quota or per-tenant limit wait without blocking anyone."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from resgate.engine import audit, devices, members, policies, reservations, slots
from resgate.engine.calendar import Calendar, Plan
from resgate.engine.line import (
    ADMITTING,
    BLOCKING,
    LINE_CHANNEL,
    NOT_BLOCKING,
    WAITING,
    after,
    amounts_of,
    ids_of,
    later,
    rows,
    shadow,
    waiting_pools,
    waiting_rows,
)
from resgate.engine.queries import by_name, lock_rows, pool_row, tenant_row
from resgate.engine.quotas import check_quota
from resgate.engine.records import Amounts, Caller, ReserveResult, Ticket
from resgate.engine.reservations import ReserveRequest
from resgate.engine.validation import FIELD_NAMES, Spelling, check_reservation_request
from resgate.engine.windows import Window, holders_at
from resgate.errors import InsufficientResources, NotFound, Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Request, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

# A waiter on another host is gone once its heartbeat is this old (PostgreSQL).
LAPSE = timedelta(seconds=30)


# ---------------------------------------------------------------- joining and leaving


def join(
    tx: Tx,
    request: ReserveRequest,
    waiter: str | None = None,
    deadline: datetime | None = None,
    spelled: Spelling = FIELD_NAMES,
) -> Ticket:
    """Take a ticket for `request` (which did not fit), or the one its request id
    already has. What can never be admitted is refused instead: more than the
    pool has (exit 3), or against its length policy (exit 4)."""
    amounts, ids, ttl = check_reservation_request(
        request.amounts, request.gpu_ids, request.ttl, request.request_id, spelled
    )
    tenant = tenant_row(tx, request.tenant or members.default_tenant(tx, request.caller, spelled))
    pool = pool_row(tx, request.pool or members.default_pool(tx, spelled))
    members.check_may_act(tx, tenant, request.caller)
    lock_rows(tx, Pool, [pool.id])
    lock_rows(tx, Tenant, [tenant.id])
    if request.request_id is not None:
        twin = tx.session.scalar(
            select(Request.id).where(
                Request.request_id == request.request_id,
                Request.status.in_([WAITING, "admitted"]),
            )
        )
        if twin is not None:
            return standing(tx, twin)
    totals = Amounts(pool.cpu, pool.memory, pool.gpu)
    if not amounts.fits_in(totals):
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}': need {amounts.asked()}, and the pool "
            f"has cpu={totals.cpu} mem={totals.memory} gpu={totals.gpu} in all: "
            "it can never be admitted"
        )
    if ids is not None:
        devices.check_requested(tx, pool.name, pool.id, ids)
    if request.lease:
        # `run --wait`: a lease, open-ended in the plan as run's are; its time limit is run's.
        duration = None
    else:
        duration = request.duration or ttl or policies.default_ttl(pool, None) or None
        policies.check_length(pool, tx.now, None if duration is None else after(tx.now, duration))
    ticket_id = reservations.new_id()
    tx.connection.execute(
        insert(Request),
        {
            "id": ticket_id,
            "tenant_id": tenant.id,
            "pool_id": pool.id,
            "cpu": amounts.cpu,
            "memory": amounts.memory,
            "gpu": amounts.gpu,
            "gpu_ids": None if ids is None else ",".join(map(str, ids)),
            "duration": duration,
            "preempt": request.preempt,
            "request_id": request.request_id,
            "created_by": audit.actor(),
            "enqueued_at": tx.now,
            "deadline": deadline,
            "heartbeat_at": tx.now,
            "waiter": waiter,
            "lease_ttl": ttl if request.lease else None,
            "runner": request.runner,
            "status": WAITING,
        },
    )
    data: dict[str, object] = {"tenant": tenant.name, "pool": pool.name, "duration": duration}
    data.update(zip(RESOURCES, amounts, strict=True))
    audit.record(tx, [audit.Change("request.enqueue", ticket_id, data)])
    tx.at_commit(admit_waiting)
    return standing(tx, ticket_id)


def leave(
    tx: Tx,
    given: str,
    status: str = "cancelled",
    reason: str | None = None,
    caller: Caller | None = None,
) -> Ticket:
    """End a waiting ticket (`cancelled`, `timed_out`); one that has ended already is
    shown as it ended. The caller must be its owner, a member of its tenant or an admin."""
    ticket_id = resolve_ticket(tx, given)
    row = _ticket_row(tx, ticket_id)
    if caller is not None and not caller.admin and caller.user != row.created_by:
        members.check_may_act(tx, tenant_row(tx, row.tenant), caller)
    if row.status == WAITING:
        _end(tx, ticket_id, status, reason or status)
    return standing(tx, ticket_id)


def heartbeat(tx: Tx, ticket_id: str) -> Ticket:
    """The waiter is alive (PostgreSQL: across hosts), and the pass runs at the
    commit (the clock alone may have made room); how the ticket stood before it."""
    tx.connection.execute(
        update(Request)
        .where(Request.id == ticket_id, Request.status == WAITING)
        .values(heartbeat_at=tx.now)
    )
    tx.at_commit(admit_waiting)
    return standing(tx, ticket_id)


def status_of(tx: Tx, ticket_id: str) -> str:
    """The ticket's status alone: one row by its key."""
    return str(tx.session.scalar(select(Request.status).where(Request.id == ticket_id)))


def resolve_ticket(tx: Tx, given: str) -> str:
    """The ticket an id or a prefix of 4 or more hex digits names (exit 1 if none)."""
    prefix = given.strip().lower()
    if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix) or len(prefix) > 16:
        raise NotFound(f"no ticket '{given}'")
    column = by_name(tx, Request.id)
    found = list(
        tx.session.scalars(
            select(Request.id)
            .where(column >= prefix, column < prefix + "g")
            .order_by(column)
            .limit(6)
        )
    )
    if len(found) != 1:
        which = f"ticket prefix '{given}' is ambiguous" if found else f"no ticket '{given}'"
        raise NotFound(which)
    return str(found[0])


def waiter_label() -> str:
    """This process as a waiter: `pid@host:start` (its start time tells a reused pid)."""
    return f"{os.getpid()}@{socket.gethostname()}:{_started(os.getpid())}"


# ---------------------------------------------------------------- how it stands


def standing(tx: Tx, ticket_id: str) -> Ticket:
    """The ticket, with its place in the line and its ETA while it waits."""
    row = _ticket_row(tx, ticket_id)
    if row.status != WAITING:
        return _ticket(row)
    for ticket in line(tx, row.pool_id, up_to=ticket_id):
        if ticket.id == ticket_id:
            return replace(ticket, held_by=_held_by(tx, row))
    return _ticket(row)


def _held_by(tx: Tx, row: Row[Any]) -> tuple[tuple[str, str, datetime | None], ...]:
    """The reservations holding, now, some of a resource the ticket asks for: the
    ones that end first first (open-ended last)."""
    wanted = [r for r, amount in zip(RESOURCES, amounts_of(row), strict=True) if amount]
    holders = [
        h for h in holders_at(tx, row.pool_id, tx.now) if any(getattr(h.amounts, r) for r in wanted)
    ]
    holders.sort(key=lambda h: (h.end is None, h.end or tx.now, h.id))
    return tuple((h.tenant, h.id, h.end) for h in holders)


def line(tx: Tx, pool_id: int | None = None, up_to: str | None = None) -> list[Ticket]:
    """The waiting tickets (of one pool, or all), in admission order per pool, each
    with its position and ETA: the start of the window it would get behind the
    tickets ahead of it (None: unknown, an open-ended holder is in the way).
    `up_to`: no ETA is worked out behind that ticket (a waiter asking for its own)."""
    query = waiting_rows()
    if pool_id is not None:
        query = query.where(Request.pool_id == pool_id)
    rows = tx.session.execute(query).all()
    pools: dict[int, list[Row[Any]]] = {}
    for row in rows:
        pools.setdefault(row.pool_id, []).append(row)
    shown: list[Ticket] = []
    for pid, waiting in sorted(pools.items(), key=lambda item: item[1][0].pool):
        pool = tx.connection.execute(select(Pool).where(Pool.id == pid)).one()
        calendar = Calendar(tx, pool, tx.now)
        behind = False
        for position, row in enumerate(waiting, 1):
            eta = None
            if row.reason not in NOT_BLOCKING and not behind:
                eta = _place(tx, calendar, row, tx.now)
            behind = behind or row.id == up_to
            shown.append(replace(_ticket(row), position=position, waiting=len(waiting), eta=eta))
    return shown


def _place(tx: Tx, calendar: Calendar, row: Row[Any], now: datetime) -> datetime | None:
    """Where the ticket would start behind what `calendar` already holds; that
    window is then added to it, for the tickets behind."""
    wanted = ids_of(row.gpu_ids)
    found = slots.search(
        tx, None, calendar.pool, amounts_of(row), wanted, row.duration, now, 1, calendar
    )
    if not found:
        return None
    start = found[0].start
    end = None if row.duration is None else after(start, row.duration)
    calendar.plans.append(
        Plan(
            row.id,
            row.tenant,
            row.tenant_id,
            row.pool_id,
            start,
            end,
            amounts_of(row),
            frozenset(found[0].gpu_ids),
        )
    )
    return start


# ---------------------------------------------------------------- the admission pass


def admit_waiting(tx: Tx) -> None:
    """The pass: in each pool with waiting tickets, let in what may come in now.
    With nobody waiting it costs one indexed lookup."""
    if ADMITTING.get():
        return
    pools = tx.connection.execute(waiting_pools()).scalars().all()
    if not pools:
        return
    token = ADMITTING.set(True)
    try:
        for pool_id in sorted(pools):
            _admit_in(tx, pool_id)
    finally:
        ADMITTING.reset(token)


def _admit_in(tx: Tx, pool_id: int) -> None:
    """One pool's pass, in admission order (see the module's docstring). What is
    free is read once into a calendar, so a ticket that cannot fit costs no
    statement; only one that might is tried for real (and the calendar read again
    once it got in)."""
    lock_rows(tx, Pool, [pool_id])
    waiting = tx.session.execute(waiting_rows().where(Request.pool_id == pool_id)).all()
    pool = tx.connection.execute(select(Pool).where(Pool.id == pool_id)).one()
    if pool.deleted_at is not None:
        for row in waiting:
            _end(tx, row.id, "cancelled", "the pool was deleted")
        return
    room = Calendar(tx, pool, tx.now)
    head: Row[Any] | None = None
    promised: datetime | None = None  # the head's shadow
    for row in waiting:
        if _lapsed(tx, row):
            continue
        if row.tenant_gone:
            _end(tx, row.id, "cancelled", "the tenant was removed")
            continue
        might = row.preempt or _fits_now(room, row, tx.now)
        if head is not None and not might:
            _note(tx, row, BLOCKING)
            continue
        blocked = _own_rules(tx, row)
        if blocked is not None:
            _note(tx, row, blocked)
            continue
        keeps = None if head is None else _keeps(tx, head, promised)
        if might and _admit(tx, row, keeps):
            room = Calendar(tx, pool, tx.now)
            continue
        if head is None:
            head, promised = row, shadow(tx, row)
        _note(tx, row, BLOCKING)


def _fits_now(room: Calendar, row: Row[Any], now: datetime) -> bool:
    """Whether the ticket's request fits from now on by the pool's capacity and GPUs."""
    end = None if row.duration is None else after(now, row.duration)
    return room.fits(amounts_of(row), Window(now, end), ids_of(row.gpu_ids)) is not None


def _keeps(tx: Tx, head: Row[Any], promised: datetime | None) -> Callable[[str], bool]:
    """Whether admitting the reservation `new_id` leaves the head's shadow where it was."""

    def check(new_id: str) -> bool:
        return not later(shadow(tx, head, keep_open=new_id), promised)

    return check


class _Behind(Exception):
    """A tentative admission would delay the head: undone."""


def _admit(tx: Tx, row: Row[Any], keeps: Callable[[str], bool] | None = None) -> bool:
    """Admit the ticket now if it fits (and, behind the head, if `keeps` says the
    head's shadow stays where it was); False, with nothing changed, otherwise."""
    new_id = reservations.new_id()
    request = ReserveRequest(
        row.tenant,
        row.pool,
        amounts_of(row),
        request_id=row.request_id,
        preempt=row.preempt,
        gpu_ids=None if row.gpu_ids is None else tuple(ids_of(row.gpu_ids) or ()),
        duration=row.duration,
        reservation_id=new_id,
        lease=row.lease_ttl is not None,
        ttl=row.lease_ttl,
        runner=row.runner,
    )
    try:
        with tx.session.begin_nested(), audit.on_behalf_of(row.created_by):
            # The ticket first: the reservation then takes its key (migration 0010).
            tx.session.execute(
                update(Request)
                .where(Request.id == row.id)
                .values(status="admitted", reservation_id=new_id, ended_at=tx.now, reason=None)
            )
            result: ReserveResult = reservations.reserve_and_report(tx, request)
            if keeps is not None and not keeps(new_id):
                raise _Behind
            data = {"reservation": result.reservation.id}
            audit.record(tx, [audit.Change("request.admit", row.id, data)])
            _notify(tx, row.id)
    except (InsufficientResources, Refused, _Behind):
        return False
    return True


def _own_rules(tx: Tx, row: Row[Any]) -> str | None:
    """`quota` or `per-tenant` when the tenant's own rules keep the ticket out now."""
    tenant = tenant_row(tx, row.tenant)
    pool = pool_row(tx, row.pool)
    window = Window(tx.now, None if row.duration is None else after(tx.now, row.duration))
    try:
        policies.check_per_tenant(tx, tenant, pool, window)
    except Refused:
        return "per-tenant"
    try:
        check_quota(tx, tenant, amounts_of(row), window)
    except Refused:
        return "quota"
    return None


def _lapsed(tx: Tx, row: Row[Any]) -> bool:
    """End a ticket whose deadline has passed or whose waiter is gone."""
    if row.deadline is not None and row.deadline <= tx.now:
        _end(tx, row.id, "timed_out", "timeout")
        return True
    if _waiter_gone(row.waiter) or (
        tx.is_postgres and row.heartbeat_at is not None and row.heartbeat_at < tx.now - LAPSE
    ):
        _end(tx, row.id, "abandoned", "the waiting process is gone")
        return True
    return False


def _waiter_gone(waiter: str | None) -> bool:
    """Whether the waiter recorded as `pid@host:start` is gone: only known on its host."""
    if not waiter or "@" not in waiter:
        return False
    pid, _, rest = waiter.partition("@")
    host, _, start = rest.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _started(int(pid)) != start


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


# ---------------------------------------------------------------- rows


def _ticket_row(tx: Tx, ticket_id: str) -> Row[Any]:
    row = tx.session.execute(rows().where(Request.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"no ticket '{ticket_id}'")
    return row


def _end(tx: Tx, ticket_id: str, status: str, reason: str) -> None:
    tx.connection.execute(
        update(Request)
        .where(Request.id == ticket_id, Request.status == WAITING)
        .values(status=status, ended_at=tx.now, reason=reason)
    )
    action = {"cancelled": "request.cancel", "timed_out": "request.timeout"}.get(
        status, "request.abandon"
    )
    audit.record(tx, [audit.Change(action, ticket_id, {"reason": reason})])
    _notify(tx, ticket_id)


def _notify(tx: Tx, ticket_id: str) -> None:
    """PostgreSQL: tell the waiters (LISTEN resgate) at the commit that a ticket
    ended, so its own waiter looks at once; SQLite waiters look every POLL."""
    if tx.is_postgres:
        tx.connection.exec_driver_sql(
            "SELECT pg_notify(%(channel)s, %(t)s)", {"channel": LINE_CHANNEL, "t": ticket_id}
        )


def _note(tx: Tx, row: Row[Any], reason: str) -> None:
    """Record why the ticket waits, when that changed (no write otherwise)."""
    if row.reason != reason:
        tx.connection.execute(update(Request).where(Request.id == row.id).values(reason=reason))


def _ticket(row: Row[Any]) -> Ticket:
    return Ticket(
        id=row.id,
        pool=row.pool,
        tenant=row.tenant,
        created_by=row.created_by,
        priority=row.priority,
        amounts=amounts_of(row),
        gpu_ids=None if row.gpu_ids is None else tuple(ids_of(row.gpu_ids) or ()),
        duration=row.duration,
        enqueued_at=row.enqueued_at,
        deadline=row.deadline,
        status=row.status,
        reservation_id=row.reservation_id,
        ended_at=row.ended_at,
        reason=row.reason,
    )
