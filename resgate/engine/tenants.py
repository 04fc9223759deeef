"""Tenants: add, list, update, remove."""

from __future__ import annotations

from sqlalchemy import select

from resgate.engine import audit, members
from resgate.engine.pardon import pardon
from resgate.engine.pools import release_all
from resgate.engine.queries import (
    booked_phrase,
    by_name,
    live_tenant,
    lock_rows,
    reservation_infos,
)
from resgate.engine.quotas import held_by, limits_of
from resgate.engine.records import Amounts, Limits, Removal, TenantInfo
from resgate.engine.sweep import sweep
from resgate.engine.validation import (
    FIELD_NAMES,
    Spelling,
    check_limits,
    check_members,
    check_name,
    check_priority,
    check_tenant_change,
)
from resgate.errors import Hint, Refused
from resgate.limits import DEFAULT_PRIORITY
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant


def _info(
    tenant: Tenant,
    held: tuple[int, Amounts] = (0, Amounts()),
    users: tuple[str, ...] | list[str] = (),
) -> TenantInfo:
    return TenantInfo(
        name=tenant.name,
        priority=tenant.priority,
        active_reservations=held[0],
        created_at=tenant.created_at,
        max=limits_of(tenant),
        held=held[1],
        members=tuple(users),
    )


def tenant_info(tx: Tx, tenant: Tenant) -> TenantInfo:
    held = held_by(tx, [tenant.id]).get(tenant.id, (0, Amounts()))
    return _info(tenant, held, members.members(tx, tenant.id))


def add_tenant(
    tx: Tx,
    name: str,
    priority: int = DEFAULT_PRIORITY,
    limits: Limits | None = None,
    users: tuple[str, ...] = (),
) -> TenantInfo:
    """A new tenant; `users` are its members (none: anyone may act for it)."""
    limits = limits or Limits()
    check_name("tenant", name)
    check_priority(priority)
    check_limits(limits)
    users = check_members(users)
    sweep(tx)
    exists = tx.session.scalar(
        select(Tenant.id).where(Tenant.name == name, Tenant.deleted_at.is_(None))
    )
    if exists is not None:
        raise Refused(f"tenant '{name}' already exists", Hint("exists", "tenant", name))
    tenant = Tenant(
        name=name,
        priority=priority,
        created_at=tx.now,
        max_cpu=limits.cpu,
        max_memory=limits.memory,
        max_gpu=limits.gpu,
    )
    tx.session.add(tenant)
    tx.session.flush()
    members.set_members(tx, tenant.id, users)
    data: dict[str, object] = {"priority": priority, "max": limits._asdict()}
    if users:  # tenants without members keep the event's earlier shape
        data["members"] = list(users)
    audit.record(tx, [audit.Change("tenant.add", name, data)])
    return _info(tenant, users=users)


def list_tenants(tx: Tx) -> list[TenantInfo]:
    tenants = tx.session.scalars(
        select(Tenant)
        .where(Tenant.deleted_at.is_(None))
        .order_by(Tenant.priority.desc(), by_name(tx, Tenant.name))
    ).all()
    held = held_by(tx)
    users = members.members_by_tenant(tx)
    return [
        _info(tenant, held.get(tenant.id, (0, Amounts())), users.get(tenant.id, ()))
        for tenant in tenants
    ]


def update_tenant(
    tx: Tx,
    name: str,
    priority: int | None = None,
    caps: dict[str, int | None] | None = None,
    users: tuple[str, ...] | None = None,
) -> TenantInfo:
    """Change priority, caps and members. `caps` maps a resource to its new cap
    (None removes it); resources not in it keep theirs. Lowering a cap below what
    is held is allowed: it only stops new reservations. `users` replaces the
    members (() clears them; None keeps them)."""
    caps = caps or {}
    check_tenant_change(priority, caps, has_members=users is not None)
    users = None if users is None else check_members(users)
    tenant = live_tenant(tx, name)
    lock_rows(tx, Tenant, [tenant.id])
    sweep(tx)
    old: dict[str, object] = {"priority": tenant.priority, "max": limits_of(tenant)._asdict()}
    if users is not None:
        old["members"] = list(members.members(tx, tenant.id))
        members.set_members(tx, tenant.id, users)
    if priority is not None:
        tenant.priority = priority
    for resource, cap in caps.items():
        setattr(tenant, f"max_{resource}", cap)
    tx.session.flush()
    new: dict[str, object] = {"priority": tenant.priority, "max": limits_of(tenant)._asdict()}
    if users is not None:
        new["members"] = list(users)
    audit.record(tx, [audit.Change("tenant.update", name, {"old": old, "new": new})])
    return tenant_info(tx, tenant)


def remove_tenant(
    tx: Tx, name: str, force: bool = False, spelled: Spelling = FIELD_NAMES
) -> TenantInfo:
    return remove_tenant_and_report(tx, name, force, spelled).removed


def remove_tenant_and_report(
    tx: Tx, name: str, force: bool = False, spelled: Spelling = FIELD_NAMES
) -> Removal[TenantInfo]:
    """Remove a tenant; with `force`, release its active reservations first (listed)."""
    tenant = live_tenant(tx, name)
    pool_ids = tx.session.scalars(
        select(Reservation.pool_id).where(
            Reservation.tenant_id == tenant.id, Reservation.status == "active"
        )
    ).all()
    lock_rows(tx, Pool, pool_ids)
    lock_rows(tx, Tenant, [tenant.id])
    sweep(tx)
    # Upcoming bookings count too (README "Booking ahead"): --force cancels them.
    booked = booked_phrase(tx, Reservation.tenant_id == tenant.id)
    if booked and not force:
        raise Refused(
            f"tenant '{name}' has {booked}; release them first or use "
            f"{spelled.get('force', 'force')}"
        )
    released = release_all(tx, Reservation.tenant_id == tenant.id, reason="tenant.remove")
    tenant.deleted_at = tx.now
    tx.session.flush()
    audit.record(tx, [audit.Change("tenant.remove", name, {"force": force, "released": released})])
    pardon(tx, released)  # its bookings' victims get back what still fits
    return Removal(_info(tenant), reservation_infos(tx, released))
