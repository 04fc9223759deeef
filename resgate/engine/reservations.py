"""Reservations: reserve, unreserve, extend, preempt, list."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from resgate.engine.errors import InsufficientResources, InvalidInput, NotFound, Refused
from resgate.engine.queries import (
    ACTIVE,
    insertion_order,
    is_active_now,
    live_pool,
    live_tenant,
    lock_reservation,
    lock_rows,
    pool_usage,
    reservation_info,
    reservation_infos,
    reservations_query,
    to_info,
)
from resgate.engine.quotas import check_quota
from resgate.engine.records import Amounts, PreemptResult, ReservationInfo
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    check_amounts,
    check_reservation_id,
    check_ttl,
)
from resgate.store.database import Tx
from resgate.store.models import STATUSES, Pool, Reservation, Tenant


@dataclass(frozen=True)
class ReserveRequest:
    tenant: str
    pool: str
    amounts: Amounts
    ttl: int | None = None  # seconds; None or 0: no expiry
    request_id: str | None = None


def new_id() -> str:
    return secrets.token_hex(8)


def reserve(tx: Tx, request: ReserveRequest) -> ReservationInfo:
    check_amounts(request.amounts)
    if request.amounts.is_zero():
        raise InvalidInput("a reservation needs at least one of --cpu, --memory, --gpu above 0")
    ttl = check_ttl(request.ttl)
    tenant = live_tenant(tx, request.tenant)
    pool = live_pool(tx, request.pool)
    if request.request_id is not None:
        replay = _replay(tx, request, tenant, pool, ttl)
        if replay is not None:
            return replay
    lock_rows(tx, Pool, [pool.id])
    lock_rows(tx, Tenant, [tenant.id])
    sweep(tx)

    held = tx.session.scalar(
        select(Reservation.id).where(
            Reservation.tenant_id == tenant.id,
            Reservation.pool_id == pool.id,
            Reservation.status == ACTIVE,
        )
    )
    if held is not None:
        raise Refused(
            f"tenant '{tenant.name}' already has active reservation '{held}' in pool '{pool.name}'"
        )
    check_quota(tx, tenant, request.amounts)
    total = Amounts(pool.cpu, pool.memory, pool.gpu)
    available = total - pool_usage(tx, [pool.id]).get(pool.id, Amounts())
    if not request.amounts.fits_in(available):
        need = request.amounts
        raise InsufficientResources(
            f"insufficient resources in '{pool.name}': "
            f"need cpu={need.cpu} mem={need.memory} gpu={need.gpu}, "
            f"available cpu={available.cpu} mem={available.memory} gpu={available.gpu}"
        )
    reservation = Reservation(
        id=new_id(),
        tenant_id=tenant.id,
        pool_id=pool.id,
        cpu=request.amounts.cpu,
        memory=request.amounts.memory,
        gpu=request.amounts.gpu,
        ttl=ttl,
        status="active",
        created_at=tx.now,
        expires_at=tx.now + timedelta(seconds=ttl) if ttl else None,
        request_id=request.request_id,
    )
    tx.session.add(reservation)
    try:
        with tx.session.begin_nested():
            tx.session.flush()
    except IntegrityError:
        # Only a concurrent twin can get here (the checks above ran under the
        # locks); the database's constraints are the last line of defence.
        if request.request_id is not None:
            replay = _replay(tx, request, tenant, pool, ttl)
            if replay is not None:
                return replay
        raise Refused(
            f"tenant '{tenant.name}' already has an active reservation in pool '{pool.name}'"
        ) from None
    return _fresh(tx, reservation, tenant.name, pool.name)


def _fresh(tx: Tx, row: Reservation, tenant: str, pool: str) -> ReservationInfo:
    return ReservationInfo(
        id=row.id,
        tenant=tenant,
        pool=pool,
        amounts=Amounts(row.cpu, row.memory, row.gpu),
        ttl=row.ttl,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        preempted_by=row.preempted_by,
        preempted_for=row.preempted_for,
        request_id=row.request_id,
    )


def _replay(
    tx: Tx, request: ReserveRequest, tenant: Tenant, pool: Pool, ttl: int | None
) -> ReservationInfo | None:
    """SPEC §11.3: the same request under a known key gets the same reservation."""
    existing = tx.session.scalars(
        select(Reservation).where(Reservation.request_id == request.request_id)
    ).one_or_none()
    if existing is None:
        return None
    same = (
        existing.tenant_id == tenant.id
        and existing.pool_id == pool.id
        and Amounts(existing.cpu, existing.memory, existing.gpu) == request.amounts
        and existing.ttl == ttl
    )
    if not same:
        raise Refused(
            f"request id '{request.request_id}' was already used for a different request "
            f"(reservation '{existing.id}')"
        )
    return reservation_info(tx, existing.id)


def _find(tx: Tx, reservation_id: str) -> Reservation:
    check_reservation_id(reservation_id)
    reservation = tx.session.get(Reservation, reservation_id)
    if reservation is None:
        raise NotFound(f"reservation '{reservation_id}' not found")
    return reservation


def _require_active(tx: Tx, reservation: Reservation) -> None:
    lock_rows(tx, Pool, [reservation.pool_id])
    lock_rows(tx, Tenant, [reservation.tenant_id])
    lock_reservation(tx, reservation.id)
    sweep(tx)
    tx.session.refresh(reservation)
    if reservation.status != "active":
        raise Refused(
            f"reservation '{reservation.id}' is not active (status: {reservation.status})"
        )


def unreserve(tx: Tx, reservation_id: str) -> ReservationInfo:
    reservation = _find(tx, reservation_id)
    _require_active(tx, reservation)
    reservation.status = "released"
    reservation.ended_at = tx.now
    tx.session.flush()
    return reservation_info(tx, reservation.id)


def extend(tx: Tx, reservation_id: str, ttl: int | None) -> ReservationInfo:
    """`expires_at = now + ttl`; a ttl of 0 or None removes the expiry."""
    ttl = check_ttl(ttl)
    reservation = _find(tx, reservation_id)
    _require_active(tx, reservation)
    reservation.ttl = ttl
    reservation.expires_at = tx.now + timedelta(seconds=ttl) if ttl else None
    tx.session.flush()
    return reservation_info(tx, reservation.id)


def preempt(tx: Tx, preemptor: str, target: str, pool_name: str | None = None) -> PreemptResult:
    attacker = live_tenant(tx, preemptor)
    victim = live_tenant(tx, target)
    pool = live_pool(tx, pool_name) if pool_name is not None else None
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
    tx.session.execute(
        update(Reservation)
        .where(Reservation.id.in_(ids))
        .values(status="preempted", ended_at=tx.now, preempted_by=attacker.name)
        .execution_options(synchronize_session=False)
    )
    return PreemptResult(target=victim.name, preempted=reservation_infos(tx, list(ids)))


def list_reservations(
    tx: Tx,
    *,
    include_ended: bool = False,
    tenant: str | None = None,
    pool: str | None = None,
    status: str | None = None,
) -> list[ReservationInfo]:
    """Active reservations (all of them with include_ended), by creation.
    Tenant and pool filters match by name, deleted rows included."""
    query = reservations_query(tx.now)
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
        include_ended = True
    if tenant is not None:
        ids = tx.session.scalars(select(Tenant.id).where(Tenant.name == tenant)).all()
        if not ids:
            raise NotFound(f"tenant '{tenant}' not found")
        query = query.where(Reservation.tenant_id.in_(ids))
    if pool is not None:
        ids = tx.session.scalars(select(Pool.id).where(Pool.name == pool)).all()
        if not ids:
            raise NotFound(f"pool '{pool}' not found")
        query = query.where(Reservation.pool_id.in_(ids))
    if not include_ended:
        query = query.where(is_active_now(tx.now))
    elif status is not None:
        from resgate.engine.queries import effective_status

        query = query.where(effective_status(tx.now) == status)
    rows = tx.session.execute(query.order_by(*insertion_order(tx)))
    return [to_info(row) for row in rows]


def count_active(tx: Tx) -> int:
    return int(tx.session.scalar(select(func.count()).where(is_active_now(tx.now))) or 0)
