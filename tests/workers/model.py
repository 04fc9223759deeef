"""A pure-Python model of resgate's rules (docs/schema.md, README "Using it") for
tests/test_model.py.

It imports nothing from resgate — only the standard library — so a bug in the
engine cannot leak into the model (test_model.py checks that). Commands return
plain values or raise `Fail(exit_code, message)` — the message where README "Using it"
fixes its wording, None where it does not; `Model.run` makes each command one
transaction: a failed command changes nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

START = datetime(2026, 3, 1, 9, 0, 0)


class Fail(Exception):
    """The model's refusal: an exit code, and the message where README "Using it" fixes it
    (None: any wording will do)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


@dataclass
class MPool:
    name: str
    total: tuple[int, int, int]
    deleted: bool = False


@dataclass
class MTenant:
    name: str
    priority: int
    deleted: bool = False
    # Quotas (README "Quotas"): per resource, None = no cap.
    caps: tuple[int | None, int | None, int | None] = (None, None, None)


@dataclass
class MRes:
    id: str
    tenant: MTenant
    pool: MPool
    amounts: tuple[int, int, int]
    ttl: int | None
    created_at: datetime
    expires_at: datetime | None
    status: str = "active"  # as written by an explicit end; expiry is derived
    ended_at: datetime | None = None
    preempted_by: str | None = None


def add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int]:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int]:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


