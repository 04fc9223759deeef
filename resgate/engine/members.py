"""Tenants and their members (README "Sharing one machine"): who may act for a
tenant, and the tenant and pool a command means when it names none."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from resgate.engine.queries import TenantRow, by_name
from resgate.engine.records import Caller
from resgate.engine.validation import FIELD_NAMES, Spelling
from resgate.errors import InvalidInput, Refused
from resgate.store.database import Tx
from resgate.store.models import Pool, Tenant, TenantMember


@cache
def _members_of() -> Any:
    return (
        select(TenantMember.user_name)
        .where(TenantMember.tenant_id == bindparam("tenant_id"))
        .order_by(TenantMember.user_name)
    )


def members(tx: Tx, tenant_id: int) -> tuple[str, ...]:
    return tuple(tx.connection.execute(_members_of(), {"tenant_id": tenant_id}).scalars())


def members_by_tenant(tx: Tx, tenant_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    query = select(TenantMember.tenant_id, TenantMember.user_name).order_by(
        TenantMember.tenant_id, by_name(tx, TenantMember.user_name)
    )
    if tenant_ids is not None:
        query = query.where(TenantMember.tenant_id.in_(list(tenant_ids)))
    found: dict[int, list[str]] = {}
    for tenant_id, user in tx.session.execute(query):
        found.setdefault(tenant_id, []).append(user)
    return found


def set_members(tx: Tx, tenant_id: int, names: tuple[str, ...]) -> None:
    tx.session.execute(delete(TenantMember).where(TenantMember.tenant_id == tenant_id))
    if names:
        tx.session.execute(
            insert(TenantMember), [{"tenant_id": tenant_id, "user_name": n} for n in names]
        )


def check_may_act(tx: Tx, tenant: TenantRow, caller: Caller | None) -> None:
    """A tenant with members may be acted for only by them and by admins; one
    without, by anyone. No caller: a call from inside resgate, not a user's."""
    if caller is None or caller.admin:
        return
    allowed = members(tx, tenant.id)
    if allowed and caller.user not in allowed:
        raise Refused(f"user '{caller.user}' is not a member of tenant '{tenant.name}'")


def default_tenant(tx: Tx, caller: Caller | None, spelled: Spelling = FIELD_NAMES) -> str:
    """The one live tenant whose members include the caller (the `tenant`
    setting, which comes first, is the CLI's to apply)."""
    mine: list[str] = []
    if caller is not None:
        mine = list(
            tx.session.scalars(
                select(Tenant.name)
                .join(TenantMember, TenantMember.tenant_id == Tenant.id)
                .where(TenantMember.user_name == caller.user, Tenant.deleted_at.is_(None))
                .order_by(by_name(tx, Tenant.name))
            )
        )
    if len(mine) == 1:
        return mine[0]
    where = f"you are a member of: {', '.join(mine)}" if mine else "you are a member of no tenant"
    raise InvalidInput(f"no tenant given: use {spelled.get('tenant', 'tenant')} ({where})")


def default_pool(tx: Tx, spelled: Spelling = FIELD_NAMES) -> str:
    """The only live pool (the `pool` setting comes first, in the CLI)."""
    names = list(
        tx.session.scalars(
            select(Pool.name).where(Pool.deleted_at.is_(None)).order_by(by_name(tx, Pool.name))
        )
    )
    if len(names) == 1:
        return names[0]
    listed = ", ".join(names) if names else "none yet"
    raise InvalidInput(f"no pool given: use {spelled.get('pool', 'pool')} (pools: {listed})")
