"""Reservations: reserve, unreserve, extend, preempt, list."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from resgate.clock import iso
from resgate.engine import audit, devices, evictions, members, policies
from resgate.engine.preemption import Candidate
from resgate.engine.queries import (
    ACTIVE,
    PoolRow,
    TenantRow,
    by_name,
    insertion_order,
    is_active_now,
    lock_reservation,
    lock_rows,
    pool_row,
    pool_usage,
    reservation_info,
    reservation_infos,
    tenant_row,
)
from resgate.engine.quotas import check_quota
from resgate.engine.records import (
    Amounts,
    Caller,
    PreemptResult,
    ReservationInfo,
    ReserveResult,
    Victim,
)
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_reservation_id,
    check_reservation_request,
    check_ttl,
)
from resgate.errors import Hint, InsufficientResources, InvalidInput, NotFound, Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Event, Pool, Reservation, Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row


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
    replay = _replay(tx, request, tenant, pool, ttl)
    if replay is not None:
        return replay
    lock_rows(tx, Pool, [pool.id])
    lock_rows(tx, Tenant, [tenant.id])
    # Again under the locks: a concurrent twin may have committed meanwhile.
    replay = _replay(tx, request, tenant, pool, ttl)
    if replay is not None:
        return replay
    sweep(tx)
    if not request.lease:
        policies.check_length(pool, tx.now, _ends(tx.now, ttl))
    policies.check_per_tenant(tx, tenant, pool)
    check_quota(tx, tenant, request.amounts)
    reservation_id = new_id()
    victims = _make_room(tx, request, tenant, pool, requested_ids, reservation_id)
    # Who is acting, once: the same actor the reservation.create event records.
    values = _row(tx, request, tenant, pool, reservation_id, audit.actor())
    if not _insert_row(tx, request, values):
        # Only a concurrent twin can get here (the checks above ran under the
        # locks); the database's constraints are the last line of defence.
        replay = _replay(tx, request, tenant, pool, ttl)
        if replay is not None:
            return replay
        policies.check_per_tenant(tx, tenant, pool)
        raise Refused(f"pool '{pool.name}' refused the reservation")
    held_ids: list[int] = []
    if request.amounts.gpu or requested_ids is not None:
        held_ids = devices.assign(
            tx, pool.name, pool.id, reservation_id, request.amounts.gpu, requested_ids
        )
    created = ReservationInfo(
        id=reservation_id,
        tenant=tenant.name,
        pool=pool.name,
        amounts=request.amounts,
        ttl=ttl,
        status="active",
        created_at=tx.now,
        expires_at=values["expires_at"],
        ended_at=None,
        preempted_by=None,
        preempted_for=None,
        request_id=request.request_id,
        gpu_ids=tuple(held_ids),
        created_by=values["created_by"],
    )
    data = _created_data(created, request.preempt)
    audit.record(tx, [audit.Change("reservation.create", created.id, data)])
    return ReserveResult(created, victims, tx.now)


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
        "expires_at": _ends(tx.now, ttl),
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


_reservations: Table = Reservation.__table__  # type: ignore[assignment]


@cache
def _insert() -> Any:
    return insert(_reservations)


@cache
def _release() -> Any:
    return (
        update(_reservations)
        .where(_reservations.c.id == bindparam("rid"))
        .values(status="released", ended_at=bindparam("now"))
    )


@cache
def _set_expiry_statement() -> Any:
    return (
        update(_reservations)
        .where(_reservations.c.id == bindparam("rid"))
        .values(ttl=bindparam("ttl"), expires_at=bindparam("expires_at"))
    )


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


def _asked(tx: Tx, reservation_id: str) -> dict[str, Any]:
    """What the request that made it asked for, as its reservation.create event
    says (an extend changes the row's ttl, and the row keeps no --preempt);
    empty if no event says (made before the log, or the event was edited)."""
    data = tx.session.scalar(
        select(Event.data)
        .where(Event.action == "reservation.create", Event.subject == reservation_id)
        .limit(1)
    )
    try:
        asked = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return asked if isinstance(asked, dict) else {}


def _replay(
    tx: Tx, request: ReserveRequest, tenant: TenantRow, pool: PoolRow, ttl: int | None
) -> ReserveResult | None:
    """README "Preemption": the same request under a known key gets the same reservation,
    as it is now; a different request under that key is refused."""
    if request.request_id is None:
        return None
    existing = tx.session.scalars(
        select(Reservation).where(Reservation.request_id == request.request_id)
    ).one_or_none()
    if existing is None:
        return None
    asked = _asked(tx, existing.id)
    same = (
        existing.tenant_id == tenant.id
        and existing.pool_id == pool.id
        and Amounts(existing.cpu, existing.memory, existing.gpu) == request.amounts
        and asked.get("ttl", existing.ttl) == ttl
        and asked.get("preempt", request.preempt) == request.preempt
    )
    if not same:
        raise Refused(
            f"request id '{request.request_id}' was already used for a different request "
            f"(reservation '{existing.id}')"
        )
    victims = tx.session.execute(
        select(Reservation.id, Tenant.priority)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(Reservation.preempted_for == existing.id)
    ).all()
    priorities = {row.id: row.priority for row in victims}
    infos = reservation_infos(tx, list(priorities))
    return ReserveResult(
        reservation_info(tx, existing.id), [Victim(i, priorities[i.id]) for i in infos], tx.now
    )


@cache
def _by_id() -> Any:
    return select(_reservations).where(_reservations.c.id == bindparam("id"))


def _find(tx: Tx, reservation_id: str) -> Row[Any]:
    """The stored row, read as Core (the ORM's get cost several times the query
    on unreserve's path: benchmarks/, cycles). A prefix names the one reservation
    it starts (resolve_id)."""
    rid = resolve_id(tx, reservation_id)
    row = tx.connection.execute(_by_id(), {"id": rid}).first()
    if row is None:
        raise NotFound(f"reservation '{reservation_id}' not found")
    return row


AMBIGUOUS_SHOWN = 5


def resolve_id(tx: Tx, given: str) -> str:
    """The id that `given` (an id, or a prefix of 4 or more hex digits, any case)
    names: among active reservations first, then among all. Several: NotFound
    naming up to five; none: the id as given, for the caller's not-found."""
    rid = check_reservation_id(given)
    if len(rid) == 16:
        return rid
    column = by_name(tx, _reservations.c.id)
    # A range on the primary key: ids are lowercase hex, all below 'g'.
    starts = [column >= rid, column < rid + "g"]
    for scope in ([*starts, _reservations.c.status == ACTIVE], starts):
        found = list(
            tx.connection.execute(
                select(_reservations.c.id).where(*scope).order_by(column).limit(AMBIGUOUS_SHOWN + 1)
            ).scalars()
        )
        if len(found) == 1:
            return str(found[0])
        if found:
            shown = ", ".join(_told_apart(found[:AMBIGUOUS_SHOWN]))
            more = ", …" if len(found) > AMBIGUOUS_SHOWN else ""
            raise NotFound(f"reservation prefix '{given}' is ambiguous: {shown}{more}")
    return rid


def _told_apart(ids: list[str]) -> list[str]:
    """Short ids (8 hex digits and `…`), longer where 8 do not tell them apart."""
    length = 8
    while length < 16 and len({rid[:length] for rid in ids}) < len(ids):
        length += 1
    return [rid if length == 16 else f"{rid[:length]}…" for rid in ids]


def _require_active(tx: Tx, reservation_id: str, caller: Caller | None = None) -> Row[Any]:
    """The reservation, locked and swept; refused unless the caller may act for
    its tenant and it is effective-active."""
    reservation = _find(tx, reservation_id)
    if caller is not None and not caller.admin:
        members.check_may_act(tx, _tenant_by_id(tx, reservation.tenant_id), caller)
    lock_rows(tx, Pool, [reservation.pool_id])
    lock_rows(tx, Tenant, [reservation.tenant_id])
    lock_reservation(tx, reservation.id)
    expired = sweep(tx)
    # SQLite: the row was read under this writer's lock, so only the sweep can
    # have changed it. PostgreSQL: re-read it under the row lock just taken.
    if tx.is_postgres or reservation.id in expired:
        reservation = _find(tx, reservation.id)
    if reservation.status != "active":
        raise Refused(
            f"reservation '{reservation.id}' is not active (status: {reservation.status})"
        )
    return reservation


def unreserve_many(
    tx: Tx, reservation_ids: list[str], caller: Caller | None = None
) -> list[ReservationInfo]:
    """Release each, in order, in this one transaction: all or, if one is refused,
    none. An id given twice (or two prefixes of one) releases it once."""
    released: list[ReservationInfo] = []
    seen: set[str] = set()
    for given in reservation_ids:
        rid = resolve_id(tx, given)
        if rid not in seen:
            seen.add(rid)
            released.append(unreserve(tx, given, caller))
    return released


def unreserve(tx: Tx, reservation_id: str, caller: Caller | None = None) -> ReservationInfo:
    reservation = _require_active(tx, reservation_id, caller)
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
        update(_reservations)
        .where(_reservations.c.id == reservation_id, _reservations.c.runner.is_not(None))
        .values(runner=None)
    )


def runners(tx: Tx, reservation_ids: list[str]) -> dict[str, str]:
    """The runner of each reservation that still has one."""
    rows = tx.connection.execute(
        select(_reservations.c.id, _reservations.c.runner).where(
            _reservations.c.id.in_(reservation_ids), _reservations.c.runner.is_not(None)
        )
    )
    return {rid: runner for rid, runner in rows}


def extend(
    tx: Tx, reservation_id: str, ttl: int | None, caller: Caller | None = None
) -> ReservationInfo:
    """`expires_at = now + ttl`; a ttl of 0 or None removes the expiry."""
    return extend_and_report(tx, reservation_id, Extension(ttl=ttl), caller).reservation


def renew(tx: Tx, reservation_id: str, ttl: int) -> ReservationInfo:
    """A lease renewal by `resgate run`: extend, logged as `reservation.renew`."""
    lease = check_ttl(ttl)
    return _set_expiry(tx, reservation_id, lambda _: _ends(tx.now, lease), "reservation.renew")


@dataclass(frozen=True)
class Extension:
    """How `extend` moves the end: `ttl` from now (0: no end), `by` seconds past the
    current end, or `until` an instant (README "Typing less"). Exactly one is set."""

    ttl: int | None = None
    by: int | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ExtendResult:
    reservation: ReservationInfo
    before: datetime | None  # the end it had
    now: datetime


def extend_and_report(
    tx: Tx,
    reservation_id: str,
    change: Extension,
    caller: Caller | None = None,
    spelled: Spelling = FIELD_NAMES,
) -> ExtendResult:
    """Move a reservation's end; what it was before, and the transaction's now."""
    before: list[datetime | None] = []

    def end(row: Row[Any]) -> datetime | None:
        before.append(row.expires_at)
        if change.by is not None:
            if row.expires_at is None:
                raise Refused(
                    f"reservation '{row.id}' has no end to extend: use "
                    f"{spelled.get('ttl', 'ttl')} or {spelled.get('until', 'until')}"
                )
            moved: datetime = row.expires_at + timedelta(seconds=change.by)
            return moved
        if change.until is not None:
            if change.until <= tx.now:
                raise InvalidInput(f"the new end {iso(change.until)} is not after now")
            return change.until
        return _ends(tx.now, check_ttl(change.ttl))

    info = _set_expiry(tx, reservation_id, end, "reservation.extend", True, caller)
    return ExtendResult(info, before[0], tx.now)


def _set_expiry(
    tx: Tx,
    reservation_id: str,
    end: Callable[[Row[Any]], datetime | None],
    action: str,
    bounded: bool = False,
    caller: Caller | None = None,
) -> ReservationInfo:
    """`end(row)`: the new expiry. bounded: the pool's maximum TTL applies (an
    extend; never a lease's renewal)."""
    reservation = _require_active(tx, reservation_id, caller)
    old = {"ttl": reservation.ttl, "expires_at": _iso(reservation.expires_at)}
    expires_at = end(reservation)
    # The stored ttl stays "seconds from the last change to the end" (docs/schema.md).
    ttl = None if expires_at is None else max(1, math.ceil((expires_at - tx.now).total_seconds()))
    if bounded:
        pool = tx.connection.execute(_pool_by_id(), {"id": reservation.pool_id}).one()
        policies.check_length(pool, reservation.created_at, expires_at)
    tx.connection.execute(
        _set_expiry_statement(), {"rid": reservation.id, "ttl": ttl, "expires_at": expires_at}
    )
    new = {"ttl": ttl, "expires_at": _iso(expires_at)}
    audit.record(tx, [audit.Change(action, reservation.id, {"old": old, "new": new})])
    return reservation_info(tx, reservation.id)


def _ends(now: datetime, ttl: int | None) -> datetime | None:
    return now + timedelta(seconds=ttl) if ttl else None


def _tenant_by_id(tx: Tx, tenant_id: int) -> Row[Any]:
    tenants: Table = Tenant.__table__  # type: ignore[assignment]
    return tx.connection.execute(select(tenants).where(tenants.c.id == tenant_id)).one()


@cache
def _pool_by_id() -> Any:
    pools: Table = Pool.__table__  # type: ignore[assignment]
    return select(pools).where(pools.c.id == bindparam("id"))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def preempt(
    tx: Tx,
    preemptor: str,
    target: str,
    pool_name: str | None = None,
    caller: Caller | None = None,
) -> PreemptResult:
    attacker = tenant_row(tx, preemptor)
    victim = tenant_row(tx, target)
    pool = pool_row(tx, pool_name) if pool_name is not None else None
    members.check_may_act(tx, attacker, caller)
    if attacker.priority <= victim.priority:
        raise Refused(
            f"cannot preempt: '{attacker.name}' (priority {attacker.priority}) must outrank "
            f"'{victim.name}' (priority {victim.priority})"
        )
    scope = [Reservation.tenant_id == victim.id, Reservation.status == ACTIVE]
    if pool is not None:
        scope.append(Reservation.pool_id == pool.id)
    pool_ids = tx.session.scalars(select(Reservation.pool_id).where(*scope)).all()
    lock_rows(tx, Pool, pool_ids)
    lock_rows(tx, Tenant, [attacker.id, victim.id])
    sweep(tx)
    ids = tx.session.scalars(
        select(Reservation.id).where(*scope).order_by(*insertion_order(tx))
    ).all()
    if not ids:
        where = f" in pool '{pool.name}'" if pool is not None else ""
        raise NotFound(f"tenant '{victim.name}' has no active reservations to preempt{where}")
    evictions.mark_preempted(tx, ids, attacker.name)
    devices.free(tx, list(ids))
    preempted = reservation_infos(tx, list(ids))
    evictions.log_preempted(tx, preempted, attacker.name)
    return PreemptResult(target=victim.name, preempted=preempted)
