"""`resgate run --reservation ID` (README "Booking ahead"): run COMMAND on a booking
made earlier. It waits for the booking's start (one line on stderr), runs COMMAND
as `run` does, stops it at the booking's end (exit 124) and gives the booking back
when COMMAND ends early.

A booking holds its window whatever happens to this process, so there is no lease
to renew: the "renewal" is a look at the reservation (a read), and the job's
supervisor keeps the booking's end as its deadline."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from resgate.cli import params
from resgate.cli.lease import CHECK_EVERY, TimeLimit, lost
from resgate.cli.permissions import caller
from resgate.cli.process import JobSignals
from resgate.cli.run import DEFAULT_TTL, EX_TEMPFAIL, Plan, run_job
from resgate.cli.run_transactions import finish, look_at, runner_of_this_process
from resgate.cli.state import error, say, state, transact
from resgate.interrupts import GUARD

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo

WHY = "the booking ends"


def run_booking(
    ctx: typer.Context, reservation: str, grace: int, command: list[str], quiet: bool
) -> int:
    """Claim the booking for this run, wait for its start, run COMMAND on it."""
    from resgate.engine.release import claim_booking

    rid = params.reservation_id(reservation)
    runner = runner_of_this_process(grace)
    who = caller(ctx)
    info = transact(ctx, lambda tx: claim_booking(tx, rid, runner, who, _gone), write=True)
    signals = JobSignals()
    code, release = 1, False
    try:
        signals.install()
        signals.pending.extend(GUARD.take_noted())
        started = _wait_for_start(ctx, info, signals, quiet)
        if isinstance(started, int):
            code = started  # nothing ran: the booking stays as it is
        else:
            code, release = run_job(ctx, _plan(ctx, started, grace, quiet), command, signals)
    finally:
        try:
            finish(ctx, info.id, release)
        finally:
            signals.uninstall()
    return code


def _now(ctx: typer.Context) -> datetime:
    """The instant the database's times are read against (the injected clock in tests)."""
    from resgate.clock import SystemClock

    return (state(ctx).clock or SystemClock()).now()


def _wait_for_start(
    ctx: typer.Context, info: ReservationInfo, signals: JobSignals, quiet: bool
) -> ReservationInfo | int:
    """The booking once it has started; or run's exit status when it ends first
    (75) or a signal comes (128 + its number)."""
    from resgate.render.text import local

    start = info.starts_at
    if start is None or start <= _now(ctx):
        return info
    say(f"resgate: reservation {info.id} starts at {local(start)}; waiting…", quiet)
    while True:
        left = (start - _now(ctx)).total_seconds()
        if signals.pending:
            error(f"interrupted while waiting for reservation {info.id} to start")
            return 128 + signals.pending[0]
        current = _look(ctx, info.id)
        if current is not None and current.status not in ("upcoming", "active"):
            error(lost(current).replace("; stopping the job", " before it started"))
            return EX_TEMPFAIL
        if left <= 0 and current is not None and current.status == "active":
            return current
        signals.wait(min(CHECK_EVERY, max(0.05, left)))


def _look(ctx: typer.Context, rid: str) -> ReservationInfo | None:
    """The reservation, or None when it cannot be seen for a passing reason."""
    from resgate.errors import Busy, DatabaseProblem

    try:
        return look_at(ctx, rid)
    except (Busy, DatabaseProblem):
        return None


def _plan(ctx: typer.Context, info: ReservationInfo, grace: int, quiet: bool) -> Plan:
    """The run on the booking: looked at as often as a lease is renewed, up to its
    end (the time limit, with the planned-stop line), or for ever."""
    started = time.monotonic()
    ends = [t for t in (info.ends_at, info.preempt_at) if t is not None]
    if not ends:
        ttl = params.seconds("--ttl", DEFAULT_TTL) or 120
        return Plan(info, ttl, grace, started, None, quiet, booking=True)
    now = _now(ctx)
    left = max(1.0, (min(ends) - now).total_seconds())
    # The booking's own end, in force again should a truncation be pardoned.
    booked = None
    if info.ends_at is not None:
        booked = TimeLimit(started + max(1.0, (info.ends_at - now).total_seconds()), grace, why=WHY)
    if info.preempt_at is None or info.preempt_at != min(ends):
        return Plan(info, math.ceil(left), grace, started, booked, quiet, booking=True)
    # Truncated by a booking of higher priority: a preemption (exit 75).
    why = f"preempted by '{info.preempted_by}'"
    limit = TimeLimit(started + left, grace, why=why, code=EX_TEMPFAIL)
    return Plan(info, math.ceil(left), grace, started, limit, quiet, True, booked)


def _gone(runner: str) -> bool:
    """Whether the `resgate run` recorded as `pid@host+grace` is dead: only known
    on this host."""
    import socket

    from resgate.engine.release import runner_parts

    pid, host, _ = runner_parts(runner)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
