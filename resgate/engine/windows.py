"""Windows in time (README "Booking ahead"): a reservation's plan is
[starts_at, min(ends_at, preempt_at)), nulls open, while its stored status is
active. What is free over a window is read from pool_free, the step function the
database keeps (docs/schema.md); who holds what over a window, from the plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, case, func, or_, select, text

from resgate.engine.queries import ACTIVE
from resgate.engine.records import Amounts
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import FREE_FLOOR, PoolFree, Reservation, Tenant


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime | None  # None: open-ended

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


def plan_end() -> Any:
    """The planned end of a reservation row: the earlier of ends_at and preempt_at."""
    ends, preempt = Reservation.ends_at, Reservation.preempt_at
    return case(
        (ends.is_(None), preempt),
        (preempt.is_(None), ends),
        (ends <= preempt, ends),
        else_=preempt,
    )


def overlaps(window: Window) -> Any:
    """A stored-active reservation whose plan overlaps `window` (half-open). Bound
    parameters `w_start` (and `w_end`): pass `bounds(window)` with the statement."""
    return overlap_clause(window.end is None)


def bounds(window: Window) -> dict[str, datetime | None]:
    return {"w_start": window.start, "w_end": window.end}


@cache
def overlap_clause(open_ended: bool) -> Any:
    # Built once: composing these per call cost more than running them (benchmarks/,
    # cycles). ACTIVE is inline so SQLite uses the partial indexes on active rows.
    end = plan_end()
    condition = [Reservation.status == ACTIVE, or_(end.is_(None), end > _W_START)]
    if not open_ended:
        condition.append(Reservation.starts_at < _W_END)
    return and_(*condition)


_W_START = bindparam("w_start", type_=DateTime)
_W_END = bindparam("w_end", type_=DateTime)


def free_steps(tx: Tx, pool_id: int, window: Window) -> list[tuple[datetime, Amounts]]:
    """What is free in the pool over `window`: (from, free) for the step in force
    at the window's start and each later one inside it."""
    params = {"pool_id": pool_id, **bounds(window)}
    first = tx.connection.execute(_first_step(), params).first()
    later = tx.connection.execute(_later_steps(window.end is None), params)
    steps = [(window.start, Amounts(first.cpu, first.memory, first.gpu))] if first else []
    steps += [(at, Amounts(cpu, memory, gpu)) for at, cpu, memory, gpu in later]
    return steps


_STEP = (PoolFree.at, PoolFree.cpu, PoolFree.memory, PoolFree.gpu)


@cache
def _first_step() -> Any:
    return (
        select(*_STEP)
        .where(PoolFree.pool_id == bindparam("pool_id"), PoolFree.at <= _W_START)
        .order_by(PoolFree.at.desc())
        .limit(1)
    )


@cache
def _later_steps(open_ended: bool) -> Any:
    query = select(*_STEP).where(PoolFree.pool_id == bindparam("pool_id"), PoolFree.at > _W_START)
    if not open_ended:
        query = query.where(PoolFree.at < _W_END)
    return query.order_by(PoolFree.at)


def first_shortfall(
    steps: Sequence[tuple[datetime, Amounts]], need: Amounts
) -> tuple[datetime, Amounts] | None:
    """The first step in which `need` does not fit, with what is free then."""
    for at, free in steps:
        if not need.fits_in(free):
            return at, free
    return None


@dataclass(frozen=True)
class Holder:
    id: str
    tenant: str
    starts_at: datetime
    end: datetime | None
    amounts: Amounts


def holders_at(tx: Tx, pool_id: int, at: datetime) -> list[Holder]:
    """The reservations whose plans hold `at`, in start then creation order."""
    instant = Window(at, at + timedelta(microseconds=1))
    end = plan_end().label("plan_end")
    rows = tx.session.execute(
        select(
            Reservation.id,
            Tenant.name,
            Reservation.starts_at,
            end,
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
        )
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(Reservation.pool_id == pool_id, overlaps(instant))
        .order_by(Reservation.starts_at, Reservation.created_at, Reservation.id),
        bounds(instant),
    ).all()
    return [Holder(r[0], r[1], r[2], r[3], Amounts(r[4], r[5], r[6])) for r in rows]


