"""Step 3 of `import-state`, first half: the plan against what the database already
holds. A pool, tenant or reservation the file shares with the database must be the
same (exit 4), and the reservations it brings in active must fit (exit 4)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import aliased

from resgate.engine.import_plan import Plan, PlannedReservation
from resgate.engine.queries import pool_usage
from resgate.engine.records import Amounts, ImportSummary
from resgate.errors import Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant

_LOOKUP_CHUNK = 500  # ids per IN (...) when looking up existing reservations


class Existing(NamedTuple):
    """A reservation row the file also has, as existing_reservations selects it."""

    id: str
    tenant: str
    pool: str
    tenant_id: int
    pool_id: int
    cpu: int
    memory: int
    gpu: int
    created_at: datetime
    status: str

    @property
    def amounts(self) -> Amounts:
        return Amounts(self.cpu, self.memory, self.gpu)


# An imported reservation the database holds active that the file has ended, and its row.
Ended = tuple[PlannedReservation, Existing]


def refuse_clashing_pools_and_tenants(
    tx: Tx, the_plan: Plan
) -> tuple[dict[str, Pool], dict[str, Tenant]]:
    """The live pools and tenants of the plan's names the database already has; each
    must be what the file says (exit 4)."""
    live_pools = _existing_live(tx, Pool, [p.name for p in the_plan.pools if not p.deleted])
    live_tenants = _existing_live(tx, Tenant, [t.name for t in the_plan.tenants if not t.deleted])
    for p in the_plan.pools:
        pool = live_pools.get(p.name) if not p.deleted else None
        if pool is None:
            continue
        recorded = Amounts(pool.cpu, pool.memory, pool.gpu)
        if recorded != p.total:
            raise Refused(
                f"pool '{p.name}' already exists with {_fmt(recorded)}; the state file has "
                f"{_fmt(p.total)}"
            )
    for t in the_plan.tenants:
        tenant = live_tenants.get(t.name) if not t.deleted else None
        if tenant is not None and tenant.priority != t.priority:
            raise Refused(
                f"tenant '{t.name}' already exists with priority {tenant.priority}; "
                f"the state file has priority {t.priority}"
            )
    return live_pools, live_tenants


def classify(
    reservations: list[PlannedReservation], existing: dict[str, Existing], summary: ImportSummary
) -> tuple[list[PlannedReservation], list[Ended]]:
    """The reservations to create, and those an earlier import left active that the
    file has since ended. The others are skipped."""
    new: list[PlannedReservation] = []
    to_release: list[Ended] = []
    for r in reservations:
        old = existing.get(r.id)
        if old is None:
            new.append(r)
            continue
        _refuse_different(r, old)
        summary.skipped += 1
        if old.status == "active" and not r.in_active_map:
            to_release.append((r, old))
    return new, to_release


def _refuse_different(r: PlannedReservation, old: Existing) -> None:
    """A reservation imported before must be the file's one (exit 4)."""
    differs = [
        what
        for what, mine, theirs in (
            ("tenant", r.tenant, old.tenant),
            ("pool", r.pool, old.pool),
            ("amounts", r.amounts, old.amounts),
            ("created_at", r.created_at, old.created_at),
        )
        if mine != theirs
    ]
    if differs:
        raise Refused(f"reservation '{r.id}' already exists with a different {', '.join(differs)}")


def known_ids(
    the_plan: Plan,
    existing: dict[str, Existing],
    live_pools: dict[str, Pool],
    live_tenants: dict[str, Tenant],
) -> tuple[dict[str, int], dict[str, int]]:
    """The rows of the plan's pools and tenants the database has: live ones, and
    deleted ones an earlier import made, found through the skipped reservations."""
    deleted_pools = {p.name for p in the_plan.pools if p.deleted}
    deleted_tenants = {t.name for t in the_plan.tenants if t.deleted}
    pool_ids: dict[str, int] = {}
    tenant_ids: dict[str, int] = {}
    for old in existing.values():
        if old.pool in deleted_pools:
            pool_ids.setdefault(old.pool, old.pool_id)
        if old.tenant in deleted_tenants:
            tenant_ids.setdefault(old.tenant, old.tenant_id)
    for name, pool in live_pools.items():
        pool_ids[name] = pool.id
    for name, tenant in live_tenants.items():
        tenant_ids[name] = tenant.id
    return pool_ids, tenant_ids


def check_against_existing(
    tx: Tx,
    ids: tuple[dict[str, int], dict[str, int]],
    the_plan: Plan,
    new: list[PlannedReservation],
    to_release: list[Ended],
) -> None:
    """New active reservations in pools and tenants the database already has (`ids`:
    their row ids by name): no second active reservation of a tenant in a pool, no
    over-committed pool."""
    pool_ids, tenant_ids = ids
    arriving = [r for r in new if r.status == "active" and r.pool in pool_ids]
    if not arriving:
        return
    leaving = {old.id for _, old in to_release}
    reused_pools = sorted({pool_ids[r.pool] for r in arriving})
    held = {
        (tid, pid): rid
        for rid, tid, pid in tx.session.execute(
            select(Reservation.id, Reservation.tenant_id, Reservation.pool_id).where(
                Reservation.status == "active", Reservation.pool_id.in_(reused_pools)
            )
        )
        if rid not in leaving
    }
    for r in arriving:
        other = held.get((tenant_ids.get(r.tenant, -1), pool_ids[r.pool]))
        if other is not None:
            raise Refused(
                f"tenant '{r.tenant}' already has active reservation '{other}' in pool "
                f"'{r.pool}'; the state file's '{r.id}' cannot be imported active"
            )
    usage = pool_usage(tx, reused_pools)
    for _, old in to_release:
        if old.pool_id in usage:
            usage[old.pool_id] = usage[old.pool_id] - old.amounts
    totals = {p.name: p.total for p in the_plan.pools}
    for r in arriving:
        pid = pool_ids[r.pool]
        usage[pid] = usage.get(pid, Amounts()) + r.amounts
        for i, resource in enumerate(RESOURCES):
            if usage[pid][i] > totals[r.pool][i]:
                raise Refused(
                    f"importing '{r.id}' would over-commit pool '{r.pool}': {resource} "
                    f"{usage[pid][i]} held, total {totals[r.pool][i]}"
                )


def _fmt(amounts: Amounts) -> str:
    return f"cpu={amounts.cpu} memory={amounts.memory} gpu={amounts.gpu}"


def _existing_live(tx: Tx, model: Any, names: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in _chunks(names):
        rows = tx.session.scalars(
            select(model).where(model.name.in_(chunk), model.deleted_at.is_(None))
        )
        found.update({row.name: row for row in rows})
    return found


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _LOOKUP_CHUNK):
        yield values[start : start + _LOOKUP_CHUNK]


def existing_reservations(tx: Tx, ids: list[str]) -> dict[str, Existing]:
    tenant, pool = aliased(Tenant), aliased(Pool)
    found: dict[str, Existing] = {}
    for chunk in _chunks(ids):
        rows = tx.session.execute(
            select(
                Reservation.id,
                tenant.name,
                pool.name,
                Reservation.tenant_id,
                Reservation.pool_id,
                Reservation.cpu,
                Reservation.memory,
                Reservation.gpu,
                Reservation.created_at,
                Reservation.status,
            )
            .join(tenant, tenant.id == Reservation.tenant_id)
            .join(pool, pool.id == Reservation.pool_id)
            .where(Reservation.id.in_(chunk))
        )
        found.update((row.id, row) for row in map(Existing._make, rows))
    return found
