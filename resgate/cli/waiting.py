"""`reserve --wait` (README "Waiting in line"): take a ticket, wait in line, and come
back with the reservation it got.

The database is the only truth. The writes that make room run the admission pass
themselves, so this process mostly reads: its ticket every POLL seconds (one row by
its key; on PostgreSQL only when a NOTIFY says a ticket ended) and how it stands
every STANDING seconds. It runs a write transaction only when the clock alone may
have made room (its ETA has come: once, and again at most every STANDING seconds),
for a heartbeat on PostgreSQL, and to leave the line (a timeout, SIGINT, SIGTERM)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from resgate.cli.state import say, target, transact
from resgate.errors import InsufficientResources, Refused
from resgate.interrupts import GUARD, Interrupted

if TYPE_CHECKING:
    from resgate.engine.records import ReserveResult, Ticket
    from resgate.engine.reservations import ReserveRequest

POLL = 0.25  # seconds between looks at the ticket (PostgreSQL: the longest wait for a NOTIFY)
STANDING = 2.0  # seconds between looks at its place in line
HEARTBEAT = 10.0  # PostgreSQL: seconds between signs of life


def wait_in_line(
    ctx: typer.Context,
    request: ReserveRequest,
    refusal: InsufficientResources,
    timeout: int | None,
    quiet: bool,
) -> ReserveResult:
    """Wait until the ticket for `request` is admitted; its reservation then, as
    `reserve` would have made it. A timeout ends the ticket (exit 3, with how long
    it waited, its place and ETA); a signal cancels it (exit 130 or 143)."""
    from resgate.engine import queue

    started = time.monotonic()
    deadline = None
    if timeout is not None:
        deadline = _utcnow(ctx) + timedelta(seconds=timeout)
    ticket = transact(
        ctx, lambda tx: queue.join(tx, request, queue.waiter_label(), deadline), write=True
    )
    waiting = _Waiting(ctx, ticket, deadline)
    try:
        with _listening(ctx, waiting.postgres) as heard:
            while waiting.ticket.status == "waiting":
                waiting.show(quiet)
                # PostgreSQL: a NOTIFY says a ticket ended; SQLite: a short sleep.
                told = True if heard is None else heard(POLL)
                if heard is None:
                    time.sleep(POLL)
                noted = GUARD.take_noted()  # the ticket's commit settled the guard
                if noted:
                    raise Interrupted(noted[0])
                waiting.look(told)
    except Interrupted:
        _leave(ctx, ticket.id)
        raise
    return _outcome(ctx, waiting.ticket, waiting.last, refusal, time.monotonic() - started)


class _Waiting:
    """One waiter's view of its ticket, and when it looks again."""

    def __init__(self, ctx: typer.Context, ticket: Ticket, deadline: datetime | None) -> None:
        self.ctx = ctx
        self.ticket = ticket
        self.last = ticket  # where it last stood while waiting, for the timeout's message
        self.deadline = deadline
        self.postgres = target(ctx).path is None  # a server: heartbeats say we are alive
        self.shown = ""
        self.looked = self.beat = time.monotonic()
        self.woke = -STANDING  # when it last wrote because its ETA had come

    def show(self, quiet: bool) -> None:
        self.last = self.ticket
        line = waiting_line(self.ticket)
        if line != self.shown:
            say(line, quiet)
            self.shown = line

    def look(self, told: bool) -> None:
        """A write when the clock may have made room or a heartbeat is due, else a
        read: where it stands every STANDING seconds, its status when `told`."""
        from resgate.engine import queue

        ctx, ticket_id, now = self.ctx, self.ticket.id, time.monotonic()
        eta = self.ticket.eta
        due = eta is not None and eta <= _utcnow(ctx) and now - self.woke >= STANDING
        if due or (self.deadline is not None and _utcnow(ctx) >= self.deadline):
            # Room by the clock alone, or the timeout: a write lets the pass run.
            self.ticket = transact(ctx, lambda tx: queue.heartbeat(tx, ticket_id), write=True)
            self.looked = self.woke = now
        elif self.postgres and now - self.beat >= HEARTBEAT:
            self.ticket = transact(ctx, lambda tx: queue.heartbeat(tx, ticket_id), write=True)
            self.beat = self.looked = now
        elif now - self.looked >= STANDING:
            self.ticket = transact(ctx, lambda tx: queue.standing(tx, ticket_id), write=False)
            self.looked = now
        elif told:
            status = transact(ctx, lambda tx: queue.status_of(tx, ticket_id), write=False)
            if status != "waiting":
                self.ticket = transact(ctx, lambda tx: queue.standing(tx, ticket_id), write=False)


