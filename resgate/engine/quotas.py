"""Per-tenant quotas (README "Quotas"): caps on what a tenant holds across all pools."""

from __future__ import annotations

from sqlalchemy import select

from resgate.engine.queries import TenantRow, usage_sums
from resgate.engine.records import Amounts, Limits
from resgate.engine.windows import Window, bounds, overlaps, peak, plan_end
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


def check_quota(tx: Tx, tenant: TenantRow, request: Amounts, window: Window) -> None:
    """Refuse (exit 4) a request that would take the tenant over a cap at some
    instant of `window`. Only the resources asked for are checked, in the order cpu,
    memory, gpu."""
    limits = limits_of(tenant)
    if all(cap is None for cap in limits):
        return
    rows = tx.connection.execute(
        select(
            Reservation.starts_at,
            plan_end(),
            Reservation.cpu,
            Reservation.memory,
            Reservation.gpu,
        ).where(Reservation.tenant_id == tenant.id, overlaps(window)),
        bounds(window),
    ).all()
    held = peak([(start, end, Amounts(c, m, g)) for start, end, c, m, g in rows], window)
    for resource, cap, have, want in zip(RESOURCES, limits, held, request, strict=True):
        if want > 0 and cap is not None and have + want > cap:
            raise Refused(
                f"quota exceeded for tenant '{tenant.name}': "
                f"{resource} {have} held + {want} requested > {cap}"
            )
