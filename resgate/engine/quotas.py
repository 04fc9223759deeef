"""Per-tenant quotas (README "Quotas"): caps on what a tenant holds across all pools."""

from __future__ import annotations

from resgate.engine.queries import TenantRow, usage_sums
from resgate.engine.records import Amounts, Limits
from resgate.errors import Refused
from resgate.limits import RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Reservation


def limits_of(tenant: TenantRow) -> Limits:
    return Limits(tenant.max_cpu, tenant.max_memory, tenant.max_gpu)


def held_by(tx: Tx, tenant_ids: list[int] | None = None) -> dict[int, tuple[int, Amounts]]:
    """Per tenant: the number of effective-active reservations and what they hold."""
    query = usage_sums(tx.now, Reservation.tenant_id, count=True)
    if tenant_ids is not None:
        query = query.where(Reservation.tenant_id.in_(tenant_ids))
    return {
        tenant_id: (int(count), Amounts(int(cpu), int(memory), int(gpu)))
        for tenant_id, count, cpu, memory, gpu in tx.session.execute(query)
    }


def check_quota(tx: Tx, tenant: TenantRow, request: Amounts) -> None:
    """Refuse (exit 4) a request that would take the tenant over a cap. Only the
    resources asked for are checked, in the order cpu, memory, gpu."""
    limits = limits_of(tenant)
    if all(cap is None for cap in limits):
        return
    held = held_by(tx, [tenant.id]).get(tenant.id, (0, Amounts()))[1]
    for resource, cap, have, want in zip(RESOURCES, limits, held, request, strict=True):
        if want > 0 and cap is not None and have + want > cap:
            raise Refused(
                f"quota exceeded for tenant '{tenant.name}': "
                f"{resource} {have} held + {want} requested > {cap}"
            )
