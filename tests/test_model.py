"""Issue 3, part 3: model-based testing of the engine's rules (SPEC §3, §5, §6).

A Hypothesis RuleBasedStateMachine drives random sequences of pool and tenant
creation and removal, reserve, unreserve, extend, preempt, resize, clock advance
and sweep through the engine API with an injected clock (no sleeping). Every
step's outcome — the result, or the exit code and message of the refusal — must
equal what `Model` predicts, and after every step the engine's whole visible
state (every reservation with its effective status, the pools with their usage,
the tenants with their counts, the status counts) must equal the model's, and
`db check` must find nothing.

`Model` is a small pure-Python statement of the rules. It imports nothing from
resgate (only the standard library), so a bug in the engine cannot leak into it.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

# ============================================================== the model
# Standard library only, by design.

START = datetime(2026, 3, 1, 9, 0, 0)
RES = ("cpu", "memory", "gpu")


class Fail(Exception):
    """The model's refusal: an exit code and a message."""

    def __init__(self, code: int, message: str) -> None:
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
        """§5: due means expired for every purpose, swept or not."""
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
        """§4: every command is one transaction; a failed command changes nothing."""
        saved = copy.deepcopy(self.__dict__)
        try:
            return command(*args)
        except Fail:
            self.__dict__.update(saved)
            raise

    def sweep(self) -> list[str]:
        """§5: every mutating command first marks every due reservation expired,
        ended when it expired; `resgate sweep` does only that."""
        due = [r for r in self.reservations if r.status == "active" and not self.is_active(r)]
        for r in due:
            r.status, r.ended_at = "expired", r.expires_at
        return sorted(r.id for r in due)

    def create_pool(self, name: str, total: tuple[int, int, int]) -> tuple:
        self.sweep()
        if total == (0, 0, 0):
            raise Fail(2, "a pool needs at least one of --cpu, --memory, --gpu above 0")
        if any(p.name == name and not p.deleted for p in self.pools):
            raise Fail(4, f"pool '{name}' already exists")
        self.pools.append(MPool(name, total))
        return (name, total, (0, 0, 0))

    def delete_pool(self, name: str, force: bool) -> tuple:
        self.sweep()
        pool = self.live_pool(name)
        held = [r for r in self.reservations if r.pool is pool and self.is_active(r)]
        if held and not force:
            raise Fail(
                4,
                f"pool '{name}' has {len(held)} active reservation(s); "
                "release them first or use --force",
            )
        for r in held:
            r.status, r.ended_at = "released", self.now
        pool.deleted = True
        return (name, pool.total, (0, 0, 0))

    def resize_pool(self, name: str, new: tuple[int | None, int | None, int | None]) -> tuple:
        self.sweep()
        if new == (None, None, None):
            raise Fail(2, "give at least one of --cpu, --memory, --gpu")
        if new == (0, 0, 0):
            raise Fail(2, "a pool cannot have all of cpu, memory and gpu at 0")
        pool = self.live_pool(name)
        total = tuple(old if value is None else value for old, value in zip(pool.total, new))
        if total == (0, 0, 0):
            raise Fail(4, f"cannot resize pool '{name}': cpu, memory and gpu would all be 0")
        used = self.used(pool)
        for res, want, have in zip(RES, total, used):
            if want < have:
                raise Fail(
                    4,
                    f"cannot resize pool '{name}': {res} {want} is below the {have} reserved now",
                )
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

    def remove_tenant(self, name: str, force: bool) -> tuple:
        self.sweep()
        tenant = self.live_tenant(name)
        held = [r for r in self.reservations if r.tenant is tenant and self.is_active(r)]
        if held and not force:
            raise Fail(
                4,
                f"tenant '{name}' has {len(held)} active reservation(s); "
                "release them first or use --force",
            )
        for r in held:
            r.status, r.ended_at = "released", self.now
        tenant.deleted = True
        return (name, tenant.priority, 0)

    def reserve(
        self, rid: str | None, tenant_name: str, pool_name: str, amounts: tuple, ttl: int | None
    ) -> str:
        """Check order of §6; `rid` is the id the engine chose (ids are random)."""
        self.sweep()
        if amounts == (0, 0, 0):
            raise Fail(2, "a reservation needs at least one of --cpu, --memory, --gpu above 0")
        tenant = self.live_tenant(tenant_name)
        pool = self.live_pool(pool_name)
        for r in self.reservations:
            if r.tenant is tenant and r.pool is pool and self.is_active(r):
                raise Fail(
                    4,
                    f"tenant '{tenant_name}' already has active reservation '{r.id}' "
                    f"in pool '{pool_name}'",
                )
        available = sub(pool.total, self.used(pool))
        if any(need > free for need, free in zip(amounts, available)):
            raise Fail(
                3,
                f"insufficient resources in '{pool_name}': "
                f"need cpu={amounts[0]} mem={amounts[1]} gpu={amounts[2]}, "
                f"available cpu={available[0]} mem={available[1]} gpu={available[2]}",
            )
        assert rid is not None, "the model says this reserve succeeds"
        ttl = ttl or None
        expires = self.now + timedelta(seconds=ttl) if ttl else None
        self.reservations.append(
            MRes(rid, tenant, pool, amounts, ttl, self.now, expires)
        )
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
                (r.id, r.tenant.name, r.pool.name, r.amounts, r.ttl, status, r.created_at,
                 r.expires_at, ended, r.preempted_by)
            )
        return rows

    def pool_rows(self) -> list[tuple]:
        live = sorted((p for p in self.pools if not p.deleted), key=lambda p: p.name.encode())
        return [(p.name, p.total, self.used(p)) for p in live]

    def tenant_rows(self) -> list[tuple]:
        live = [t for t in self.tenants if not t.deleted]
        live.sort(key=lambda t: (-t.priority, t.name.encode()))
        return [(t.name, t.priority, self.active_count(t)) for t in live]

    def counts(self) -> dict[str, int]:
        counts = {"active": 0, "released": 0, "expired": 0, "preempted": 0}
        for r in self.reservations:  # the clock moves hours at most: all inside 24 h
            counts[self.effective(r)[0]] += 1
        return counts


