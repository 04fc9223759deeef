"""Step 2 of `resgate import-state` (README "Coming from the Go version"): the plan.

`plan` checks resgate's invariants (negative or huge amounts, priorities, an
over-committed pool, two active reservations of one tenant in one pool: exit 1 with the
path) and decides every row: final status, times, deleted pools and tenants. It is
pure, so the command runs it once before opening the database and again inside the
transaction at the transaction's own `now`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from resgate.engine.records import Amounts
from resgate.engine.statefile import FilePool, FileReservation, FileTenant, StateFile, fail
from resgate.engine.validation import check_priority
from resgate.errors import InvalidInput
from resgate.limits import DEFAULT_PRIORITY, MAX_AMOUNT, RESOURCES


@dataclass
class PlannedPool:
    name: str
    total: Amounts
    created_at: datetime | None  # None: the import time
    deleted: bool


@dataclass
class PlannedTenant:
    name: str
    priority: int
    created_at: datetime | None
    deleted: bool


@dataclass
class PlannedReservation:
    path: str
    id: str
    tenant: str
    pool: str
    amounts: Amounts
    ttl: int | None
    created_at: datetime
    expires_at: datetime | None
    status: str  # active, expired or released
    ended_at: datetime | None  # for released: None means the import time
    in_active_map: bool


@dataclass
class Plan:
    pools: list[PlannedPool]
    tenants: list[PlannedTenant]
    reservations: list[PlannedReservation]  # creation order


def plan(state: StateFile, now: datetime) -> Plan:
    """Check resgate's invariants and decide every row, as of `now`."""
    pools = {p.name: _planned_pool(p) for p in state.pools}
    tenants = {t.name: _planned_tenant(t) for t in state.tenants}
    merged = _merge(state)
    reservations = [_planned_reservation(r, now) for r in merged]
    _check_live_names(reservations, pools, tenants)
    _check_capacity(reservations, pools)
    # History naming a pool or tenant the maps no longer have (the Go tool kept the
    # history of deleted ones): a deleted row; a pool's totals are the largest
    # amounts one of its reservations held, per resource.
    for r in reservations:
        if r.pool not in pools:
            pools[r.pool] = PlannedPool(r.pool, r.amounts, r.created_at, True)
        elif pools[r.pool].deleted:
            held = zip(pools[r.pool].total, r.amounts, strict=True)
            pools[r.pool].total = Amounts(*(max(a, b) for a, b in held))
        if r.tenant not in tenants:
            tenants[r.tenant] = PlannedTenant(r.tenant, DEFAULT_PRIORITY, r.created_at, True)
    return Plan(list(pools.values()), list(tenants.values()), reservations)


def _in_range(value: int, path: str, what: str = "amount") -> int:
    if value < 0:
        raise fail(path, f"negative {what} {value}")
    if value > MAX_AMOUNT:
        raise fail(path, f"{what} {value} is above {MAX_AMOUNT}")
    return value


def _checked(values: tuple[int, int, int], path: str) -> Amounts:
    return Amounts(*(_in_range(v, f"{path}.{r}") for v, r in zip(values, RESOURCES, strict=True)))


def _planned_pool(pool: FilePool) -> PlannedPool:
    total = _checked(pool.total, f"{pool.path}.total")
    return PlannedPool(pool.name, total, pool.created_at, False)


def _planned_tenant(tenant: FileTenant) -> PlannedTenant:
    priority = DEFAULT_PRIORITY if tenant.priority is None else tenant.priority
    try:
        check_priority(priority)
    except InvalidInput as e:
        raise fail(f"{tenant.path}.priority", e.message) from None
    return PlannedTenant(tenant.name, priority, tenant.created_at, False)


def _identity(r: FileReservation) -> tuple[object, ...]:
    return (r.tenant, r.pool, r.resources, r.created_at)


