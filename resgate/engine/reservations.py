"""Reservations: reserve, unreserve, extend, preempt, list."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError

from resgate.clock import ends
from resgate.engine import audit, devices, evictions, members, policies, replay
from resgate.engine.preemption import Candidate
from resgate.engine.queries import (
    RESERVATIONS,
    PoolRow,
    TenantRow,
    is_active_now,
    lock_rows,
    pool_row,
    pool_usage,
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
)
from resgate.errors import Hint, InsufficientResources, Refused
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
    if not request.lease:
        ttl = policies.default_ttl(pool, ttl)
    request = replace(request, amounts=amounts, ttl=ttl)
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
    if not request.lease:
        policies.check_length(pool, tx.now, ends(tx.now, ttl))
    policies.check_per_tenant(tx, tenant, pool)
    check_quota(tx, tenant, request.amounts)
    reservation_id = new_id()
    victims = _make_room(tx, request, tenant, pool, requested_ids, reservation_id)
    # Who is acting, once: the same actor the reservation.create event records.
    values = _row(tx, request, tenant, pool, reservation_id, audit.actor())
    if not _insert_row(tx, request, values):
        # Only a concurrent twin can get here (the checks above ran under the
        # locks); the database's constraints are the last line of defence.
        replayed = replay.replay(tx, request, tenant, pool, ttl)
        if replayed is not None:
            return replayed
        policies.check_per_tenant(tx, tenant, pool)
        raise Refused(f"pool '{pool.name}' refused the reservation")
    held_ids: list[int] = []
    if request.amounts.gpu or requested_ids is not None:
        held_ids = devices.assign(
            tx, pool.name, pool.id, reservation_id, request.amounts.gpu, requested_ids
        )
    created = _created(request, tenant, pool, values, held_ids)
    data = _created_data(created, request.preempt)
    audit.record(tx, [audit.Change("reservation.create", created.id, data)])
    return ReserveResult(created, victims, tx.now)


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
        status="active",
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        ended_at=None,
        preempted_by=None,
        preempted_for=None,
        request_id=request.request_id,
        gpu_ids=tuple(held_ids),
        created_by=values["created_by"],
    )


def _make_room(
    tx: Tx,
    request: ReserveRequest,
    tenant: TenantRow,
    pool: PoolRow,
    requested_ids: list[int] | None,
    reservation_id: str,
) -> list[Victim]:
    """Nothing when the request fits and its GPUs are free; else the victims
    evicted for it (with --preempt), or the refusal (exit 3)."""
    total = Amounts(pool.cpu, pool.memory, pool.gpu)
    available = total - pool_usage(tx, [pool.id]).get(pool.id, Amounts())
    forced: list[Candidate] = []
    if requested_ids is not None:
        devices.check_requested(tx, pool.name, pool.id, requested_ids)
        forced = evictions.device_holders(tx, tenant, pool, requested_ids, request.preempt)
    if not forced and request.amounts.fits_in(available):
        return []
    if not request.preempt:
        need = request.amounts
        outranks = _outranks_holders(tx, tenant, pool, need, available, requested_ids)
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}': "
            f"need cpu={need.cpu} mem={need.memory} gpu={need.gpu}, "
            f"available cpu={available.cpu} mem={available.memory} gpu={available.gpu}",
            Hint("outranks", "tenant", tenant.name) if outranks else None,
        )
    return evictions.evict_for(tx, tenant, pool, available, request.amounts, reservation_id, forced)


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
) -> dict[str, Any]:
    ttl = request.ttl
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
        "expires_at": ends(tx.now, ttl),
        "request_id": request.request_id,
        "created_by": created_by,
        "runner": request.runner,
    }


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
    }
    if info.request_id is not None:
        data["request_id"] = info.request_id
        # --preempt is part of a keyed request (README "Preemption"); the row does not keep it.
        data["preempt"] = preempt
    return data
