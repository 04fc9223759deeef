"""The line's order and its head (README "Waiting in line"): which tickets wait in a
pool and in what order, the head's shadow, and the check that binds a reservation
made outside the admission pass (engine/queue.py) not to move that shadow later."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from resgate.engine import slots
from resgate.engine.calendar import Calendar, Plan
from resgate.engine.queries import PoolRow, tenant_row
from resgate.engine.records import Amounts
from resgate.errors import InsufficientResources
from resgate.store.database import Tx
from resgate.store.models import Pool, Request, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

WAITING = "waiting"
BLOCKING = "capacity"  # the reason of a ticket that waits for room
NOT_BLOCKING = ("quota", "per-tenant")  # waiting for its own tenant: blocks nobody
AHEAD = "; queued requests are ahead (see: resgate queue)"
# PostgreSQL: what the admission pass NOTIFYs when a ticket ends, and waiters LISTEN on.
LINE_CHANNEL = "resgate"

# Set while the pass admits: the reservations it makes are not checked against the
# line again, and the sweeps they run do not ask for another pass.
ADMITTING: ContextVar[bool] = ContextVar("resgate_admitting", default=False)


def shadow(tx: Tx, head: Row[Any], keep_open: str | None = None) -> datetime | None:
    """The head's earliest start, with every open-ended holder but `keep_open`
    counted as ending now; None when there is none within the horizon."""
    pool = tx.connection.execute(select(Pool).where(Pool.id == head.pool_id)).one()
    tenant = tenant_row(tx, head.tenant)
    calendar = Calendar(tx, pool, tx.now, tenant)
    calendar.plans = _ended_now(calendar.plans, tx.now, keep_open)
    calendar.tenant_plans = _ended_now(calendar.tenant_plans, tx.now, keep_open)
    found = slots.search(
        tx, tenant, pool, amounts_of(head), ids_of(head.gpu_ids), head.duration, tx.now, 1, calendar
    )
    return found[0].start if found else None


def _ended_now(plans: list[Plan], now: datetime, keep_open: str | None) -> list[Plan]:
    return [p if p.end is not None or p.id == keep_open else replace(p, end=now) for p in plans]


def later(shadow: datetime | None, was: datetime | None) -> bool:
    if was is None:
        return False  # nothing to keep: the head fits nowhere in the horizon
    return shadow is None or shadow > was


def line_guard(tx: Tx, pool: PoolRow, priority: int) -> Callable[[str], None] | None:
    """For a reservation made outside the pass: None when no head waits in the pool
    or the requester outranks it; else a check, to run once the reservation is in,
    that refuses it (exit 3) when it moved the head's shadow later."""
    if ADMITTING.get():
        return None
    head = tx.connection.execute(_head_of_pool(), {"pool_id": pool.id}).first()
    if head is None or priority > head.priority:
        return None
    was = shadow(tx, head)

    def check(new_id: str) -> None:
        if later(shadow(tx, head, keep_open=new_id), was):
            raise InsufficientResources(
                f"insufficient resources in '{pool.name}': what is free is promised to "
                f"ticket {head.id[:8]}… of {head.tenant}{AHEAD}"
            )

    return check


@cache
def _head_of_pool() -> Any:
    # Built once: every reserve runs it (benchmarks/, cycles); with nobody waiting it
    # is one lookup on ix_requests_waiting.
    return (
        waiting_rows()
        .where(Request.pool_id == bindparam("pool_id"), Request.reason == BLOCKING)
        .limit(1)
    )


@cache
def waiting_pools() -> Any:
    return select(Request.pool_id).where(Request.status == WAITING).distinct()


def waiting_rows() -> Any:
    return (
        rows()
        .where(Request.status == WAITING)
        .order_by(Tenant.priority.desc(), Request.enqueued_at, Request.id)
    )


def rows() -> Any:
    return (
        select(
            Request.id,
            Request.pool_id,
            Request.tenant_id,
            Pool.name.label("pool"),
            Tenant.name.label("tenant"),
            Tenant.priority,
            Request.created_by,
            Request.cpu,
            Request.memory,
            Request.gpu,
            Request.gpu_ids,
            Request.duration,
            Request.preempt,
            Request.request_id,
            Request.enqueued_at,
            Request.deadline,
            Request.heartbeat_at,
            Request.waiter,
            Request.lease_ttl,
            Request.runner,
            Request.status,
            Request.reservation_id,
            Request.ended_at,
            Request.reason,
            Tenant.deleted_at.is_not(None).label("tenant_gone"),
        )
        .join(Tenant, Tenant.id == Request.tenant_id)
        .join(Pool, Pool.id == Request.pool_id)
    )


def amounts_of(row: Row[Any]) -> Amounts:
    return Amounts(row.cpu, row.memory, row.gpu)


def ids_of(text: str | None) -> list[int] | None:
    return None if text is None else [int(part) for part in text.split(",") if part]


def after(at: datetime, seconds: int) -> datetime:
    return at + timedelta(seconds=seconds)