def holder(tx: Tx, reservation_id: str) -> Holder:
    """One reservation as a Holder."""
    row = tx.session.execute(
        select(
            Reservation.id,
            Tenant.name,
            Reservation.starts_at,
            plan_end(),
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
        )
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(Reservation.id == reservation_id)
    ).one()
    return Holder(row[0], row[1], row[2], row[3], Amounts(row[4], row[5], row[6]))


def peak(rows: Sequence[tuple[datetime, datetime | None, Amounts]], window: Window) -> Amounts:
    """The most that `rows` (start, end, amounts) hold at once within `window`,
    per resource: each sum can only peak at the window's start or at a start
    inside it."""
    points = {window.start} | {start for start, _, _ in rows if window.contains(start)}
    best = Amounts()
    for at in points:
        held = Amounts()
        for start, end, amounts in rows:
            if start <= at and (end is None or at < end):
                held = held + amounts
        best = Amounts(*(max(getattr(best, r), getattr(held, r)) for r in RESOURCES))
    return best


def most_at_once(rows: Sequence[tuple[datetime, datetime | None]], window: Window) -> int:
    """How many of `rows` (start, end) overlap at once within `window`, at most."""
    points = {window.start} | {start for start, _ in rows if window.contains(start)}
    return max(
        (sum(1 for s, e in rows if s <= at and (e is None or at < e)) for at in points), default=0
    )


def prune(tx: Tx, force: bool = False) -> None:
    """Fold pool_free's past into each pool's floor row: its value becomes the one in
    force now and the rows before now go, so the table grows with future bookings,
    never with history. Unless forced, only once PRUNE_AFTER rows have gathered:
    every release leaves one, and folding on every write cost a tenth of a cycle
    (benchmarks/, cycles); what is free from now on reads the same either way."""
    params = {"now": tx.now, "floor": FREE_FLOOR}
    gathered = tx.connection.execute(_GATHERED, params).scalar() or 0
    if gathered == 0 or (not force and gathered < PRUNE_AFTER):
        return
    tx.connection.execute(_FOLD, params)
    tx.connection.execute(_DROP_PAST, params)


_PAST = "at > :floor AND at <= :now"
# Bound as the column's type: SQLite compares the stored text, which must match.
_TIMES = (bindparam("now", type_=DateTime), bindparam("floor", type_=DateTime))
PRUNE_AFTER = 64
_GATHERED = text(
    f"SELECT COUNT(*) FROM (SELECT 1 FROM pool_free WHERE {_PAST} LIMIT {PRUNE_AFTER}) AS past"
).bindparams(*_TIMES)
_FOLD = text(
    "UPDATE pool_free SET (cpu, memory, gpu) = ("
    "  SELECT l.cpu, l.memory, l.gpu FROM pool_free l"
    "   WHERE l.pool_id = pool_free.pool_id AND l.at <= :now ORDER BY l.at DESC LIMIT 1) "
    f"WHERE at = :floor AND pool_id IN (SELECT pool_id FROM pool_free WHERE {_PAST})"
).bindparams(*_TIMES)
_DROP_PAST = text(f"DELETE FROM pool_free WHERE {_PAST}").bindparams(*_TIMES)


def recount(tx: Tx, pool_id: int, totals: Amounts) -> list[tuple[datetime, Amounts]]:
    """pool_free as it should be for t ≥ now, from the plans themselves (db check):
    (from, free) at now and at every later breakpoint."""
    end = plan_end()
    rows = tx.session.execute(
        select(
            Reservation.starts_at, end, Reservation.cpu, Reservation.memory, Reservation.gpu
        ).where(Reservation.pool_id == pool_id, overlaps(Window(tx.now, None))),
        bounds(Window(tx.now, None)),
    ).all()
    points = sorted({tx.now} | {t for r in rows for t in r[:2] if t is not None and t > tx.now})
    steps = []
    for at in points:
        held = Amounts()
        for start, stop, cpu, memory, gpu in rows:
            if start <= at and (stop is None or at < stop):
                held = held + Amounts(cpu, memory, gpu)
        steps.append((at, totals - held))
    return steps


def count_rows(tx: Tx) -> int:
    return int(tx.session.scalar(select(func.count()).select_from(PoolFree)) or 0)
