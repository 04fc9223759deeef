"""Engine rules (docs/schema.md, README "Using it") through the engine API, with an
injected clock."""

from __future__ import annotations

import pytest
from helpers import reserve
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from resgate.clock import iso
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
from resgate.errors import (
    InsufficientResources,
    InvalidInput,
    NotFound,
    Refused,
)
from resgate.render.data import event as event_dict

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def setup(engine):
    engine.write(pools.create_pool, "p", Amounts(8, 1024, 4))
    engine.write(tenants.add_tenant, "low", 2)
    engine.write(tenants.add_tenant, "mid", 5)
    engine.write(tenants.add_tenant, "high", 9)
    return engine


def test_reserve_checks_in_order(setup):
    with pytest.raises(NotFound, match="tenant 'ghost' not found"):
        reserve(setup, "ghost", "nowhere", cpu=1)
    with pytest.raises(NotFound, match="pool 'nowhere' not found"):
        reserve(setup, "low", "nowhere", cpu=1)
    first = reserve(setup, "low", "p", cpu=2).reservation
    with pytest.raises(Refused, match=f"already has active reservation '{first.id}' in pool 'p'"):
        reserve(setup, "low", "p", cpu=100)  # conflict is checked before capacity
    with pytest.raises(InsufficientResources) as excinfo:
        reserve(setup, "mid", "p", cpu=7)
    assert str(excinfo.value) == (
        "insufficient resources in 'p': need cpu=7 mem=0 gpu=0, available cpu=6 mem=1024 gpu=4"
    )
    with pytest.raises(InvalidInput):
        reserve(setup, "mid", "p")


def test_ttl_expiry_counts_before_the_sweep(setup):
    r = reserve(setup, "low", "p", cpu=8, ttl=60).reservation
    setup.clock.advance(59)
    with pytest.raises(InsufficientResources):
        reserve(setup, "mid", "p", cpu=1)
    setup.clock.advance(1)
    # Due now: expired for listing and counts even though nothing swept it yet.
    listed = setup.read(listing.list_reservations, include_ended=True)
    assert [(x.id, x.status, x.ended_at) for x in listed] == [(r.id, "expired", r.expires_at)]
    assert setup.read(status.status).counts["expired"] == 1
    assert setup.read(pools.show_pool, "p").reserved == Amounts()
    # A write sweeps first, so capacity is free again.
    reserve(setup, "mid", "p", cpu=8)
    stored = setup.read(listing.list_reservations, status="expired")
    assert stored[0].ended_at == r.expires_at


def test_sweep_is_one_statement_and_sets_ended_at(setup, monkeypatch):
    for i in range(20):
        setup.write(tenants.add_tenant, f"t{i}", 3)
        reserve(setup, f"t{i}", "p", memory=10, ttl=10)
    setup.clock.advance(11)
    statements = []
    from sqlalchemy import event

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(setup.database.engine, "before_cursor_execute", record)
    try:
        expired = setup.write(sweep)
    finally:
        event.remove(setup.database.engine, "before_cursor_execute", record)
    assert len(expired) == 20
    # One UPDATE … RETURNING, one freeing their GPU devices, one batched insert
    # of their audit events: a fixed number whatever the count.
    assert sum(s.lstrip().startswith("UPDATE reservations ") for s in statements) == 1
    assert sum(s.lstrip().startswith("UPDATE reservation_devices") for s in statements) == 1
    assert sum(s.lstrip().startswith("INSERT INTO events") for s in statements) == 1


def _sweep_statements(engine):
    """Sweep now; return the expired ids and every statement it ran (with params)."""
    from sqlalchemy import event

    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters, executemany))

    event.listen(engine.database.engine, "before_cursor_execute", record)
    try:
        expired = engine.write(sweep)
    finally:
        event.remove(engine.database.engine, "before_cursor_execute", record)
    return expired, statements


