"""Giving reservations back: unreserve (one or several in one transaction) and the end
of a `resgate run` job."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select, update

from resgate.engine import audit, devices, lookup
from resgate.engine.pardon import pardon
from resgate.engine.queries import (
    RESERVATIONS,
    reservation_info,
)
from resgate.engine.records import (
    Caller,
    Released,
    ReservationInfo,
)
from resgate.errors import Refused
from resgate.store.database import Tx


@cache
def _release() -> Any:
    return (
        update(RESERVATIONS)
        .where(RESERVATIONS.c.id == bindparam("rid"))
        .values(status="released", ended_at=bindparam("now"))
    )


def unreserve_many(tx: Tx, reservation_ids: list[str], caller: Caller | None = None) -> Released:
    """Release each, in order, in this one transaction: all or, if one is refused,
    none. An id given twice (or two prefixes of one) releases it once. A booking
    that truncated others gives them back their time (engine/pardon.py)."""
    released: list[ReservationInfo] = []
    seen: set[str] = set()
    for given in reservation_ids:
        rid = lookup.resolve_id(tx, given)
        if rid not in seen:
            seen.add(rid)
            released.append(unreserve(tx, given, caller))
    return Released(released, pardon(tx, [info.id for info in released]))


def unreserve(tx: Tx, reservation_id: str, caller: Caller | None = None) -> ReservationInfo:
    reservation = lookup.require_active(tx, reservation_id, caller)
    tx.connection.execute(_release(), {"rid": reservation.id, "now": tx.now})
    if reservation.gpu:
        devices.free(tx, [reservation.id])
    audit.record(tx, [audit.Change("reservation.release", reservation.id, {})])
    return reservation_info(tx, reservation.id)


def end_run(tx: Tx, reservation_id: str, release: bool) -> None:
    """`resgate run`'s job is gone: give the reservation back if asked and it is
    still active, and clear its runner either way (an ended row may have only
    that changed, docs/schema.md)."""
    if release:
        with suppress(Refused):  # not active any more (preempted, expired, released)
            unreserve(tx, reservation_id)
    tx.connection.execute(
        update(RESERVATIONS)
        .where(RESERVATIONS.c.id == reservation_id, RESERVATIONS.c.runner.is_not(None))
        .values(runner=None)
    )


def runners(tx: Tx, reservation_ids: list[str]) -> dict[str, str]:
    """The runner of each reservation that still has one."""
    rows = tx.connection.execute(
        select(RESERVATIONS.c.id, RESERVATIONS.c.runner).where(
            RESERVATIONS.c.id.in_(reservation_ids), RESERVATIONS.c.runner.is_not(None)
        )
    )
    return {rid: runner for rid, runner in rows}


def claim_booking(
    tx: Tx,
    reservation_id: str,
    runner: str,
    caller: Caller | None = None,
    gone: Callable[[str], bool] = lambda runner: False,
) -> ReservationInfo:
    """`run --reservation`: the booking (upcoming or active), with `runner` recorded
    as the `resgate run` that will run its job. Refused (exit 4) when another run
    has it, unless `gone(its runner)` says that run is dead; and for the lease of a
    `resgate run`, which is no booking."""
    row = lookup.require_active(tx, reservation_id, caller)
    if row.lease:
        raise Refused(f"reservation '{row.id}' belongs to a resgate run: it is not a booking")
    if row.runner is not None and row.runner != runner and not gone(row.runner):
        pid, host, _ = runner_parts(row.runner)
        raise Refused(f"reservation {row.id} is already running (pid {pid} on {host})")
    tx.connection.execute(
        update(RESERVATIONS).where(RESERVATIONS.c.id == row.id).values(runner=runner)
    )
    return reservation_info(tx, row.id)


def runner_parts(runner: str) -> tuple[str, str, str]:
    """A runner `pid@host+grace` (docs/schema.md) as its pid, host and grace."""
    who, _, grace = runner.rpartition("+")
    pid, _, host = who.partition("@")
    return pid, host, grace