@contextmanager
def _listening(ctx: typer.Context, postgres: bool) -> Iterator[Callable[[float], bool] | None]:
    """On PostgreSQL, a connection that LISTENs for the line's NOTIFY while this
    process waits (its `wait(seconds)` says whether one came); None on SQLite."""
    if not postgres:
        yield None
        return
    from resgate.engine.line import LINE_CHANNEL
    from resgate.store.postgres import listening

    with listening(target(ctx), LINE_CHANNEL) as heard:
        yield heard


def would_wait(ctx: typer.Context, request: ReserveRequest, json: bool) -> None:
    """`reserve --wait --dry-run` of a request that does not fit now: where it would
    join the line, and its ETA; nothing is changed."""
    from resgate.cli.state import emit
    from resgate.engine import queue
    from resgate.render import data

    ticket = transact(ctx, lambda tx: queue.join(tx, request), write=True, dry_run=True)
    line = waiting_line(ticket).replace("resgate: waiting for", "Would wait in line for", 1)
    emit(json, True, {"reservation": None, "ticket": data.ticket(ticket)}, line)


def _outcome(
    ctx: typer.Context,
    ticket: Ticket,
    last: Ticket,
    refusal: InsufficientResources,
    waited: float,
) -> ReserveResult:
    from resgate.clock import beside, span
    from resgate.engine.queries import reservation_info
    from resgate.engine.records import ReserveResult

    if ticket.status == "admitted" and ticket.reservation_id is not None:
        rid = ticket.reservation_id
        info = transact(ctx, lambda tx: reservation_info(tx, rid), write=False)
        return ReserveResult(info, [], _utcnow(ctx))
    if ticket.status == "timed_out":
        where = "" if last.position is None else f", position {last.position}"
        eta = "unknown" if last.eta is None else beside(last.eta, _utcnow(ctx))
        raise InsufficientResources(
            f"{refusal.message}; waited {span(int(waited))}{where}, ETA {eta}"
        )
    raise Refused(f"ticket {ticket.id} was {ticket.status.replace('_', ' ')}: {ticket.reason}")


def _leave(ctx: typer.Context, ticket_id: str) -> None:
    """Cancel the ticket on the way out; a second signal meanwhile is let through."""
    from resgate.engine import queue

    transact(ctx, lambda tx: queue.leave(tx, ticket_id, "cancelled", "interrupted"), write=True)


def waiting_line(ticket: Ticket) -> str:
    """`resgate: waiting for gpu=4 in 'box': position 2 of 3, ETA 16:00 (…)`."""
    from resgate.clock import local

    wanted = ticket.amounts.asked()
    place = "" if ticket.position is None else f": position {ticket.position} of {ticket.waiting}"
    eta = "unknown" if ticket.eta is None else local(ticket.eta)[11:16]
    why = {"quota": "the tenant's quota", "per-tenant": "the pool's per-tenant limit"}.get(
        ticket.reason or "", "waiting for room"
    )
    if ticket.held_by and ticket.reason not in ("quota", "per-tenant"):
        tenant, rid, end = ticket.held_by[0]
        until = "open-ended" if end is None else f"until {local(end)[11:16]}"
        others = len(ticket.held_by) - 1
        why = f"held by {tenant} {rid[:8]}… {until}" + (f" and {others} more" if others else "")
    return (
        f"resgate: waiting for {wanted} in '{ticket.pool}'{place}, ETA {eta} "
        f"({why}; ticket {ticket.id[:8]}…)"
    )


def _utcnow(ctx: typer.Context) -> datetime:
    from resgate.cli.state import state
    from resgate.clock import SystemClock

    clock: Any = state(ctx).clock or SystemClock()
    now: datetime = clock.now()
    return now