def _merge(state: StateFile) -> list[FileReservation]:
    """One entry per id, in creation order (ties: order of first appearance,
    history first). The same id twice must be the same reservation; the active
    map's entry, else the last one, gives the expiry and release time."""
    by_id: dict[str, FileReservation] = {}
    first_seen: dict[str, int] = {}
    for entry in [*state.history, *state.active]:
        earlier = by_id.get(entry.id)
        if earlier is None:
            first_seen[entry.id] = len(first_seen)
            by_id[entry.id] = entry
            continue
        if _identity(earlier) != _identity(entry):
            raise fail(
                entry.path,
                f"reservation '{entry.id}' differs from {earlier.path} (same id, different "
                "tenant, pool, resources or created_at)",
            )
        keep = entry if entry.in_active_map or not earlier.in_active_map else earlier
        by_id[entry.id] = replace(keep, in_active_map=earlier.in_active_map or entry.in_active_map)
    return sorted(by_id.values(), key=lambda r: (r.created_at, first_seen[r.id]))


def _planned_reservation(r: FileReservation, now: datetime) -> PlannedReservation:
    amounts = _checked(r.resources, f"{r.path}.resources")
    if r.ttl > MAX_AMOUNT:
        raise fail(f"{r.path}.ttl", f"ttl {r.ttl} is above {MAX_AMOUNT} seconds")
    ttl = r.ttl if r.ttl > 0 else None  # 0 or negative: no expiry, whatever expires_at says
    expires_at: datetime | None = None
    if ttl is not None:
        try:
            expires_at = r.expires_at or r.created_at + timedelta(seconds=ttl)
        except OverflowError:
            raise fail(f"{r.path}.ttl", "created_at + ttl is out of range") from None
    if r.released_at is not None and r.released_at < r.created_at:
        raise fail(f"{r.path}.released_at", "released before it was created")
    status, ended_at = "released", r.released_at
    if r.in_active_map:
        expired = expires_at is not None and expires_at <= now
        status, ended_at = ("expired", expires_at) if expired else ("active", None)
    return PlannedReservation(
        path=r.path,
        id=r.id,
        tenant=r.tenant,
        pool=r.pool,
        amounts=amounts,
        ttl=ttl,
        created_at=r.created_at,
        expires_at=expires_at,
        status=status,
        ended_at=ended_at,
        in_active_map=r.in_active_map,
    )


def _check_live_names(
    reservations: list[PlannedReservation],
    pools: dict[str, PlannedPool],
    tenants: dict[str, PlannedTenant],
) -> None:
    """A reservation still held must name a pool and a tenant that still exist."""
    for r in reservations:
        if r.in_active_map and r.pool not in pools:
            raise fail(
                f"{r.path}.pool_name",
                f"active reservation in pool '{r.pool}', which is not in pools",
            )
        if r.in_active_map and r.tenant not in tenants:
            raise fail(
                f"{r.path}.tenant_name",
                f"active reservation of tenant '{r.tenant}', which is not in tenants",
            )


def _check_capacity(reservations: list[PlannedReservation], pools: dict[str, PlannedPool]) -> None:
    used: dict[str, Amounts] = defaultdict(Amounts)
    holder: dict[tuple[str, str], str] = {}
    for r in reservations:
        if r.status != "active":
            continue
        other = holder.setdefault((r.tenant, r.pool), r.id)
        if other != r.id:
            raise fail(
                r.path,
                f"tenant '{r.tenant}' already has active reservation '{other}' in pool '{r.pool}'",
            )
        used[r.pool] = used[r.pool] + r.amounts
        total = pools[r.pool].total
        for i, resource in enumerate(RESOURCES):
            if used[r.pool][i] > total[i]:
                raise fail(
                    f"{r.path}.resources.{resource}",
                    f"pool '{r.pool}' over-committed: its active reservations hold "
                    f"{resource} {used[r.pool][i]}, its total is {total[i]}",
                )
