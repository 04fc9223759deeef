"""A request id seen again (README "Preemption"): the same request gets the same
reservation, as it is now; a different request under that key is refused."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from resgate.engine.queries import (
    PoolRow,
    TenantRow,
    reservation_info,
    reservation_infos,
)
from resgate.engine.records import (
    Amounts,
    ReserveResult,
    Victim,
)
from resgate.errors import Refused
from resgate.store.database import Tx
from resgate.store.models import Event, Reservation, Tenant

if TYPE_CHECKING:
    from resgate.engine.reservations import ReserveRequest

    pass


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


def replay(
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