def test_sweep_cost_does_not_grow_with_due_rows_or_history(setup, backend):
    """README "Using it" and benchmarks/README.md: the same statements for 2 due
    reservations as for 30 (GPU holders among them), none of them walking the
    history; each expiry logged with the expiry it had."""
    from resgate.engine import audit

    counts = []
    for round_, due in enumerate((2, 30)):
        made = []
        for i in range(due):
            name = f"r{round_}t{i}"
            setup.write(tenants.add_tenant, name, 3)
            setup.write(pools.create_pool, name, Amounts(4, 0, 1))
            made.append(
                setup.write(
                    reservations.reserve, ReserveRequest(name, name, Amounts(1, 0, i % 2), 10 + i)
                )
            )
        # History the statements must not walk: ended reservations of each pool.
        for r in made[:2]:
            setup.write(release.unreserve, r.id)
            made.remove(r)
            again = ReserveRequest(r.tenant, r.pool, Amounts(1, 0, 1), 10)
            made.append(setup.write(reservations.reserve, again))
        setup.clock.advance(10 + due)
        expired, statements = _sweep_statements(setup)
        assert sorted(expired) == sorted(r.id for r in made)
        # The fold of pool_free's past runs once enough of it has gathered
        # (windows.PRUNE_AFTER), whatever the number of due rows: left out here.
        counts.append([statement for statement, _, _ in statements if "pool_free" not in statement])
        events = setup.read(lambda tx: [event_dict(e) for e in audit.log(tx)])
        logged = {e["subject"]: e["data"] for e in events if e["action"] == "reservation.expire"}
        assert {r.id: logged[r.id] for r in made} == {
            r.id: {"expires_at": iso(r.expires_at)} for r in made
        }
        held = setup.read(
            lambda tx: tx.connection.execute(
                text("SELECT count(*) FROM reservation_devices WHERE active = true")
            ).scalar()
        )
        assert held == 0  # the GPU holders among them freed their devices
        if backend == "sqlite":
            for statement, parameters, executemany in statements:
                if executemany or not statement.lstrip().upper().startswith(("UPDATE", "SELECT")):
                    continue
                plan = setup.read(
                    lambda tx, s=statement, p=parameters: [
                        row[-1]
                        for row in tx.connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p)
                    ]
                )
                walks = [
                    step
                    for step in plan
                    if step.startswith("SCAN reservation") and "INDEX" not in step
                ]
                assert not walks, (statement, plan)
    assert counts[0] == counts[1]


def test_unreserve_and_extend(setup):
    r = reserve(setup, "low", "p", cpu=1, ttl=30).reservation
    extended = setup.write(extension.extend, r.id, 600)
    assert extended.ttl == 600
    assert extended.expires_at == setup.clock.now().replace() + __import__("datetime").timedelta(
        seconds=600
    )
    forever = setup.write(extension.extend, r.id, 0)
    assert forever.ttl is None and forever.expires_at is None
    released = setup.write(release.unreserve, r.id)
    assert released.status == "released" and released.ended_at == setup.clock.now()
    with pytest.raises(Refused, match=r"is not active \(status: released\)"):
        setup.write(release.unreserve, r.id)
    with pytest.raises(Refused, match=r"is not active \(status: released\)"):
        setup.write(extension.extend, r.id, 10)
    with pytest.raises(NotFound):
        setup.write(release.unreserve, "0123456789abcdef")
    with pytest.raises(InvalidInput):
        setup.write(release.unreserve, "ABC")


def test_preempt(setup):
    setup.write(pools.create_pool, "q", Amounts(8, 0, 0))
    a = reserve(setup, "low", "p", cpu=1).reservation
    b = reserve(setup, "low", "q", cpu=2).reservation
    with pytest.raises(Refused, match=r"'mid' \(priority 5\) must outrank 'high' \(priority 9\)"):
        setup.write(evictions.preempt, "mid", "high")
    with pytest.raises(Refused, match="must outrank"):
        setup.write(evictions.preempt, "low", "low")
    with pytest.raises(NotFound, match="tenant 'ghost' not found"):
        setup.write(evictions.preempt, "ghost", "nobody")
    result = setup.write(evictions.preempt, "high", "low", "q")
    assert [r.id for r in result.preempted] == [b.id]
    assert result.preempted[0].status == "preempted"
    assert result.preempted[0].preempted_by == "high"
    result = setup.write(evictions.preempt, "high", "low")
    assert [r.id for r in result.preempted] == [a.id]
    with pytest.raises(NotFound, match="has no active reservations to preempt"):
        setup.write(evictions.preempt, "high", "low")


def test_resize_and_delete(setup):
    reserve(setup, "low", "p", cpu=6)
    with pytest.raises(Refused, match="cpu 5 is below the 6 reserved now"):
        setup.write(pools.resize_pool, "p", cpu=5)
    setup.write(pools.create_pool, "mem-only", Amounts(0, 10, 0))
    with pytest.raises(Refused, match="would all be 0"):
        setup.write(pools.resize_pool, "mem-only", memory=0)
    grown = setup.write(pools.resize_pool, "p", gpu=16)
    assert grown.total == Amounts(8, 1024, 16)
    with pytest.raises(Refused, match="1 active reservation"):
        setup.write(pools.delete_pool, "p")
    setup.write(pools.delete_pool, "p", force=True)
    assert [p.name for p in setup.read(pools.list_pools)] == ["mem-only"]
    history = setup.read(listing.list_reservations, include_ended=True, pool="p")
    assert [r.status for r in history] == ["released"]
    # The name is free again; history keeps pointing at the old row.
    setup.write(pools.create_pool, "p", Amounts(1, 0, 0))
    assert len(setup.read(listing.list_reservations, include_ended=True, pool="p")) == 1