@dataclass
class Model:
    now: datetime = START
    pools: list[MPool] = field(default_factory=list)
    tenants: list[MTenant] = field(default_factory=list)
    reservations: list[MRes] = field(default_factory=list)  # in creation order

    # ------------------------------------------------ derived state

    def effective(self, r: MRes) -> tuple[str, datetime | None]:
        """README "Using it": due means expired for every purpose, swept or not."""
        if r.status == "active" and r.expires_at is not None and r.expires_at <= self.now:
            return "expired", r.expires_at
        return r.status, r.ended_at

    def is_active(self, r: MRes) -> bool:
        return self.effective(r)[0] == "active"

    def used(self, pool: MPool) -> tuple[int, int, int]:
        total = (0, 0, 0)
        for r in self.reservations:
            if r.pool is pool and self.is_active(r):
                total = add(total, r.amounts)
        return total

    def live_pool(self, name: str) -> MPool:
        for p in self.pools:
            if p.name == name and not p.deleted:
                return p
        raise Fail(1, f"pool '{name}' not found")

    def live_tenant(self, name: str) -> MTenant:
        for t in self.tenants:
            if t.name == name and not t.deleted:
                return t
        raise Fail(1, f"tenant '{name}' not found")

    def find(self, rid: str) -> MRes:
        for r in self.reservations:
            if r.id == rid:
                return r
        raise Fail(1, f"reservation '{rid}' not found")

    def require_active(self, r: MRes) -> None:
        status, _ = self.effective(r)
        if status != "active":
            raise Fail(4, f"reservation '{r.id}' is not active (status: {status})")

    # ------------------------------------------------ commands

    def run(self, command: Any, *args: Any) -> Any:
        """README "Many processes at once": every command is one transaction; a failed
        command changes nothing."""
        saved = copy.deepcopy(self.__dict__)
        try:
            return command(*args)
        except Fail:
            self.__dict__.update(saved)
            raise

    def sweep(self) -> list[str]:
        """README "Using it": every mutating command first marks every due reservation expired,
        ended when it expired; `resgate sweep` does only that."""
        due = [r for r in self.reservations if r.status == "active" and not self.is_active(r)]
        for r in due:
            r.status, r.ended_at = "expired", r.expires_at
        return sorted(r.id for r in due)

    def create_pool(self, name: str, total: tuple[int, int, int]) -> tuple:
        self.sweep()
        if total == (0, 0, 0):
            raise Fail(2)
        if any(p.name == name and not p.deleted for p in self.pools):
            raise Fail(4, f"pool '{name}' already exists")
        self.pools.append(MPool(name, total))
        return (name, total, (0, 0, 0))

    def delete_pool(self, name: str, force: bool) -> tuple:
        self.sweep()
        pool = self.live_pool(name)
        held = [r for r in self.reservations if r.pool is pool and self.is_active(r)]
        if held and not force:
            raise Fail(4)
        for r in held:
            r.status, r.ended_at = "released", self.now
        pool.deleted = True
        return (name, pool.total, (0, 0, 0))

    def resize_pool(self, name: str, new: tuple[int | None, int | None, int | None]) -> tuple:
        self.sweep()
        if new == (None, None, None):
            raise Fail(2)
        if new == (0, 0, 0):
            raise Fail(2)
        pool = self.live_pool(name)
        total = tuple(
            old if value is None else value for old, value in zip(pool.total, new, strict=True)
        )
        if total == (0, 0, 0):
            raise Fail(4)
        used = self.used(pool)
        if any(want < have for want, have in zip(total, used, strict=True)):
            raise Fail(4)  # below what is reserved now
        pool.total = (total[0], total[1], total[2])
        return (name, pool.total, used)

    def add_tenant(self, name: str, priority: int) -> tuple:
        self.sweep()
        if any(t.name == name and not t.deleted for t in self.tenants):
            raise Fail(4, f"tenant '{name}' already exists")
        self.tenants.append(MTenant(name, priority))
        return (name, priority, 0)

    def update_tenant(self, name: str, priority: int) -> tuple:
        self.sweep()
        tenant = self.live_tenant(name)
        tenant.priority = priority
        return (name, priority, self.active_count(tenant))

    def set_cap(self, name: str, resource: int, cap: int | None) -> tuple:
        """README "Quotas": lowering a cap below what is held is allowed."""
        self.sweep()
        tenant = self.live_tenant(name)
        caps = list(tenant.caps)
        caps[resource] = cap
        tenant.caps = (caps[0], caps[1], caps[2])
        return (name, tenant.priority, self.active_count(tenant))

    def held(self, tenant: MTenant) -> tuple[int, int, int]:
        total = (0, 0, 0)
        for r in self.reservations:
            if r.tenant is tenant and self.is_active(r):
                total = add(total, r.amounts)
        return total

    def remove_tenant(self, name: str, force: bool) -> tuple:
        self.sweep()
        tenant = self.live_tenant(name)
        held = [r for r in self.reservations if r.tenant is tenant and self.is_active(r)]
        if held and not force:
            raise Fail(4)
        for r in held:
            r.status, r.ended_at = "released", self.now
        tenant.deleted = True
        return (name, tenant.priority, 0)

    def reserve(
        self, rid: str | None, tenant_name: str, pool_name: str, amounts: tuple, ttl: int | None
    ) -> str:
        """Check order of README "Using it"; `rid` is the id the engine chose (ids are random)."""
        self.sweep()
        if amounts == (0, 0, 0):
            raise Fail(2)
        tenant = self.live_tenant(tenant_name)
        pool = self.live_pool(pool_name)
        for r in self.reservations:
            if r.tenant is tenant and r.pool is pool and self.is_active(r):
                raise Fail(
                    4,
                    f"tenant '{tenant_name}' already has active reservation '{r.id}' "
                    f"in pool '{pool_name}'",
                )
        # Quota after the conflict, before capacity; only what is asked for; the
        # first failing resource in the order cpu, memory, gpu.
        held = self.held(tenant)
        for resource, want, have, cap in zip(
            ("cpu", "memory", "gpu"), amounts, held, tenant.caps, strict=True
        ):
            if want > 0 and cap is not None and have + want > cap:
                raise Fail(
                    4,
                    f"quota exceeded for tenant '{tenant_name}': "
                    f"{resource} {have} held + {want} requested > {cap}",
                )
        available = sub(pool.total, self.used(pool))
        if any(need > free for need, free in zip(amounts, available, strict=True)):
            raise Fail(
                3,
                f"insufficient resources in '{pool_name}': "
                f"need cpu={amounts[0]} mem={amounts[1]} gpu={amounts[2]}, "
                f"available cpu={available[0]} mem={available[1]} gpu={available[2]}",
            )
        assert rid is not None, "the model says this reserve succeeds"
        ttl = ttl or None
        expires = self.now + timedelta(seconds=ttl) if ttl else None
        self.reservations.append(MRes(rid, tenant, pool, amounts, ttl, self.now, expires))
        return rid

    def unreserve(self, rid: str) -> str:
        self.sweep()
        r = self.find(rid)
        self.require_active(r)
        r.status, r.ended_at = "released", self.now
        return rid

    def extend(self, rid: str, ttl: int) -> tuple:
        self.sweep()
        r = self.find(rid)
        self.require_active(r)
        r.ttl = ttl or None
        r.expires_at = self.now + timedelta(seconds=ttl) if ttl else None
        return (rid, r.ttl, r.expires_at)

    def preempt(self, attacker: str, target: str, pool_name: str | None) -> list[str]:
        self.sweep()
        a = self.live_tenant(attacker)
        b = self.live_tenant(target)
        pool = self.live_pool(pool_name) if pool_name is not None else None
        if a.priority <= b.priority:
            raise Fail(
                4,
                f"cannot preempt: '{attacker}' (priority {a.priority}) must outrank "
                f"'{target}' (priority {b.priority})",
            )
        victims = [
            r
            for r in self.reservations
            if r.tenant is b and (pool is None or r.pool is pool) and self.is_active(r)
        ]
        if not victims:
            where = f" in pool '{pool_name}'" if pool_name is not None else ""
            raise Fail(1, f"tenant '{target}' has no active reservations to preempt{where}")
        for r in victims:
            r.status, r.ended_at, r.preempted_by = "preempted", self.now, attacker
        return [r.id for r in victims]

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # ------------------------------------------------ views

    def active_count(self, tenant: MTenant) -> int:
        return sum(1 for r in self.reservations if r.tenant is tenant and self.is_active(r))

    def reservation_rows(self) -> list[tuple]:
        rows = []
        for r in self.reservations:
            status, ended = self.effective(r)
            rows.append(
                (
                    r.id,
                    r.tenant.name,
                    r.pool.name,
                    r.amounts,
                    r.ttl,
                    status,
                    r.created_at,
                    r.expires_at,
                    ended,
                    r.preempted_by,
                )
            )
        return rows

    def pool_rows(self) -> list[tuple]:
        live = sorted((p for p in self.pools if not p.deleted), key=lambda p: p.name.encode())
        return [(p.name, p.total, self.used(p)) for p in live]

    def tenant_rows(self) -> list[tuple]:
        live = [t for t in self.tenants if not t.deleted]
        live.sort(key=lambda t: (-t.priority, t.name.encode()))
        return [(t.name, t.priority, self.active_count(t), t.caps, self.held(t)) for t in live]

    def counts(self) -> dict[str, int]:
        counts = {"active": 0, "upcoming": 0, "released": 0, "expired": 0, "preempted": 0}
        for r in self.reservations:  # the clock moves hours at most: all inside 24 h
            counts[self.effective(r)[0]] += 1
        return counts
