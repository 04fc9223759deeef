"""Pool policies (README "Pool policies"): how many reservations one tenant may
hold in a pool, and the default and maximum length of a reservation.

The database keeps the per-tenant limit too (trigger reservations_per_tenant_guard,
docs/schema.md); the check here is what gives the refusal its words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select

from resgate.clock import span
from resgate.engine.queries import PoolRow, TenantRow
from resgate.engine.windows import Window, bounds, most_at_once, overlap_clause, plan_end
from resgate.errors import InvalidInput, Refused
from resgate.limits import MAX_AMOUNT
from resgate.store.database import Tx
from resgate.store.models import Reservation

POLICY_FIELDS = ("per_tenant", "default_ttl", "max_ttl")


@dataclass(frozen=True)
class Policy:
    """A pool's policies: None means unlimited (per_tenant) or none (the TTLs)."""

    per_tenant: int | None = 1
    default_ttl: int | None = None
    max_ttl: int | None = None


DEFAULT_POLICY = Policy()


def policy_of(pool: PoolRow) -> Policy:
    return Policy(pool.per_tenant, pool.default_ttl, pool.max_ttl)


def check_policy_values(changes: dict[str, int | None]) -> None:
    """Ranges, and a default above the maximum when both are given (exit 2)."""
    for field, value in changes.items():
        if field not in POLICY_FIELDS:
            raise InvalidInput(f"unknown pool policy {field!r}")
        if value is not None and not 1 <= value <= MAX_AMOUNT:
            what = "a count" if field == "per_tenant" else "seconds"
            raise InvalidInput(f"{field} must be {what} between 1 and {MAX_AMOUNT}, got {value}")
    default, maximum = changes.get("default_ttl"), changes.get("max_ttl")
    if default is not None and maximum is not None and default > maximum:
        raise InvalidInput(
            f"the default TTL ({span(default)}) is above the maximum TTL ({span(maximum)})"
        )


def check_policy_order(name: str, policy: Policy) -> None:
    """A change that would put the default above the stored maximum (exit 4)."""
    if (
        policy.default_ttl is not None
        and policy.max_ttl is not None
        and policy.default_ttl > policy.max_ttl
    ):
        raise Refused(
            f"pool '{name}' would have a default TTL ({span(policy.default_ttl)}) "
            f"above its maximum ({span(policy.max_ttl)})"
        )


def default_ttl(pool: PoolRow, ttl: int | None) -> int | None:
    """A reservation's TTL: the one asked for, else the pool's default."""
    return ttl or pool.default_ttl


def check_length(pool: PoolRow, start: datetime, end: datetime | None) -> None:
    """The pool's maximum bounds a reservation's planned length; no end is too long."""
    maximum = pool.max_ttl
    if maximum is None:
        return
    if end is None or (end - start).total_seconds() > maximum:
        raise Refused(f"pool '{pool.name}' allows reservations of at most {span(maximum)}")


@cache
def _held_over(open_ended: bool) -> Any:
    """The tenant's reservations in the pool whose plans overlap the window; built
    once (benchmarks/, cycles)."""
    return select(Reservation.id, Reservation.starts_at, plan_end()).where(
        Reservation.tenant_id == bindparam("tenant_id"),
        Reservation.pool_id == bindparam("pool_id"),
        overlap_clause(open_ended),
    )


def check_per_tenant(tx: Tx, tenant: TenantRow, pool: PoolRow, window: Window) -> None:
    """At no instant of `window` may the tenant hold more reservations in the pool
    than its per-tenant limit. Run after the sweep, so every row counted is live."""
    allowed = pool.per_tenant
    if allowed is None:
        return
    rows = tx.connection.execute(
        _held_over(window.end is None),
        {"tenant_id": tenant.id, "pool_id": pool.id, **bounds(window)},
    ).all()
    # With the new one, at the instant the most of them overlap.
    plans = [(start, stop) for _, start, stop in rows] + [(window.start, window.end)]
    at_once = most_at_once(plans, window)
    if at_once <= allowed:
        return
    if allowed == 1 and at_once == 2:
        # One of them at a time is in the way: name the first.
        rid, starts_at, _ = min(rows, key=lambda row: (row[1], row[0]))
        which = "active reservation" if starts_at <= tx.now else "upcoming reservation"
        raise Refused(f"tenant '{tenant.name}' already has {which} '{rid}' in pool '{pool.name}'")
    raise Refused(
        f"tenant '{tenant.name}' already holds {at_once - 1} reservation(s) in pool "
        f"'{pool.name}' (the pool allows {allowed})"
    )