# ============================================================== the engine side

from resgate.engine import pools, reservations, status, tenants  # noqa: E402
from resgate.engine.clock import FixedClock  # noqa: E402
from resgate.engine.errors import ResgateError  # noqa: E402
from resgate.engine.records import Amounts  # noqa: E402
from resgate.engine.reservations import ReserveRequest  # noqa: E402
from resgate.engine.sweep import sweep  # noqa: E402
from resgate.store.database import open_database, resolve_target  # noqa: E402

POOL_NAMES = ("alpha", "beta", "gamma")
TENANT_NAMES = ("ann", "bob", "cid", "dee")
UNKNOWN_ID = "0123456789abcdef"
_template: dict[str, Path] = {}


def template() -> Path:
    """A database migrated to head once; every example starts from a copy."""
    if "path" not in _template:
        directory = Path(tempfile.mkdtemp(prefix="resgate-model-"))
        path = directory / "template.db"
        open_database(resolve_target(str(path)), write=True).dispose()
        _template["path"] = path
    return _template["path"]


amounts = st.tuples(st.integers(0, 3), st.sampled_from([0, 0, 256, 512]), st.sampled_from([0, 0, 1]))
totals = st.tuples(st.sampled_from([0, 2, 4, 8]), st.sampled_from([0, 1024, 2048]), st.integers(0, 2))
roomy = st.tuples(st.integers(2, 8), st.sampled_from([1024, 2048]), st.integers(0, 2))
ttls = st.sampled_from([None, 0, 1, 30, 60, 600])
maybe = st.one_of(st.none(), st.integers(0, 8), st.sampled_from([0, 512, 1024, 2048]))


def pool_info(info: Any) -> tuple:
    return (info.name, tuple(info.total), tuple(info.reserved))


def tenant_info(info: Any) -> tuple:
    return (info.name, info.priority, info.active_reservations)


class EngineMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="resgate-model-"))
        path = self.directory / "model.db"
        shutil.copyfile(template(), path)
        # A throwaway file: no fsync per commit (durability is test_crash's job).
        saved = os.environ.get("RESGATE_SYNCHRONOUS")
        os.environ["RESGATE_SYNCHRONOUS"] = "NORMAL"
        try:
            self.database = open_database(resolve_target(str(path)), write=True)
        finally:
            if saved is None:
                del os.environ["RESGATE_SYNCHRONOUS"]
            else:
                os.environ["RESGATE_SYNCHRONOUS"] = saved
        self.clock = FixedClock(START)
        self.model = Model()
        self.ids: list[str] = []

    def teardown(self) -> None:
        try:
            report = self.database.run(status.check, write=False, clock=self.clock)
            assert report.problems == []
        finally:
            self.database.dispose()
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------ plumbing

    def both(self, engine_call: Any, model_call: Any, plain: Any = None) -> Any:
        """Run the step on the engine (one write transaction) and on the model;
        the outcomes must be equal. `plain` turns the engine's result into the
        model's terms. Returns the engine's result (None when refused)."""
        try:
            result = self.database.run(engine_call, write=True, clock=self.clock)
            got: Any = ("ok", result if plain is None else plain(result))
        except ResgateError as exc:
            result = None
            got = ("error", exc.exit_code, exc.message)
        try:
            expected: Any = ("ok", self.model.run(model_call, result))
        except Fail as fail:
            expected = ("error", fail.code, fail.message)
        assert got == expected, f"engine {got!r}\nmodel  {expected!r}"
        step = sys._getframe(1).f_code.co_name
        event(f"{step}: " + ("ok" if got[0] == "ok" else f"exit {got[1]}"))
        return result

    def pick(self, index: int, unknown: bool) -> str:
        if unknown or not self.ids:
            return UNKNOWN_ID
        return self.ids[index % len(self.ids)]

    # ------------------------------------------------ rules

    @initialize(
        first=roomy,
        second=roomy,
        priorities=st.lists(st.integers(1, 10), min_size=3, max_size=3),
    )
    def populate(
        self, first: tuple[int, int, int], second: tuple[int, int, int], priorities: list[int]
    ) -> None:
        """Most examples need a few pools and tenants to get anywhere; the same
        steps as the rules below, so refusals here are checked too."""
        self.create_pool("alpha", first)
        self.create_pool("beta", second)
        for name, priority in zip(TENANT_NAMES, priorities, strict=False):
            self.add_tenant(name, priority)

    @rule(name=st.sampled_from(POOL_NAMES), total=totals)
    def create_pool(self, name: str, total: tuple[int, int, int]) -> None:
        self.both(
            lambda tx: pools.create_pool(tx, name, Amounts(*total)),
            lambda got: self.model.create_pool(name, total),
            pool_info,
        )

    @rule(name=st.sampled_from(POOL_NAMES), new=st.tuples(maybe, maybe, maybe))
    def resize_pool(self, name: str, new: tuple[int | None, int | None, int | None]) -> None:
        self.both(
            lambda tx: pools.resize_pool(tx, name, cpu=new[0], memory=new[1], gpu=new[2]),
            lambda got: self.model.resize_pool(name, new),
            pool_info,
        )

    @precondition(lambda self: len(self.ids) >= 2)  # not before anything happened
    @rule(name=st.sampled_from(POOL_NAMES), force=st.booleans())
    def delete_pool(self, name: str, force: bool) -> None:
        self.both(
            lambda tx: pools.delete_pool(tx, name, force=force),
            lambda got: self.model.delete_pool(name, force),
            pool_info,
        )

    @rule(name=st.sampled_from(TENANT_NAMES), priority=st.integers(1, 10))
    def add_tenant(self, name: str, priority: int) -> None:
        self.both(
            lambda tx: tenants.add_tenant(tx, name, priority),
            lambda got: self.model.add_tenant(name, priority),
            tenant_info,
        )

    @rule(name=st.sampled_from(TENANT_NAMES), priority=st.integers(1, 10))
    def update_tenant(self, name: str, priority: int) -> None:
        self.both(
            lambda tx: tenants.update_tenant(tx, name, priority),
            lambda got: self.model.update_tenant(name, priority),
            tenant_info,
        )

    @precondition(lambda self: len(self.ids) >= 2)
    @rule(name=st.sampled_from(TENANT_NAMES), force=st.booleans())
    def remove_tenant(self, name: str, force: bool) -> None:
        self.both(
            lambda tx: tenants.remove_tenant(tx, name, force=force),
            lambda got: self.model.remove_tenant(name, force),
            tenant_info,
        )

    @rule(
        tenant=st.sampled_from(TENANT_NAMES),
        pool=st.sampled_from(POOL_NAMES),
        want=amounts,
        ttl=ttls,
    )
    def reserve(self, tenant: str, pool: str, want: tuple[int, int, int], ttl: int | None) -> None:
        request = ReserveRequest(tenant, pool, Amounts(*want), ttl)
        info = self.both(
            lambda tx: reservations.reserve(tx, request),
            lambda got: self.model.reserve(
                None if got is None else got.id, tenant, pool, want, ttl
            ),
            lambda info: info.id,
        )
        if info is not None:
            self.ids.append(info.id)

    @rule(
        tenant=st.sampled_from(TENANT_NAMES[:3]),
        pool=st.sampled_from(POOL_NAMES[:2]),
        want=amounts,
        ttl=ttls,
    )
    def reserve_more(
        self, tenant: str, pool: str, want: tuple[int, int, int], ttl: int | None
    ) -> None:
        """The same step, among names that usually exist (twice the reserves)."""
        self.reserve(tenant, pool, want, ttl)

    @rule(index=st.integers(0, 1000), unknown=st.booleans())
    def unreserve(self, index: int, unknown: bool) -> None:
        rid = self.pick(index, unknown and index % 5 == 0)
        self.both(
            lambda tx: reservations.unreserve(tx, rid),
            lambda got: self.model.unreserve(rid),
            lambda info: info.id,
        )

    @rule(index=st.integers(0, 1000), unknown=st.booleans(), ttl=st.sampled_from([0, 1, 45, 300]))
    def extend(self, index: int, unknown: bool, ttl: int) -> None:
        rid = self.pick(index, unknown and index % 5 == 0)
        self.both(
            lambda tx: reservations.extend(tx, rid, ttl),
            lambda got: self.model.extend(rid, ttl),
            lambda info: (info.id, info.ttl, info.expires_at),
        )

    @rule(
        attacker=st.sampled_from(TENANT_NAMES),
        victim=st.sampled_from(TENANT_NAMES),
        pool=st.one_of(st.none(), st.sampled_from(POOL_NAMES)),
    )
    def preempt(self, attacker: str, victim: str, pool: str | None) -> None:
        self.both(
            lambda tx: reservations.preempt(tx, attacker, victim, pool),
            lambda got: self.model.preempt(attacker, victim, pool),
            lambda result: [r.id for r in result.preempted],
        )

    @rule()
    def sweep(self) -> None:
        self.both(sweep, lambda got: self.model.sweep())

    @precondition(lambda self: bool(self.model.reservations))
    @rule(seconds=st.sampled_from([1, 29, 30, 31, 59, 60, 61, 300, 3600]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.advance(seconds)

    # ------------------------------------------------ the whole visible state

    @invariant()
    def same_state(self) -> None:
        def read(tx: Any) -> Any:
            rows = [
                (r.id, r.tenant, r.pool, tuple(r.amounts), r.ttl, r.status, r.created_at,
                 r.expires_at, r.ended_at, r.preempted_by)
                for r in reservations.list_reservations(tx, include_ended=True)
            ]
            return (
                rows,
                [pool_info(p) for p in pools.list_pools(tx)],
                [(t.name, t.priority, t.active_reservations) for t in tenants.list_tenants(tx)],
                status.status(tx).counts,
            )

        rows, pool_rows, tenant_rows, counts = self.database.run(
            read, write=False, clock=self.clock
        )
        assert rows == self.model.reservation_rows()
        assert pool_rows == self.model.pool_rows()
        assert tenant_rows == self.model.tenant_rows()
        assert counts == self.model.counts()


EngineMatchesModel.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_engine_matches_model = EngineMatchesModel.TestCase
