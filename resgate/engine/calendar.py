"""A pool's plans from an instant on, read once and asked many questions in memory
(README "Booking ahead"): what is free at an instant and until when, and whether
a request fits a window by every rule the reservation checks apply — capacity,
devices, the tenant's quota and its per-tenant limit — the same functions of
engine/windows.py over the same plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from resgate.engine import devices
from resgate.engine.queries import PoolRow, TenantRow, is_booked
from resgate.engine.quotas import limits_of
from resgate.engine.records import Amounts
from resgate.engine.windows import Window, bounds, most_at_once, overlaps, peak, plan_end
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Reservation, ReservationDevice, Tenant

INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """One booked reservation: who, its planned window, what it holds."""

    id: str
    tenant: str
    tenant_id: int
    pool_id: int
    start: datetime
    end: datetime | None
    amounts: Amounts
    devices: frozenset[int]

    def holds(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)

    def overlaps(self, window: Window) -> bool:
        return (self.end is None or self.end > window.start) and (
            window.end is None or self.start < window.end
        )


def booked_plans(tx: Tx, since: datetime, pool_id: int | None, tenant_id: int | None) -> list[Plan]:
    """The plans that hold some instant from `since` on and are not over now (a lease
    that lapsed holds nothing, swept or not), in the pool and/or of the tenant."""
    later = Window(since, None)
    query = (
        select(
            Reservation.id,
            Tenant.name,
            Reservation.tenant_id,
            Reservation.pool_id,
            Reservation.starts_at,
            plan_end(),
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
        )
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(overlaps(later), is_booked(tx.now))
        .order_by(Reservation.starts_at, Reservation.created_at, Reservation.id)
    )
    if pool_id is not None:
        query = query.where(Reservation.pool_id == pool_id)
    if tenant_id is not None:
        query = query.where(Reservation.tenant_id == tenant_id)
    rows = tx.session.execute(query, bounds(later)).all()
    held: dict[str, set[int]] = {}
    if pool_id is not None and rows:
        device_rows = tx.session.execute(
            select(ReservationDevice.reservation_id, ReservationDevice.device).where(
                ReservationDevice.pool_id == pool_id, devices.HELD
            )
        )
        for rid, device in device_rows:
            held.setdefault(rid, set()).add(device)
    return [
        Plan(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            Amounts(r[6], r[7], r[8]),
            frozenset(held.get(r[0], ())),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Fit:
    """A request placed in a window: the GPU ids it would take."""

    gpu_ids: tuple[int, ...]


class Calendar:
    """One pool's plans from `since` on, and those of one tenant in every pool
    (its quota counts them all)."""

    def __init__(
        self,
        tx: Tx,
        pool: PoolRow,
        since: datetime,
        tenant: TenantRow | None = None,
        excluding: str | None = None,  # a reservation asked about: its own plan is left out
    ) -> None:
        self.pool = pool
        self.total = Amounts(pool.cpu, pool.memory, pool.gpu)
        self.device_ids = devices.pool_ids(tx, pool.id)
        self.plans = [p for p in booked_plans(tx, since, pool.id, None) if p.id != excluding]
        self.tenant = tenant
        mine = [] if tenant is None else booked_plans(tx, since, None, tenant.id)
        self.tenant_plans = [p for p in mine if p.id != excluding]

    def growth(self) -> list[datetime]:
        """Every instant at which something the request could use is given back:
        a sum or a GPU of the pool, room under one of the tenant's caps, or a place
        under the pool's per-tenant limit. Only there can a later start fit where
        an earlier one did not."""
        ends = sorted({p.end for p in self.plans + self.tenant_plans if p.end is not None})
        return [at for at in ends if self._grows(at)]

    def _grows(self, at: datetime) -> bool:
        before, after = self._holding(at - INSTANT), self._holding(at)
        if any(was > now for was, now in zip(before[0], after[0], strict=True)):
            return True
        if before[1] - after[1]:
            return True
        if self.tenant is not None:
            capped = [cap is not None for cap in limits_of(self.tenant)]
            lower = [was > now for was, now in zip(before[2], after[2], strict=True)]
            if any(c and low for c, low in zip(capped, lower, strict=True)):
                return True
            if self.pool.per_tenant is not None and before[3] > after[3]:
                return True
        return False

    def _holding(self, at: datetime) -> tuple[Amounts, set[int], Amounts, int]:
        """At `at`: the pool's sums and GPU ids held, the tenant's sums in every
        pool and its number of plans in this one."""
        sums, ids = self.held_at(at)
        mine = [p for p in self.tenant_plans if p.holds(at)]
        theirs = sum((p.amounts for p in mine), Amounts())
        return sums, ids, theirs, sum(1 for p in mine if p.pool_id == self.pool.id)

    def held_at(self, at: datetime) -> tuple[Amounts, set[int]]:
        """What the pool's plans hold at `at`: the sums and the GPU ids."""
        amounts, ids = Amounts(), set[int]()
        for plan in self.plans:
            if plan.holds(at):
                amounts, ids = amounts + plan.amounts, ids | plan.devices
        return amounts, ids

    def free_ids(self, window: Window) -> list[int]:
        """The pool's GPU ids that no plan holds at any instant of `window`."""
        busy: set[int] = set()
        for plan in self.plans:
            if plan.devices and plan.overlaps(window):
                busy |= plan.devices
        return [device for device in self.device_ids if device not in busy]

    def fits(self, need: Amounts, window: Window, wanted: Sequence[int] | None) -> Fit | None:
        """The request placed over the whole window, or None where some rule refuses
        it at some instant: capacity, devices (the lowest free for the whole window,
        or `wanted`), the tenant's quota and its per-tenant limit."""
        rows = [(p.start, p.end, p.amounts) for p in self.plans if p.overlaps(window)]
        if not (need + peak(rows, window)).fits_in(self.total):
            return None
        free = self.free_ids(window)
        if wanted is not None:
            if not set(wanted) <= set(free):
                return None
            chosen = sorted(wanted)
        elif len(free) < need.gpu:
            return None
        else:
            chosen = free[: need.gpu]
        if self.tenant is not None and self._tenant_refusal(need, window) is not None:
            return None
        return Fit(tuple(chosen))

    def _tenant_refusal(self, need: Amounts, window: Window) -> str | None:
        """The tenant's rule the request breaks somewhere in `window`: one of its
        caps or the pool's per-tenant limit; None: neither."""
        assert self.tenant is not None
        mine = [p for p in self.tenant_plans if p.overlaps(window)]
        held = peak([(p.start, p.end, p.amounts) for p in mine], window)
        caps = limits_of(self.tenant)
        for resource, cap, have, want in zip(RESOURCES, caps, held, need, strict=True):
            if want > 0 and cap is not None and have + want > cap:
                return f"{resource} quota ({cap})"
        allowed = self.pool.per_tenant
        if allowed is None:
            return None
        here = [(p.start, p.end) for p in mine if p.pool_id == self.pool.id]
        if most_at_once([*here, (window.start, window.end)], window) > allowed:
            return f"per-tenant limit of pool '{self.pool.name}' ({allowed})"
        return None

    def tenant_refuses(self, need: Amounts, window: Window) -> tuple[datetime, str] | None:
        """The first instant of `window` at which the tenant's caps or per-tenant
        limit refuse the request, and which rule; None: none does."""
        points = {window.start} | {p.start for p in self.tenant_plans if window.contains(p.start)}
        for at in sorted(points):
            rule = self._tenant_refusal(need, Window(at, at + INSTANT))
            if rule is not None:
                return at, rule
        return None

    def free_until(
        self, start: datetime, need: Amounts, fit: Fit, after: datetime
    ) -> datetime | None:
        """The first instant from `after` on at which the request placed at `start`
        with `fit`'s GPUs stops fitting; None if it fits for ever. Only a start
        can take something away, so only starts are tried."""
        starts = sorted({p.start for p in self.plans + self.tenant_plans if p.start >= after})
        for at in starts:
            if self.fits(need, Window(start, at + INSTANT), fit.gpu_ids) is None:
                return at
        return None

    def ending_at(self, at: datetime) -> Plan | None:
        """A plan of the pool (else of the tenant) whose end is `at`: what frees it."""
        for plan in self.plans + self.tenant_plans:
            if plan.end == at:
                return plan
        return None


def free_at(tx: Tx, pool: PoolRow, at: datetime) -> tuple[Amounts, list[int], datetime | None]:
    """What is free in the pool at `at`, its free GPU ids, and the first later
    instant at which a plan takes some of that (None: it stays free for ever)."""
    calendar = Calendar(tx, pool, at)
    held, ids = calendar.held_at(at)
    free_ids = [d for d in calendar.device_ids if d not in ids]
    for start in sorted({p.start for p in calendar.plans if p.start > at}):
        later, taken = calendar.held_at(start)
        if not later.fits_in(held) or taken & set(free_ids):
            return calendar.total - held, free_ids, start
    return calendar.total - held, free_ids, None
