"""Model-based testing of the engine's rules (docs/schema.md, README "Using it").

A Hypothesis RuleBasedStateMachine drives random sequences of pool and tenant
creation and removal, reserve, unreserve, extend, preempt, resize, clock advance
and sweep through the engine API with an injected clock (no sleeping). Every
step's outcome — the result, or the exit code and message of the refusal — must
equal what `Model` predicts, and after every step the engine's whole visible
state (every reservation with its effective status, the pools with their usage,
the tenants with their counts, the status counts) must equal the model's, and
`db check` must find nothing.

`Model` (tests/workers/model.py) is a small pure-Python statement of the rules.
It imports nothing from resgate, only the standard library (checked below), so a
bug in the engine cannot leak into it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import model as rules
from helpers import STANDARD_LIBRARY, imported_packages
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from model import START, Fail, Model

from resgate.clock import FixedClock
from resgate.engine import (
    check,
    evictions,
    extension,
    listing,
    pools,
    release,
    reservations,
    status,
    tenants,
)
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.engine.sweep import sweep
from resgate.errors import ResgateError
from resgate.store.database import open_database, resolve_target

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


amounts = st.tuples(
    st.integers(0, 3), st.sampled_from([0, 0, 256, 512]), st.sampled_from([0, 0, 1])
)
totals = st.tuples(
    st.sampled_from([0, 2, 4, 8]), st.sampled_from([0, 1024, 2048]), st.integers(0, 2)
)
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
            report = self.database.run(check.check, write=False, clock=self.clock)
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
            if fail.message is None:  # the model fixes no wording here: the exit code only
                got = got[:2]
                expected = expected[:2]
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

    @rule(
        name=st.sampled_from(TENANT_NAMES),
        resource=st.integers(0, 2),
        cap=st.none() | st.integers(0, 6) | st.sampled_from([512, 1024]),
    )
    def set_quota(self, name: str, resource: int, cap: int | None) -> None:
        """README "Quotas": a cap on one resource (None removes it)."""
        key = ("cpu", "memory", "gpu")[resource]
        self.both(
            lambda tx: tenants.update_tenant(tx, name, None, {key: cap}),
            lambda got: self.model.set_cap(name, resource, cap),
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
            lambda tx: release.unreserve(tx, rid),
            lambda got: self.model.unreserve(rid),
            lambda info: info.id,
        )

    @rule(index=st.integers(0, 1000), unknown=st.booleans(), ttl=st.sampled_from([0, 1, 45, 300]))
    def extend(self, index: int, unknown: bool, ttl: int) -> None:
        rid = self.pick(index, unknown and index % 5 == 0)
        self.both(
            lambda tx: extension.extend(tx, rid, ttl),
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
            lambda tx: evictions.preempt(tx, attacker, victim, pool),
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
                (
                    r.id,
                    r.tenant,
                    r.pool,
                    tuple(r.amounts),
                    r.ttl,
                    r.status,
                    r.created_at,
                    r.expires_at,
                    r.ended_at,
                    r.preempted_by,
                )
                for r in listing.list_reservations(tx, include_ended=True)
            ]
            return (
                rows,
                [pool_info(p) for p in pools.list_pools(tx)],
                [
                    (t.name, t.priority, t.active_reservations, tuple(t.max), tuple(t.held))
                    for t in tenants.list_tenants(tx)
                ],
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


def test_the_model_imports_nothing_from_resgate() -> None:
    assert imported_packages(rules) <= STANDARD_LIBRARY