def test_tenant_lifecycle(setup):
    with pytest.raises(Refused, match="tenant 'low' already exists"):
        setup.write(tenants.add_tenant, "low", 3)
    setup.write(tenants.update_tenant, "low", priority=7)
    names = [(t.name, t.priority) for t in setup.read(tenants.list_tenants)]
    assert names == [("high", 9), ("low", 7), ("mid", 5)]
    reserve(setup, "mid", "p", cpu=1)
    with pytest.raises(Refused):
        setup.write(tenants.remove_tenant, "mid")
    setup.write(tenants.remove_tenant, "mid", force=True)
    assert "mid" not in [t.name for t in setup.read(tenants.list_tenants)]
    setup.write(tenants.add_tenant, "mid", 1)


def test_equal_priority_lists_by_name_bytewise(engine):
    for name in ["b", "B", "a", "A", "_x", "0"]:
        engine.write(tenants.add_tenant, name.replace("_", "z"), 5)
    assert [t.name for t in engine.read(tenants.list_tenants)] == ["0", "A", "B", "a", "b", "zx"]


def _raw(engine, statement):
    """Run one statement outside the engine's checks, in its own transaction."""
    with engine.database.engine.connect() as connection:
        connection.execute(text(statement))
        connection.commit()


def test_database_guards_the_invariants(setup):
    """Behind the engine's checks, the schema itself refuses what breaks docs/schema.md."""
    r = reserve(setup, "low", "p", cpu=8).reservation
    insert = (
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, created_at,"
        " ended_at) VALUES ('{id}', {tenant}, 1, {cpu}, {memory}, 0, '{status}',"
        " '2026-01-01 00:00:00', {ended})"
    )
    bad = [
        # a second active reservation of one tenant in one pool
        insert.format(id="a" * 16, tenant=1, cpu=0, memory=1, status="active", ended="NULL"),
        # over capacity
        insert.format(id="b" * 16, tenant=2, cpu=1, memory=0, status="active", ended="NULL"),
        # negative amount, unknown status, dangling tenant, priority out of range
        insert.format(
            id="c" * 16,
            tenant=2,
            cpu=-1,
            memory=0,
            status="released",
            ended="'2026-01-01 00:00:00'",
        ),
        "UPDATE reservations SET status = 'weird'",
        insert.format(
            id="d" * 16,
            tenant=99,
            cpu=0,
            memory=0,
            status="released",
            ended="'2026-01-01 00:00:00'",
        ),
        "UPDATE tenants SET priority = 11",
        # an id that is not 16 characters; an active row with an end
        insert.format(id="e" * 15, tenant=2, cpu=0, memory=1, status="active", ended="NULL"),
        insert.format(
            id="f" * 16, tenant=2, cpu=0, memory=1, status="active", ended="'2026-01-01 00:00:00'"
        ),
        # history is never deleted; a pool never shrinks below what is held
        "DELETE FROM reservations",
        "UPDATE pools SET cpu = 7",
        # a live name is unique
        "INSERT INTO pools (name, cpu, memory, gpu, created_at)"
        " VALUES ('p', 1, 0, 0, '2026-01-01 00:00:00')",
    ]
    for statement in bad:
        with pytest.raises(DBAPIError):
            _raw(setup, statement)
    _raw(
        setup,
        f"UPDATE reservations SET status = 'released', ended_at = created_at WHERE id = '{r.id}'",
    )
    # an ended reservation never comes back
    with pytest.raises(DBAPIError):
        _raw(
            setup, f"UPDATE reservations SET status = 'active', ended_at = NULL WHERE id = '{r.id}'"
        )
    assert setup.read(check.check).problems == []


def test_integrity_error_from_orm_is_refused(setup):
    """The engine's own INSERT path also meets the guards (mapped to exit 4)."""
    from resgate.store.models import Reservation

    def sneak(tx):
        tx.session.add(
            Reservation(
                id="eeeeeeeeeeeeeeee",
                tenant_id=1,
                pool_id=1,
                cpu=99,
                memory=0,
                gpu=0,
                status="active",
                created_at=tx.now,
            )
        )
        tx.session.flush()

    with pytest.raises(Refused):
        setup.tx(sneak)


def test_db_check_reports_overcommit(setup):
    reserve(setup, "low", "p", cpu=8)
    assert setup.read(check.check).problems == []
    on_pools = " ON pools" if setup.database.dialect == "postgresql" else ""
    _raw(setup, f"DROP TRIGGER pools_resize_guard{on_pools}")
    _raw(setup, "UPDATE pools SET cpu = 2")
    problems = setup.read(check.check).problems
    # And pool_free, left as it was, disagrees with the shrunk totals.
    assert problems[0] == "pool 'p': cpu reserved 8 exceeds total 2"
    assert problems[1].startswith("pool 'p': pool_free says cpu=0 ")
