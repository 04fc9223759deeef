"""Tenants: add, list, update, remove."""

from __future__ import annotations

from sqlalchemy import func, select

from resgate.engine.errors import InvalidInput, Refused
from resgate.engine.pools import release_all
from resgate.engine.queries import by_name, is_active_now, live_tenant, lock_rows
from resgate.engine.records import TenantInfo
from resgate.engine.sweep import sweep
from resgate.engine.validation import check_name, check_priority
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant

DEFAULT_PRIORITY = 5


def _active_counts(tx: Tx, tenant_ids: list[int] | None = None) -> dict[int, int]:
    query = (
        select(Reservation.tenant_id, func.count())
        .where(is_active_now(tx.now))
        .group_by(Reservation.tenant_id)
    )
    if tenant_ids is not None:
        query = query.where(Reservation.tenant_id.in_(tenant_ids))
    return {tenant_id: count for tenant_id, count in tx.session.execute(query)}


def _info(tenant: Tenant, active: int) -> TenantInfo:
    return TenantInfo(
        name=tenant.name,
        priority=tenant.priority,
        active_reservations=active,
        created_at=tenant.created_at,
    )


def tenant_info(tx: Tx, tenant: Tenant) -> TenantInfo:
    return _info(tenant, _active_counts(tx, [tenant.id]).get(tenant.id, 0))


def add_tenant(tx: Tx, name: str, priority: int = DEFAULT_PRIORITY) -> TenantInfo:
    check_name("tenant", name)
    check_priority(priority)
    exists = tx.session.scalar(
        select(Tenant.id).where(Tenant.name == name, Tenant.deleted_at.is_(None))
    )
    if exists is not None:
        raise Refused(f"tenant '{name}' already exists")
    tenant = Tenant(name=name, priority=priority, created_at=tx.now)
    tx.session.add(tenant)
    tx.session.flush()
    return _info(tenant, 0)


def list_tenants(tx: Tx) -> list[TenantInfo]:
    tenants = tx.session.scalars(
        select(Tenant)
        .where(Tenant.deleted_at.is_(None))
        .order_by(Tenant.priority.desc(), by_name(tx, Tenant.name))
    ).all()
    counts = _active_counts(tx)
    return [_info(tenant, counts.get(tenant.id, 0)) for tenant in tenants]


def update_tenant(tx: Tx, name: str, priority: int | None = None) -> TenantInfo:
    if priority is None:
        raise InvalidInput("give at least one of --priority, --max-cpu, --max-memory, --max-gpu")
    check_priority(priority)
    tenant = live_tenant(tx, name)
    lock_rows(tx, Tenant, [tenant.id])
    tenant.priority = priority
    tx.session.flush()
    return tenant_info(tx, tenant)


def remove_tenant(tx: Tx, name: str, force: bool = False) -> TenantInfo:
    tenant = live_tenant(tx, name)
    pool_ids = tx.session.scalars(
        select(Reservation.pool_id).where(
            Reservation.tenant_id == tenant.id, Reservation.status == "active"
        )
    ).all()
    lock_rows(tx, Pool, pool_ids)
    lock_rows(tx, Tenant, [tenant.id])
    sweep(tx)
    active = tx.session.scalar(
        select(func.count()).where(Reservation.tenant_id == tenant.id, is_active_now(tx.now))
    )
    if active and not force:
        raise Refused(
            f"tenant '{name}' has {active} active reservation(s); release them first or use --force"
        )
    release_all(tx, Reservation.tenant_id == tenant.id)
    tenant.deleted_at = tx.now
    tx.session.flush()
    return _info(tenant, 0)
